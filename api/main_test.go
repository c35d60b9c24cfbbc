package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/chatd/chatd"
	"github.com/chatd/chatd/db"
	"github.com/chatd/chatd/db/dbtest"
	"github.com/chatd/chatd/events"
)

// testDB is this package's own database, created fresh by TestMain and dropped after.
var testDB string

// testPresence makes presence quick enough to test: a dead instance is noticed within
// about two seconds, a closed stream goes offline after one.
var testPresence = events.PresenceConfig{Grace: time.Second, Beat: 250 * time.Millisecond, Stale: 2 * time.Second}

// testMetricsToken opens /metrics on every test instance.
const testMetricsToken = "test-metrics-token"

// testSecret signs the tokens of every test instance.
var testSecret = []byte("test-secret-of-at-least-32-bytes!!")

// testServiceKey opens the server API of every test instance (as the key named "app").
const testServiceKey = "svc-test-key-0123456789abcdef0123456789"

func TestMain(m *testing.M) {
	// Every goroutine a test starts (instances, streams, listeners, pools) must be gone
	// once the tests have run: one left behind is a leak in the code or in a test's cleanup.
	// CHAT_TEST_POOL=pgbouncer puts the instances' pools behind PgBouncer (poolChoice).
	os.Exit(dbtest.RunTests(poolChoice{m}, "chatd_test_api", chatd.Schema, &testDB, func() error { return goleak.Find() }))
}

// instance is one chatd instance on the test database, served over real HTTP.
type instance struct {
	URL      string
	Pool     *pgxpool.Pool
	Hub      *events.Hub
	Log      *events.Log
	Presence *events.Presence
	Server   *httptest.Server
	API      *Server
	stop     context.CancelFunc
}

// newInstance starts an instance; opts adjusts its api.Config. Instances started by one
// test share the database, like instances behind a load balancer.
func newInstance(t testing.TB, opts ...func(*Config, *events.Config)) *instance {
	t.Helper()
	in := newInstanceNoWait(t, opts...)
	require.Eventually(t, in.Log.Listening, 5*time.Second, 10*time.Millisecond)
	return in
}

// newInstanceNoWait starts an instance without waiting for its listener to connect.
func newInstanceNoWait(t testing.TB, opts ...func(*Config, *events.Config)) *instance {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	pool, err := db.Open(ctx, testPoolURL, 20) // testDB, or through PgBouncer (poolChoice)
	require.NoError(t, err)
	verifier, err := NewVerifier(ctx, KeyConfig{Secret: testSecret})
	require.NoError(t, err)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	keys, err := ParseServiceKeys("app:" + testServiceKey)
	require.NoError(t, err)
	cfg := Config{
		Pool: pool, Verifier: verifier, Logger: logger, ServiceKeys: keys,
		MaxRequestBytes: 64 << 10, MaxMessageBytes: 4096, Heartbeat: 15 * time.Second, Retry: time.Second,
		StreamLifetime: time.Hour, StreamsPerUser: 64, WriteRate: 0, WriteBurst: 1, WriteTimeout: 10 * time.Second,
		TicketTTL: 30 * time.Second, MaxPollWait: 55 * time.Second, CookieSecure: true, MetricsToken: testMetricsToken,
	}
	ecfg := events.Config{Pool: pool, ListenURL: testDB, SafetyPoll: time.Second, Logger: logger}
	for _, o := range opts {
		o(&cfg, &ecfg)
	}
	if cfg.Pool != pool { // an option put the instance on another pool (throughPool, newScratchInstance)
		pool.Close() // or its health check goroutine outlives the tests (goleak in TestMain)
		pool = cfg.Pool
	}
	var presence *events.Presence
	ecfg.Online = func(ctx context.Context, users []string) map[string]bool { return presence.Online(ctx, users) }
	log := events.NewLog(ecfg)
	hub := log.Hub()
	pcfg := testPresence
	pcfg.Pool, pcfg.Instance, pcfg.Logger, pcfg.Publish = pool, log.Instance(), logger, log.Ephemeral
	presence = events.NewPresence(pcfg)
	require.NoError(t, log.Start(ctx))
	require.NoError(t, presence.Start(ctx))
	cfg.Hub, cfg.Log, cfg.Presence = hub, log, presence
	api := NewServer(cfg)
	srv := httptest.NewServer(api)
	in := &instance{URL: srv.URL, Pool: pool, Hub: hub, Log: log, Presence: presence, Server: srv, API: api, stop: stop}
	t.Cleanup(in.Close)
	return in
}

// Close stops the instance: streams end, then the server, then the background work.
func (in *instance) Close() {
	in.Hub.Close()
	in.Server.Close()
	in.stop()
	in.Pool.Close()
}

// token returns a valid token for sub.
func token(t testing.TB, sub string) string {
	t.Helper()
	tok, err := SignHS256(testSecret, sub, "", time.Hour, time.Now())
	require.NoError(t, err)
	return tok
}

// uniq returns a user id unique to this test run, so tests sharing the database never see
// each other's conversations.
func uniq(name string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%x", name, b)
}

// response is a decoded API answer.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v.
func (r response) JSON(t testing.TB, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(r.Body, v), "body: %s", r.Body)
}

// OK requires a 200 answer and decodes its body into v: an error body decoded into a
// success type would leave zero values that many checks accept.
func (r response) OK(t testing.TB, v any) {
	t.Helper()
	require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
	r.JSON(t, v)
}

// ErrorCode is the code of a JSON error body ("" when there is none).
func (r response) ErrorCode() string {
	var e errorBody
	_ = json.Unmarshal(r.Body, &e)
	return e.Error.Code
}

// call makes one request with a Bearer token (none when tok is ""), a JSON body (none
// when body is nil; a []byte or string is sent as is) and returns the answer.
func call(t testing.TB, method, url, tok string, body any) response {
	t.Helper()
	r, err := tryCall(method, url, tok, body)
	require.NoError(t, err)
	checkContract(t, method, url, r) // openapi_test.go: the answer must be one openapi.yaml describes
	return r
}

// tryCall is call for goroutines other than the test's own, which must not use require:
// it returns what went wrong instead of failing the test.
func tryCall(method, url, tok string, body any) (response, error) {
	req, err := newRequest(method, url, body)
	if err != nil {
		return response{}, err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, err
	}
	return response{Status: res.StatusCode, Header: res.Header, Body: b}, nil
}

// newRequest makes a request with a JSON body (none when body is nil; a []byte or string
// is sent as is).
func newRequest(method, url string, body any) (*http.Request, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, url, rd)
	if err == nil && body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, err
}

// user is a test user talking to one instance.
type testUser struct {
	t     testing.TB
	ID    string
	Token string
	URL   string
}

func newUser(t testing.TB, in *instance, name string) *testUser {
	id := uniq(name)
	return &testUser{t: t, ID: id, Token: token(t, id), URL: in.URL}
}

// on returns the same user talking to another instance.
func (u *testUser) on(in *instance) *testUser {
	c := *u
	c.URL = in.URL
	return &c
}

func (u *testUser) do(method, path string, body any) response {
	u.t.Helper()
	return call(u.t, method, u.URL+path, u.Token, body)
}

// asServer calls the server API of in with the test service key.
func asServer(t testing.TB, in *instance, method, path string, body any) response {
	t.Helper()
	return call(t, method, in.URL+"/v1/server"+path, testServiceKey, body)
}

// direct returns the direct conversation with other.
func (u *testUser) direct(other *testUser) events.Conversation {
	u.t.Helper()
	r := u.do("POST", "/v1/conversations", map[string]any{"participant_id": other.ID})
	require.Contains(u.t, []int{200, 201}, r.Status, "%s", r.Body)
	var c events.Conversation
	r.JSON(u.t, &c)
	return c
}

// send posts a message and returns it.
func (u *testUser) send(conv, body string) events.Message {
	u.t.Helper()
	m, err := u.trySend(conv, body)
	require.NoError(u.t, err)
	return m
}

// trySend is send for goroutines other than the test's own: it returns what went wrong
// instead of failing the test.
func (u *testUser) trySend(conv, body string) (events.Message, error) {
	var m events.Message
	r, err := tryCall("POST", u.URL+"/v1/conversations/"+conv+"/messages", u.Token, map[string]any{"body": body})
	if err != nil {
		return m, err
	}
	if r.Status != http.StatusCreated {
		return m, fmt.Errorf("send to %s: status %d: %s", conv, r.Status, r.Body)
	}
	if err := json.Unmarshal(r.Body, &m); err != nil {
		return m, fmt.Errorf("send to %s: %w; body: %s", conv, err, r.Body)
	}
	return m, nil
}

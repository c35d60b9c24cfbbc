package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

// wait is the patience of every test that waits for an event: generous, because CI
// machines are noisy; the tests assert what arrives, never how fast.
const wait = 15 * time.Second

func decode[T any](t testing.TB, data string) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal([]byte(data), &v), data)
	return v
}

// openReady opens a stream and returns it after its ready event, with the ready cursor.
func openReady(t testing.TB, url, tok string, header map[string]string) (*stream, string) {
	t.Helper()
	s := openStream(t, url, tok, header)
	require.Equal(t, 200, s.Status)
	ev := s.next(wait)
	require.Equal(t, "ready", ev.Type)
	return s, decode[map[string]string](t, ev.Data)["cursor"]
}

func TestStreamOpensWithRetryCommentReadyAndHeartbeat(t *testing.T) {
	in := newInstance(t, func(c *Config, _ *events.Config) { c.Heartbeat = 50 * time.Millisecond })
	alice := newUser(t, in, "alice")
	// Asking for gzip explicitly turns off Go's transparent decompression, which would
	// otherwise undo a compressed stream and delete its Content-Encoding before the test
	// could see it.
	s := openStream(t, in.URL+"/v1/events", alice.Token, map[string]string{"Accept-Encoding": "gzip, deflate, br"})
	require.Equal(t, 200, s.Status)
	require.Empty(t, s.Header.Get("Content-Encoding"), "a stream is never compressed, even for a client that accepts it")
	require.Equal(t, "text/event-stream; charset=utf-8", s.Header.Get("Content-Type"))
	require.Equal(t, "no-cache, no-transform", s.Header.Get("Cache-Control"))
	require.Equal(t, "no", s.Header.Get("X-Accel-Buffering"))
	ev := s.next(wait)
	require.Equal(t, "ready", ev.Type)
	cursor := decode[map[string]string](t, ev.Data)["cursor"]
	retry, comments, _ := s.state()
	require.Equal(t, 1000, retry)
	require.Equal(t, "chatd stream", comments[0])
	_, err := events.ParseCursor(cursor)
	require.NoError(t, err)
	select {
	case <-s.pinged:
	case <-time.After(wait):
		t.Fatal("no heartbeat")
	}
	_, _, lastID := s.state()
	require.Equal(t, cursor, lastID, "the ready cursor is the stream's last event id from the start")
}

func TestStreamRequiresAuthentication(t *testing.T) {
	in := newInstance(t)
	s := openStream(t, in.URL+"/v1/events", "", nil)
	require.Equal(t, 401, s.Status)
	s = openStream(t, in.URL+"/v1/events?access_token="+token(t, "mallory"), "", nil)
	require.Equal(t, 401, s.Status)
}

func TestTicketIsSingleUse(t *testing.T) {
	a, b := newInstance(t), newInstance(t)
	bob := newUser(t, a, "bob")
	r := bob.do("POST", "/v1/tickets", nil)
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var tk struct {
		Ticket    string `json:"ticket"`
		ExpiresIn int    `json:"expires_in"`
	}
	r.JSON(t, &tk)
	require.LessOrEqual(t, tk.ExpiresIn, 60)
	s, _ := openReady(t, b.URL+"/v1/events?ticket="+tk.Ticket, "", nil) // minted on A, used on B
	s.close()
	again := openStream(t, a.URL+"/v1/events?ticket="+tk.Ticket, "", nil)
	require.Equal(t, 401, again.Status)
}

func TestSlowStreamIsClosed(t *testing.T) {
	in := newInstance(t, func(c *Config, e *events.Config) {
		e.StreamBuffer = 16
		c.WriteTimeout = 300 * time.Millisecond
	})
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)

	// A client that sends its request and then never reads a byte.
	conn, err := net.Dial("tcp", strings.TrimPrefix(in.URL, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.(*net.TCPConn).SetReadBuffer(4096))
	_, err = fmt.Fprintf(conn, "GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", bob.Token)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return in.Hub.Online(bob.ID) }, wait, 10*time.Millisecond)

	// Fill the socket buffers: writes then block, the write deadline passes, or the
	// stream's buffer overflows, and either way the server ends the stream.
	body := strings.Repeat("x", 4000)
	var wg sync.WaitGroup
	sendErrs := make(chan error, 4)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000 && in.Hub.Online(bob.ID); i++ {
				if _, err := alice.trySend(conv.ID, body); err != nil {
					sendErrs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(sendErrs)
	for err := range sendErrs {
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return !in.Hub.Online(bob.ID) }, wait, 10*time.Millisecond,
		"the server must close a stream that does not read")
}

// tokenUntil returns a token for sub that lives longer than life but at most a second
// more, and its expiry. A token's exp is in whole seconds, so one signed for a duration from now
// would live up to a second less than asked: too little, under -race, for a test that
// must open a stream and deliver an event before the token expires.
func tokenUntil(t testing.TB, sub string, life time.Duration) (string, time.Time) {
	t.Helper()
	now := time.Now()
	exp := now.Truncate(time.Second).Add(life + time.Second)
	tok, err := SignHS256(testSecret, sub, "", exp.Sub(now), now)
	require.NoError(t, err)
	return tok, exp
}

func TestStreamEndsWhenTokenExpires(t *testing.T) {
	in := newInstance(t)
	tok, exp := tokenUntil(t, uniq("brief"), time.Second)
	s, _ := openReady(t, in.URL+"/v1/events", tok, nil)
	require.True(t, s.ended(wait))
	require.False(t, time.Now().Before(exp), "the stream ended before its token expired")
}

func TestShutdownEndsStreams(t *testing.T) {
	in := newInstance(t)
	bob := newUser(t, in, "bob")
	s, _ := openReady(t, in.URL+"/v1/events", bob.Token, nil)
	in.Hub.Close()
	require.True(t, s.ended(wait))
}

// TestStreamWithoutHijacking covers the path HTTP/2 streams take (no Hijacker): the same
// opening, replay and live events, written through the ResponseWriter.
func TestStreamWithoutHijacking(t *testing.T) {
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)
	tok, exp := tokenUntil(t, bob.ID, 5*time.Second) // the stream ends at expiry
	req := httptest.NewRequest("GET", "/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		in.Server.Config.Handler.ServeHTTP(rec, req)
	}()
	require.Eventually(t, func() bool { return in.Hub.Online(bob.ID) }, wait, 10*time.Millisecond)
	m := alice.send(conv.ID, "not hijacked")
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("the stream did not end at token expiry")
	}
	require.False(t, time.Now().Before(exp), "the stream ended before its token expired")
	require.Equal(t, "text/event-stream; charset=utf-8", rec.Header().Get("Content-Type"))
	evs := (&sseParser{}).parseAll(rec.Body.String())
	require.Equal(t, "ready", evs[0].Type)
	var got []string
	for _, e := range evs {
		if e.Type == "message" {
			got = append(got, decode[events.Message](t, e.Data).ID)
		}
	}
	require.Equal(t, []string{m.ID}, got)
}

// TestStreamOverHTTP2: an HTTP/2 stream cannot be hijacked and stays in its handler.
func TestStreamOverHTTP2(t *testing.T) {
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)
	ts := httptest.NewUnstartedServer(in.Server.Config.Handler)
	ts.EnableHTTP2 = true
	ts.StartTLS()
	defer ts.Close()
	req, err := http.NewRequest("GET", ts.URL+"/v1/events", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+bob.Token)
	res, err := ts.Client().Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, 200, res.StatusCode)
	require.Equal(t, 2, res.ProtoMajor)
	r := bufio.NewReader(res.Body)
	m := alice.send(conv.ID, "over h2")
	p := &sseParser{}
	for {
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		if ev := p.line(strings.TrimRight(line, "\r\n")); ev != nil && ev.Type == "message" {
			require.Equal(t, m.ID, decode[events.Message](t, ev.Data).ID)
			return
		}
	}
}

// TestStreamEndsAfterItsLifetime: streams end after the configured lifetime (with jitter),
// so that clients reconnect and a load balancer can spread them over new instances.
func TestStreamEndsAfterItsLifetime(t *testing.T) {
	in := newInstance(t, func(c *Config, _ *events.Config) { c.StreamLifetime = 500 * time.Millisecond })
	bob := newUser(t, in, "bob")
	s, _ := openReady(t, in.URL+"/v1/events", bob.Token, nil)
	require.True(t, s.ended(wait))
	require.Eventually(t, func() bool { return !in.Hub.Online(bob.ID) }, wait, 10*time.Millisecond)
}

func TestMetricsReportStreamsListenerAndFence(t *testing.T) {
	in := newInstance(t)
	bob := newUser(t, in, "bob")
	_, _ = openReady(t, in.URL+"/v1/events", bob.Token, nil)
	r := call(t, "GET", in.URL+"/metrics", testMetricsToken, nil)
	require.Equal(t, 200, r.Status)
	body := string(r.Body)
	for _, want := range []string{"chatd_streams_open 1", "chatd_listener_up 1", "chatd_fence_oldest_transaction_seconds ", "chatd_db_connections ", "chatd_db_acquire_waits_total ", "chatd_db_acquire_wait_seconds_total ",
		"chatd_log_leader ", "chatd_log_reads_total ", "chatd_log_resignations_total 0", "chatd_log_forwards_lost_total "} {
		require.Contains(t, body, want)
	}
	require.NotContains(t, body, "chatd_fence_oldest_transaction_seconds -1")
}

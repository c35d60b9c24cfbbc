package api

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

// Tests of the limits that keep one hostile or careless client from hurting everyone else
// (issue 7): caps, malformed text, and what a refused request leaves behind.

func TestTicketSurvivesAStreamRefusedForItsCap(t *testing.T) {
	in := newInstance(t, func(c *Config, _ *events.Config) { c.StreamsPerUser = 1 })
	bob := newUser(t, in, "bob")
	first, _ := openReady(t, in.URL+"/v1/events", bob.Token, nil)

	r := bob.do("POST", "/v1/tickets", nil)
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var tk struct{ Ticket string }
	r.JSON(t, &tk)
	refused := openStream(t, in.URL+"/v1/events?ticket="+tk.Ticket, "", nil)
	require.Equal(t, 429, refused.Status, "bob already holds his one stream")
	require.NotEmpty(t, refused.Header.Get("Retry-After"))

	first.close()
	require.Eventually(t, func() bool { return in.Hub.Streams() == 0 }, wait, 10e6)
	again, _ := openReady(t, in.URL+"/v1/events?ticket="+tk.Ticket, "", nil)
	again.close()
	used := openStream(t, in.URL+"/v1/events?ticket="+tk.Ticket, "", nil)
	require.Equal(t, 401, used.Status, "the ticket is used up once a stream opened with it")
}

func TestTicketSurvivesAStreamRefusedForItsRate(t *testing.T) {
	var ahead atomic.Int64 // how far the instance's clock is ahead of the real one
	in := newInstance(t, func(c *Config, _ *events.Config) {
		c.ReadRate, c.ReadBurst = 0.1, 1
		c.Now = func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	})
	bob := newUser(t, in, "bob")
	r := bob.do("POST", "/v1/tickets", nil)
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var tk struct{ Ticket string }
	r.JSON(t, &tk)
	require.Equal(t, 200, bob.do("GET", "/v1/unread", nil).Status, "bob's one read")
	refused := openStream(t, in.URL+"/v1/events?ticket="+tk.Ticket, "", nil)
	require.Equal(t, 429, refused.Status)

	ahead.Store(int64(time.Minute)) // the read budget refills
	again, _ := openReady(t, in.URL+"/v1/events?ticket="+tk.Ticket, "", nil)
	again.close()
}

func TestInstanceStreamCapAnswers503WithRetryAfter(t *testing.T) {
	in := newInstance(t, func(c *Config, _ *events.Config) { c.MaxStreams = 2 })
	alice, bob, carol := newUser(t, in, "alice"), newUser(t, in, "bob"), newUser(t, in, "carol")
	s1, _ := openReady(t, in.URL+"/v1/events", alice.Token, nil)
	openReady(t, in.URL+"/v1/events", bob.Token, nil)

	for _, path := range []string{"/v1/events", "/v1/events/poll?timeout=1"} {
		r := openStream(t, in.URL+path, carol.Token, nil)
		require.Equal(t, 503, r.Status, path)
		require.NotEmpty(t, r.Header.Get("Retry-After"), path)
	}
	res := carol.do("GET", "/v1/events/poll?timeout=0", nil)
	require.Equal(t, "instance_full", res.ErrorCode())
	require.Equal(t, 200, carol.do("GET", "/v1/conversations", nil).Status, "REST is not capped by streams")

	s1.close()
	require.Eventually(t, func() bool { return in.Hub.Streams() == 1 }, wait, 10e6)
	openReady(t, in.URL+"/v1/events", carol.Token, nil)
}

func TestGroupTitleRefusesControlCharacters(t *testing.T) {
	in := newInstance(t)
	alice := newUser(t, in, "alice")
	for _, title := range []string{"line\nbreak", "carriage\rreturn", "esc\x1b[31m", "del\x7f", "c1\u0085x", "tab\tinside"} {
		r := alice.do("POST", "/v1/conversations", map[string]any{"participant_ids": []string{uniq("bob")}, "title": title})
		require.Equal(t, 422, r.Status, "%q: %s", title, r.Body)
		require.Equal(t, "invalid_title", r.ErrorCode())
	}
	r := alice.do("POST", "/v1/conversations", map[string]any{"participant_ids": []string{uniq("bob")}, "title": "Ünïcode títle 🎉"})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var list struct{ Conversations []events.Conversation }
	alice.do("GET", "/v1/conversations", nil).JSON(t, &list)
	require.Len(t, list.Conversations, 1, "the refused groups were not created")
}

func TestLoneSurrogateEscapeIsRefused(t *testing.T) {
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)
	path := "/v1/conversations/" + conv.ID + "/messages"
	for _, body := range []string{`{"body":"\ud800"}`, `{"body":"a\udc00b"}`, `{"body":"\ud800\u0041"}`, `{"body":"x\\\ud83d"}`} {
		r := alice.do("POST", path, body)
		require.Equal(t, 400, r.Status, "%s: %s", body, r.Body)
		require.Equal(t, "invalid_utf8", r.ErrorCode())
	}
	r := alice.do("POST", path, `{"body":"\ud83d\ude00 \\ud800 is text"}`)
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var m events.Message
	r.JSON(t, &m)
	require.Equal(t, "😀 \\ud800 is text", m.Body)
	var page struct{ Messages []events.Message }
	alice.do("GET", path, nil).JSON(t, &page)
	require.Len(t, page.Messages, 1, "nothing refused was stored")
}

func TestHasLoneSurrogate(t *testing.T) {
	for in, want := range map[string]bool{
		`"\ud800"`: true, `"\uDBFF\uDFFF"`: false, `"\udfff"`: true, `"\ud800\\udc00"`: true,
		`"\\ud800"`: false, `"\u00e9"`: false, `"\ud800`: true, `"\u12"`: false, `"\\\ud800"`: true,
	} {
		require.Equal(t, want, hasLoneSurrogate([]byte(in)), in)
	}
}

// rawRequest writes head (a request line and headers, without the blank line) and then
// body to a new connection to url, and returns the connection.
func rawRequest(t *testing.T, url, head, body string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	_, err = io.WriteString(conn, head+"\r\nHost: chatd\r\n\r\n"+body)
	require.NoError(t, err)
	return conn
}

// answer reads one response from conn and reports whether the server then closed the
// connection, waiting at most limit for both.
func answer(t *testing.T, conn net.Conn, limit time.Duration) (res *http.Response, closed bool) {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(limit)))
	rd := bufio.NewReader(conn)
	res, err := http.ReadResponse(rd, nil)
	require.NoError(t, err, "no answer within %v", limit)
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	_, err = rd.ReadByte()
	return res, err == io.EOF
}

// A client that announces a body and never sends it gets its answer and loses its
// connection at once when the request is refused anyway, and within the body timeout when
// it is not: it cannot hold a connection (a file) for ever, token or not.
func TestStalledRequestBodiesDoNotHoldConnections(t *testing.T) {
	in := newInstance(t, func(c *Config, _ *events.Config) { c.BodyTimeout = 500 * time.Millisecond })
	alice := newUser(t, in, "alice")

	t.Run("without a token", func(t *testing.T) {
		conn := rawRequest(t, in.URL, "POST /v1/conversations HTTP/1.1\r\nContent-Length: 1000", "")
		res, closed := answer(t, conn, 5*time.Second)
		require.Equal(t, 401, res.StatusCode)
		require.True(t, closed, "the connection is closed, not kept to drain a body that never comes")
	})
	t.Run("with a token, half the body", func(t *testing.T) {
		start := time.Now()
		conn := rawRequest(t, in.URL, "POST /v1/conversations HTTP/1.1\r\nAuthorization: Bearer "+alice.Token+
			"\r\nContent-Type: application/json\r\nContent-Length: 1000", `{"participant_id":`)
		res, closed := answer(t, conn, 5*time.Second)
		require.Equal(t, 408, res.StatusCode)
		require.True(t, closed)
		require.GreaterOrEqual(t, time.Since(start), 450*time.Millisecond, "the body had at least 90 % of its timeout (spread)")
	})
	t.Run("a body in time is served", func(t *testing.T) {
		bob := uniq("bob")
		conn := rawRequest(t, in.URL, "POST /v1/conversations HTTP/1.1\r\nAuthorization: Bearer "+alice.Token+
			"\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(`{"participant_id":"`+bob+`"}`)),
			`{"participant_id":"`+bob+`"}`)
		res, closed := answer(t, conn, 100*time.Millisecond+time.Second)
		require.Equal(t, 201, res.StatusCode)
		require.False(t, closed, "a served request keeps its connection alive")
	})
}

// Over its connection cap an instance answers 503 with Retry-After and closes, without
// waiting for a request; a freed slot is taken again.
func TestConnectionCapRefusesWith503(t *testing.T) {
	in := newInstance(t)
	ln := serveCapped(t, in.Server.Config.Handler, ConnLimits{Max: 2, RetryAfter: 3 * time.Second})
	url := "http://" + ln.Addr().String()

	idle1, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	idle2, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer idle2.Close()
	// The refused client has sent its request already, as clients do: it still gets the
	// answer, not a reset.
	third := rawRequest(t, url, "GET /v1/conversations HTTP/1.1", "")
	res, closed := answer(t, third, 5*time.Second)
	require.Equal(t, 503, res.StatusCode)
	require.Equal(t, "3", res.Header.Get("Retry-After"))
	require.True(t, closed)

	idle1.Close()
	require.Eventually(t, func() bool { return healthzOK(ln.Addr().String()) }, wait, 20*time.Millisecond, "the slot idle1 held is free again: %s", url)
}

func TestConnectionCapPerAddress(t *testing.T) {
	ln := serveCapped(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}),
		ConnLimits{Max: 100, PerAddr: 1, RetryAfter: time.Second})
	held, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer held.Close()
	second, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	res, _ := answer(t, second, 5*time.Second)
	require.Equal(t, 503, res.StatusCode, "127.0.0.1 already holds its one connection")
	other, err := net.DialTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, ln.Addr().(*net.TCPAddr))
	require.NoError(t, err)
	defer other.Close()
	_, _ = io.WriteString(other, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	res, _ = answer(t, other, 5*time.Second)
	require.Equal(t, 200, res.StatusCode, "another address has its own allowance")
}

// A stream that took its connection over still counts against the cap, delivers through
// the listener's connection, and gives its slot back when it ends.
func TestHijackedStreamHoldsAndReturnsItsConnectionSlot(t *testing.T) {
	in := newInstance(t)
	ln := serveCapped(t, in.Server.Config.Handler, ConnLimits{Max: 1, RetryAfter: time.Second})
	capped := "http://" + ln.Addr().String()

	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)
	s, _ := openReady(t, capped+"/v1/events", bob.Token, nil)
	m := alice.send(conv.ID, "through the capped listener")
	require.Equal(t, m.ID, decode[events.Message](t, s.nextOf("message", wait).Data).ID)
	res, _ := answer(t, rawRequest(t, capped, "GET /healthz HTTP/1.1", ""), 5*time.Second)
	require.Equal(t, 503, res.StatusCode, "the stream holds the one connection")

	s.close()
	require.Eventually(t, func() bool { return healthzOK(ln.Addr().String()) }, wait, 20*time.Millisecond, "the stream's slot is free again")
}

// failingConn is a connection whose writes fail, as to a client that stopped reading,
// and which counts the writes it was asked for.
type failingConn struct {
	net.Conn
	writes int
}

func (c *failingConn) Write([]byte) (int, error) {
	c.writes++
	return 0, errors.New("write timeout")
}
func (c *failingConn) SetWriteDeadline(time.Time) error { return nil }
func (c *failingConn) Close() error                     { return nil }

// A stream whose write failed closes without trying to write the last chunk: the client
// is not reading, and another write would hold the connection for another timeout.
func TestStreamClosesAtOnceAfterAFailedWrite(t *testing.T) {
	conn := &failingConn{}
	out := &hijackedOut{conn: conn, w: conn, timeout: time.Second}
	require.Error(t, out.send([]byte("data: x\n\n")))
	require.Equal(t, 1, conn.writes)
	out.close()
	require.Equal(t, 1, conn.writes, "no last chunk after a failed write")
}

// serveCapped serves h as an instance does (NewHTTPServer) on a loopback listener within
// limits, until the test ends.
func serveCapped(t *testing.T, h http.Handler, limits ConnLimits) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := NewHTTPServer(h)
	go func() { _ = srv.Serve(LimitListener(ln, limits)) }()
	t.Cleanup(func() { srv.Close() })
	return ln
}

// healthzOK reports whether a new connection to addr is served: GET /healthz answers 200.
func healthzOK(addr string) bool {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return false
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: chatd\r\nConnection: close\r\n\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	r, err := http.ReadResponse(bufio.NewReader(conn), nil)
	return err == nil && r.StatusCode == 200
}

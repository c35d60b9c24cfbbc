package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/db"
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

func TestMessageOnOneInstanceReachesStreamsOnEvery(t *testing.T) {
	a, b := newInstance(t), newInstance(t)
	alice, bob := newUser(t, a, "alice"), newUser(t, b, "bob")
	conv := alice.direct(bob)

	bobStream, _ := openReady(t, b.URL+"/v1/events", bob.Token, nil)
	aliceOther, _ := openReady(t, a.URL+"/v1/events", alice.Token, nil)
	aliceOnB, _ := openReady(t, b.URL+"/v1/events", alice.Token, nil)
	m := alice.send(conv.ID, "hello from A")

	for _, s := range []*stream{bobStream, aliceOther, aliceOnB} {
		ev := s.nextOf("message", wait)
		require.True(t, ev.HasID)
		got := decode[events.Message](t, ev.Data)
		require.Equal(t, m.ID, got.ID)
		require.Equal(t, "hello from A", got.Body)
	}

	// Typing is ephemeral: it crosses instances too, carries no id and skips the typist,
	// both on the typist's instance and on the others (where the notification names the
	// typist to skip). Bob's stream on B has the typing event, so B has published it; the
	// message after it reaches every stream later than the typing event would have.
	r := alice.do("POST", "/v1/conversations/"+conv.ID+"/typing", map[string]any{"typing": true})
	require.Equal(t, 204, r.Status, "%s", r.Body)
	ev := bobStream.nextOf("typing", wait)
	require.False(t, ev.HasID)
	require.Equal(t, events.Typing{ConversationID: conv.ID, UserID: alice.ID, Typing: true}, decode[events.Typing](t, ev.Data))
	alice.send(conv.ID, "after typing")
	for _, s := range []*stream{aliceOther, aliceOnB} {
		for {
			ev := s.next(wait)
			require.NotEqual(t, "typing", ev.Type, "the typist's own streams do not get its typing event")
			if ev.Type == "message" {
				break
			}
		}
	}
}

func TestResumeAfterGapDeliversExactlyTheMissedEventsThenLive(t *testing.T) {
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)
	s, cursor := openReady(t, in.URL+"/v1/events", bob.Token, nil)
	s.close()

	for i := 1; i <= 100; i++ {
		alice.send(conv.ID, fmt.Sprintf("missed %d", i))
	}
	s, ready := openReady(t, in.URL+"/v1/events", bob.Token, map[string]string{"Last-Event-ID": cursor})
	require.Equal(t, cursor, ready)
	for i := 1; i <= 100; i++ {
		ev := s.nextOf("message", wait) // the conversation event may come first
		m := decode[events.Message](t, ev.Data)
		require.Equal(t, int64(i), m.Seq)
		require.Equal(t, fmt.Sprintf("missed %d", i), m.Body)
	}
	live := alice.send(conv.ID, "live")
	ev := s.nextOf("message", wait)
	require.Equal(t, live.ID, decode[events.Message](t, ev.Data).ID)
	require.Equal(t, int64(101), decode[events.Message](t, ev.Data).Seq)

	// The query parameter resumes a new EventSource from a stored cursor the same way.
	s2, _ := openReady(t, in.URL+"/v1/events?last_event_id="+ev.LastID, bob.Token, nil)
	alice.send(conv.ID, "after stored cursor")
	require.Equal(t, int64(102), decode[events.Message](t, s2.nextOf("message", wait).Data).Seq)
}

func TestBadCursorResetsAndContinuesLive(t *testing.T) {
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)
	for _, tc := range []struct{ cursor, reason string }{
		{"not-a-cursor", "malformed"},
		{"01_1", "malformed"},
		{"999999999999_1", "unknown"},
		{"99999999999_99999999999", "unknown"},
	} {
		s, ready := openReady(t, in.URL+"/v1/events", bob.Token, map[string]string{"Last-Event-ID": tc.cursor})
		ev := s.next(wait)
		require.Equal(t, "reset", ev.Type, tc.cursor)
		require.False(t, ev.HasID)
		reset := decode[events.Reset](t, ev.Data)
		require.Equal(t, tc.reason, reset.Reason)
		require.Equal(t, ready, reset.Cursor)
		require.Equal(t, ready, ev.LastID, "a reconnect after a reset resumes from the head, not the bad cursor")
		m := alice.send(conv.ID, "live after reset")
		require.Equal(t, m.ID, decode[events.Message](t, s.nextOf("message", wait).Data).ID)
		s.close()
	}
}

func TestExpiredCursorResets(t *testing.T) {
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)
	s, old := openReady(t, in.URL+"/v1/events", bob.Token, nil)
	alice.send(conv.ID, "soon pruned")
	pruned := s.nextOf("message", wait).LastID
	s.close()
	// Retention pruned everything up to the message: old is behind the floor now. (Setting
	// the floor rather than deleting keeps the events other tests are reading.)
	floor, err := events.ParseCursor(pruned)
	require.NoError(t, err)
	var was events.Cursor
	require.NoError(t, in.Pool.QueryRow(context.Background(), "SELECT tx::text::bigint, id FROM event_floor").Scan(&was.Tx, &was.ID))
	_, err = in.Pool.Exec(context.Background(), "UPDATE event_floor SET tx = $1::text::xid8, id = $2", fmt.Sprint(floor.Tx), floor.ID)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = in.Pool.Exec(context.Background(), "UPDATE event_floor SET tx = $1::text::xid8, id = $2", fmt.Sprint(was.Tx), was.ID)
	})
	s, _ = openReady(t, in.URL+"/v1/events", bob.Token, map[string]string{"Last-Event-ID": old})
	ev := s.next(wait)
	require.Equal(t, "reset", ev.Type)
	require.Equal(t, "expired", decode[events.Reset](t, ev.Data).Reason)
	// The floor itself is still a valid place to resume from.
	s, ready := openReady(t, in.URL+"/v1/events", bob.Token, map[string]string{"Last-Event-ID": pruned})
	require.Equal(t, pruned, ready)
	s.close()
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

// TestExactlyOnceInOrderUnderConcurrentWritersAndAHeldTransaction is the race the event-log
// fence exists for: events committed out of id order while one writing transaction stays
// open for a second. A client that keeps disconnecting and resuming must still receive
// every message exactly once, in each conversation's seq order.
func TestExactlyOnceInOrderUnderConcurrentWritersAndAHeldTransaction(t *testing.T) {
	// Quick heartbeats tell when a stream has finished its replay and relays live events.
	quick := func(c *Config, _ *events.Config) { c.Heartbeat = 50 * time.Millisecond }
	a, b := newInstance(t, quick), newInstance(t, quick)
	reader := newUser(t, a, "reader")
	const convs, writers, perWriter = 4, 8, 25
	ids := make([]string, convs)
	ws := make([]*testUser, writers)
	for i := range ws {
		ws[i] = newUser(t, a, fmt.Sprintf("writer%d", i))
		if i%2 == 1 {
			ws[i] = ws[i].on(b) // half of the writers post through the other instance
		}
	}
	for c := range ids {
		r := reader.do("POST", "/v1/conversations", map[string]any{"participant_ids": []string{ws[c].ID, ws[c+convs].ID}})
		require.Equal(t, 201, r.Status)
		var conv events.Conversation
		r.JSON(t, &conv)
		ids[c] = conv.ID
	}
	_, cursor := openReady(t, a.URL+"/v1/events", reader.Token, nil)

	// The held transaction takes its event id before most of the others, then commits
	// last: it stays open until every other writer has committed messages behind it, in
	// conversations other than its own (whose sends wait for its lock).
	held, hold := make(chan struct{}), make(chan struct{})
	release := sync.OnceFunc(func() { close(hold) })
	defer release() // a failure below must not leave the transaction (and its connection) open
	heldDone := make(chan error, 1)
	go func() {
		heldDone <- db.InTx(context.Background(), a.Pool, func(q *db.Queries) error {
			conv, _ := events.ParseUUID(ids[1])
			_, err := q.SendMessage(context.Background(), db.SendMessageParams{ConversationID: conv, SenderID: ws[1].ID, Body: "held"})
			close(held)
			<-hold
			return err
		})
		a.Log.Written()
	}()
	<-held
	var wg sync.WaitGroup
	sendErrs := make(chan error, writers)
	committed := make([]chan struct{}, writers) // closed at each writer's first message
	for i, w := range ws {
		wg.Add(1)
		committed[i] = make(chan struct{})
		go func() {
			defer wg.Done()
			for n := 0; n < perWriter; n++ {
				if _, err := w.trySend(ids[i%convs], fmt.Sprintf("%s #%d", w.ID, n)); err != nil {
					sendErrs <- err
					return
				}
				if n == 0 {
					close(committed[i])
				}
			}
		}()
	}
	for i := range ws {
		if i%convs == 1 {
			continue // conversation 1 waits for the held transaction's lock
		}
		select {
		case <-committed[i]:
		case err := <-sendErrs:
			require.NoError(t, err)
		case <-time.After(wait):
			t.Fatalf("writer %d committed nothing while the transaction was held", i)
		}
	}
	// The others' messages are committed, yet behind the fence (a transaction older than
	// theirs, the held one, is open): the race the fence exists for. The held one ends last.
	var behind int
	require.NoError(t, a.Pool.QueryRow(context.Background(), `SELECT count(*) FROM events
		WHERE conversation_id = ANY($1::uuid[]) AND type = 'message' AND tx >= pg_snapshot_xmin(pg_current_snapshot())`,
		ids).Scan(&behind))
	require.GreaterOrEqual(t, behind, writers-writers/convs, "committed messages behind the held transaction")
	// The first stream replays and goes live (its first heartbeat) while the transaction
	// is still held: without the fence it would read past the held event now.
	first, _ := openReady(t, a.URL+"/v1/events", reader.Token, map[string]string{"Last-Event-ID": cursor})
	select {
	case <-first.pinged:
	case <-time.After(wait):
		t.Fatal("no heartbeat on the first stream")
	}
	release()

	total := writers*perWriter + 1
	seen := map[string]bool{}
	lastSeq := map[string]int64{}
	instances := []*instance{a, b}
	for round := 0; len(seen) < total; round++ {
		require.Less(t, round, 500, "never caught up: %d of %d", len(seen), total)
		select {
		case err := <-sendErrs:
			require.NoError(t, err)
		default:
		}
		s := first
		if round > 0 {
			s, _ = openReady(t, instances[round%2].URL+"/v1/events", reader.Token, map[string]string{"Last-Event-ID": cursor})
		}
		// Read a few events, then drop the connection mid-stream.
		for n := 0; n < 1+round%7 && len(seen) < total; n++ {
			ev := s.nextOf("message", wait)
			m := decode[events.Message](t, ev.Data)
			require.False(t, seen[m.ID], "message %s delivered twice", m.ID)
			seen[m.ID] = true
			require.Equal(t, lastSeq[m.ConversationID]+1, m.Seq, "conversation %s out of order", m.ConversationID)
			lastSeq[m.ConversationID] = m.Seq
			cursor = ev.LastID
		}
		s.close()
	}
	wg.Wait()
	close(sendErrs)
	for err := range sendErrs {
		require.NoError(t, err)
	}
	require.NoError(t, <-heldDone)
	require.Len(t, seen, total)
}

func TestListenerReconnectsAfterTermination(t *testing.T) {
	a, b := newInstance(t), newInstance(t)
	alice, bob := newUser(t, a, "alice"), newUser(t, b, "bob")
	conv := alice.direct(bob)
	s, _ := openReady(t, b.URL+"/v1/events", bob.Token, nil)

	const n = 60
	sent := make(chan error, 1)
	go func() {
		sent <- func() error {
			for i := 1; i <= n; i++ {
				if _, err := alice.trySend(conv.ID, fmt.Sprintf("m%d", i)); err != nil {
					return err
				}
				if i == n/3 || i == 2*n/3 {
					// Kill every listener mid-traffic: notifications sent meanwhile are lost.
					if _, err := a.Pool.Exec(context.Background(),
						"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'chatd_listener' AND datname = current_database()"); err != nil {
						return err
					}
				}
			}
			return nil
		}()
	}()
	for i := 1; i <= n; i++ {
		select {
		case err := <-sent:
			require.NoError(t, err)
			sent <- nil // put it back for the final receive below
		default:
		}
		m := decode[events.Message](t, s.nextOf("message", wait).Data)
		require.Equal(t, int64(i), m.Seq)
	}
	require.NoError(t, <-sent)
	require.Eventually(t, func() bool { return a.Log.Listening() && b.Log.Listening() }, wait, 10*time.Millisecond)
	r := call(t, "GET", b.URL+"/readyz", "", nil)
	require.Equal(t, 200, r.Status)
}

func TestReadyzIsUnavailableWithoutListener(t *testing.T) {
	// The listener connects through a gate the test can shut, so that after the kill it
	// stays down (instead of reconnecting within the backoff) until the test says so.
	g := newGate(t, testDB)
	in := newInstance(t, func(_ *Config, e *events.Config) { e.ListenURL = g.URL })
	require.Equal(t, 200, call(t, "GET", in.URL+"/readyz", "", nil).Status)
	g.shut()
	_, err := in.Pool.Exec(context.Background(),
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'chatd_listener' AND datname = current_database()")
	require.NoError(t, err)
	readyz := func(status int, code string) func() bool {
		return func() bool {
			r, err := tryCall("GET", in.URL+"/readyz", "", nil)
			return err == nil && r.Status == status && r.ErrorCode() == code
		}
	}
	require.Eventually(t, readyz(503, "listener_down"), wait, 20*time.Millisecond, "readyz must tell that the listener is down")
	g.open()
	require.Eventually(t, readyz(200, ""), wait, 20*time.Millisecond, "ready again once the listener reconnects")

	broken := newInstanceNoWait(t, func(_ *Config, e *events.Config) {
		e.ListenURL = "postgres://127.0.0.1:1/nowhere?sslmode=disable&connect_timeout=1"
	})
	r := call(t, "GET", broken.URL+"/readyz", "", nil)
	require.Equal(t, 503, r.Status)
	require.Equal(t, "listener_down", r.ErrorCode())
	require.NotEmpty(t, r.Header.Get("Retry-After"))
	require.Equal(t, 200, call(t, "GET", broken.URL+"/healthz", "", nil).Status)
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

// gate forwards TCP connections to a PostgreSQL server while open; shut, it hangs up on
// new connections at once, as a server that is down would.
type gate struct {
	URL    string // the database URL through the gate
	ln     net.Listener
	target string
	closed atomic.Bool
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]bool
}

// newGate opens a gate to the database of dbURL; it closes, with every connection through
// it, when the test ends.
func newGate(t *testing.T, dbURL string) *gate {
	t.Helper()
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	g := &gate{ln: ln, target: u.Host, conns: map[net.Conn]bool{}}
	u.Host = ln.Addr().String()
	g.URL = u.String()
	g.wg.Add(1)
	go g.accept()
	t.Cleanup(func() {
		ln.Close()
		g.mu.Lock()
		for c := range g.conns {
			c.Close()
		}
		g.mu.Unlock()
		g.wg.Wait()
	})
	return g
}

func (g *gate) shut() { g.closed.Store(true) }
func (g *gate) open() { g.closed.Store(false) }

func (g *gate) accept() {
	defer g.wg.Done()
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		if g.closed.Load() {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", g.target)
		if err != nil {
			c.Close()
			continue
		}
		g.mu.Lock()
		g.conns[c], g.conns[up] = true, true
		g.mu.Unlock()
		// Each direction closes both ends when it ends, so that the other ends too.
		for _, p := range [][2]net.Conn{{c, up}, {up, c}} {
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				_, _ = io.Copy(p[0], p[1])
				p[0].Close()
				p[1].Close()
			}()
		}
	}
}

type pollAnswer struct {
	Events []struct {
		ID   string          `json:"id"`
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	} `json:"events"`
	Cursor string `json:"cursor"`
}

func TestLongPoll(t *testing.T) {
	a, b := newInstance(t), newInstance(t)
	alice, bob := newUser(t, a, "alice"), newUser(t, b, "bob")
	conv := alice.direct(bob)

	var head pollAnswer
	r := bob.do("GET", "/v1/events/poll", nil)
	r.OK(t, &head)
	var raw map[string]json.RawMessage
	r.JSON(t, &raw)
	require.JSONEq(t, `[]`, string(raw["events"]), "an empty answer has an empty list, not null")
	require.NotEmpty(t, head.Cursor)

	for i := 1; i <= 3; i++ {
		alice.send(conv.ID, fmt.Sprintf("p%d", i))
	}
	// The poll answers as soon as anything is there, so collect until all three arrived.
	var got pollAnswer
	cursor := head.Cursor
	var seqs []int64
	for len(seqs) < 3 {
		r := bob.do("GET", "/v1/events/poll?timeout=5&cursor="+cursor, nil)
		require.Equal(t, 200, r.Status, "%s", r.Body)
		r.JSON(t, &got)
		require.NotEmpty(t, got.Events)
		for _, e := range got.Events {
			if e.Type == "message" { // the conversation's creation may come first
				seqs = append(seqs, decode[events.Message](t, string(e.Data)).Seq)
			}
		}
		cursor = got.Cursor
	}
	require.Equal(t, []int64{1, 2, 3}, seqs)
	require.Equal(t, got.Events[len(got.Events)-1].ID, got.Cursor)

	// Nothing new: the poll waits, and answers when a message arrives on the other instance.
	done := make(chan response, 1)
	failed := make(chan error, 1)
	go func() {
		r, err := tryCall("GET", b.URL+"/v1/events/poll?timeout=30&cursor="+got.Cursor, bob.Token, nil)
		if err != nil {
			failed <- err
			return
		}
		done <- r
	}()
	require.Eventually(t, func() bool { return b.Hub.Streams() > 0 || len(failed) > 0 }, wait, 10*time.Millisecond)
	m := alice.send(conv.ID, "wakes the poll")
	select {
	case err := <-failed:
		require.NoError(t, err)
	case r := <-done:
		var next pollAnswer
		r.OK(t, &next)
		require.Len(t, next.Events, 1)
		require.Equal(t, m.ID, decode[events.Message](t, string(next.Events[0].Data)).ID)
		// Poll cursors and stream ids are one cursor space.
		s, ready := openReady(t, a.URL+"/v1/events", bob.Token, map[string]string{"Last-Event-ID": next.Cursor})
		require.Equal(t, next.Cursor, ready)
		s.close()
	case <-time.After(wait):
		t.Fatal("poll did not answer")
	}

	var empty pollAnswer
	bob.do("GET", "/v1/events/poll?timeout=0&cursor="+got.Cursor+"x", nil).OK(t, &empty)
	require.Len(t, empty.Events, 1)
	require.Equal(t, "reset", empty.Events[0].Type)
	require.Equal(t, "malformed", decode[events.Reset](t, string(empty.Events[0].Data)).Reason)

	require.Equal(t, 400, bob.do("GET", "/v1/events/poll?timeout=56&cursor="+got.Cursor, nil).Status)
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
	for _, want := range []string{"chatd_streams_open 1", "chatd_listener_up 1", "chatd_fence_oldest_transaction_seconds ", "chatd_db_connections "} {
		require.Contains(t, body, want)
	}
	require.NotContains(t, body, "chatd_fence_oldest_transaction_seconds -1")
}

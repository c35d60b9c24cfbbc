package events

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/db"
)

// quickLeader makes a Log of a test take over the reader lock soon after another test's
// leader is gone (Logs of earlier tests may still hold it for a moment).
func quickLeader(cfg Config) Config {
	cfg.LeaderRetry = 20 * time.Millisecond
	return cfg
}

// startLeading starts a Log with cfg (taking the reader lock over soon after another
// test's leader is gone) and waits until it leads.
func startLeading(t *testing.T, ctx context.Context, cfg Config) *Log {
	t.Helper()
	l := NewLog(quickLeader(cfg))
	require.NoError(t, l.Start(ctx))
	require.Eventually(t, l.Leading, 10*time.Second, 5*time.Millisecond)
	return l
}

// startFollowing starts a Log with cfg, while another leads, and waits until it listens.
func startFollowing(t *testing.T, ctx context.Context, cfg Config) *Log {
	t.Helper()
	l := NewLog(cfg)
	require.NoError(t, l.Start(ctx))
	require.Eventually(t, l.Listening, 10*time.Second, 5*time.Millisecond)
	return l
}

// insertRead writes a read event of user in conv straight to the log, committed, and
// returns its position.
func insertRead(t *testing.T, pool *pgxpool.Pool, conv pgtype.UUID, user string, seq int64) Cursor {
	t.Helper()
	c, err := tryInsertRead(pool, conv, user, seq)
	require.NoError(t, err)
	return c
}

// tryInsertRead is insertRead for goroutines other than the test's.
func tryInsertRead(pool *pgxpool.Pool, conv pgtype.UUID, user string, seq int64) (Cursor, error) {
	var tx string
	var id int64
	if err := pool.QueryRow(context.Background(),
		"INSERT INTO events (conversation_id, type, user_id, seq) VALUES ($1, 'read', $2, $3) RETURNING tx::text, id",
		conv, user, seq).Scan(&tx, &id); err != nil {
		return Cursor{}, err
	}
	n, err := strconv.ParseUint(tx, 10, 64)
	return Cursor{Tx: n, ID: id}, err
}

// notifyForward sends payload on the forward channel, as a leader would.
func notifyForward(t *testing.T, pool *pgxpool.Pool, payload string) {
	t.Helper()
	_, err := pool.Exec(context.Background(), "SELECT pg_notify($1, $2)", forwardChannel, payload)
	require.NoError(t, err)
}

// holdReaderLock takes the reader lock on a connection of its own until the test ends, so
// that no Log of the test leads.
func holdReaderLock(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testDB)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(ctx) })
	require.Eventually(t, func() bool {
		got, err := db.New(conn).TryLeadLog(ctx)
		require.NoError(t, err)
		return got
	}, 10*time.Second, 10*time.Millisecond, "another test's leader did not let go of the reader lock")
}

// takeN takes events from sub until it has n, or fails after wait.
func takeN(t *testing.T, sub *Subscriber, n int) []*Event {
	t.Helper()
	var got []*Event
	deadline := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case <-sub.Ready():
			evs, done, _ := sub.Take()
			require.False(t, done)
			got = append(got, evs...)
		case <-deadline:
			t.Fatalf("%d of %d events arrived", len(got), n)
		}
	}
	return got
}

// requireNothingMore fails if sub receives anything within a short while.
func requireNothingMore(t *testing.T, sub *Subscriber) {
	t.Helper()
	select {
	case <-sub.Ready():
		evs, _, _ := sub.Take()
		require.Empty(t, evs, "nothing more was due")
	case <-time.After(200 * time.Millisecond):
	}
}

// TestFollowerTakesForwardsAndReadsOnlyWhatIsMissing plays the leader by hand: the test
// holds the reader lock and sends forwards, true and false, to a follower, which must
// publish a forward without reading the log, and read the log itself for a forward that
// starts past its position (one was missed), for a range too large to forward, and never
// for one it has already seen or one that is not a forward.
func TestFollowerTakesForwardsAndReadsOnlyWhatIsMissing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool := testPool(t)
	conv := newConversation(t, pool, "fwd-a", "fwd-b")
	holdReaderLock(t)
	reads := &readCounter{}
	f := NewLog(Config{Pool: tracedPool(t, reads), ListenURL: testDB, SafetyPoll: time.Hour, LeaderWait: time.Hour})
	require.NoError(t, f.Start(ctx))
	require.Eventually(t, f.Listening, 10*time.Second, 10*time.Millisecond)
	sub, head := f.Hub().Subscribe("fwd-a")
	// Wait for the catch-up read the listener asks for when it connects; nothing is
	// pending for fwd-a, so the reads counted from here on are the ones under test.
	require.Eventually(t, func() bool { return reads.n.Load() >= 1 }, 10*time.Second, time.Millisecond)
	before := reads.n.Load()
	c1 := insertRead(t, pool, conv, "fwd-b", 1)
	c2 := insertRead(t, pool, conv, "fwd-b", 2)
	c3 := insertRead(t, pool, conv, "fwd-b", 3)
	fake := func(c Cursor) *Event {
		return &Event{Cursor: c, Type: "read", Conversation: UUIDString(conv), Recipients: []string{"fwd-a"}, Data: []byte(`{"forwarded":true}`)}
	}
	// Fence: the three rows must be final before anyone "read" them.
	require.Eventually(t, func() bool {
		h, err := f.Head(ctx)
		return err == nil && !h.Less(c3)
	}, 10*time.Second, 5*time.Millisecond)

	// 1. A forward that starts where the follower stands: published as it is, no read.
	for _, p := range packForward("7e57000000000001", head, c1, []*Event{fake(c1)}) {
		notifyForward(t, pool, p)
	}
	got := takeN(t, sub, 1)
	require.Equal(t, c1, got[0].Cursor)
	require.JSONEq(t, `{"forwarded":true}`, string(got[0].Data), "the forward's event, not a read of the log")
	require.Equal(t, before, reads.n.Load(), "the follower read the log for a forward it could use")

	// 2. A forward of (c2, c3] while the follower stands at c1: (c1, c2] was missed, so it
	// reads the log, which has c2 and c3; the forward's copy of c3 is then behind it.
	for _, p := range packForward("7e57000000000001", c2, c3, []*Event{fake(c3)}) {
		notifyForward(t, pool, p)
	}
	got = takeN(t, sub, 2)
	require.Equal(t, []Cursor{c2, c3}, []Cursor{got[0].Cursor, got[1].Cursor})
	for _, e := range got {
		require.NotContains(t, string(e.Data), "forwarded", "read from the log")
	}
	require.Greater(t, reads.n.Load(), before)

	// 3. A range whose event was too large to forward: read from the log.
	big := fake(Cursor{})
	big.Data = []byte(`"` + strings.Repeat("x", maxPayload) + `"`)
	c4 := insertRead(t, pool, conv, "fwd-b", 4)
	big.Cursor = c4
	require.Eventually(t, func() bool {
		h, err := f.Head(ctx)
		return err == nil && !h.Less(c4)
	}, 10*time.Second, 5*time.Millisecond)
	payloads := packForward("7e57000000000001", c3, c4, []*Event{big})
	require.Len(t, payloads, 1)
	require.Contains(t, payloads[0], `"self":true`)
	readsBefore := reads.n.Load()
	notifyForward(t, pool, payloads[0])
	got = takeN(t, sub, 1)
	require.Equal(t, c4, got[0].Cursor)
	require.JSONEq(t, `{"conversation_id":"`+UUIDString(conv)+`","user_id":"fwd-b","seq":4}`, string(got[0].Data))
	require.Greater(t, reads.n.Load(), readsBefore)

	// 4. Seen already, not a forward at all, or this instance's own: nothing published,
	// nothing read.
	readsBefore = reads.n.Load()
	lost := f.LostForwards()
	for _, p := range packForward("7e57000000000001", head, c4, []*Event{fake(c1), fake(c2), fake(c3), fake(c4)}) {
		notifyForward(t, pool, p)
	}
	notifyForward(t, pool, `{"from":"00000000000000aa","after":"9_9","to":"1_1"}`)
	notifyForward(t, pool, `not json`)
	c5 := insertRead(t, pool, conv, "fwd-b", 5)
	for _, p := range packForward(f.Instance(), c4, c5, []*Event{fake(c5)}) {
		notifyForward(t, pool, p)
	}
	requireNothingMore(t, sub)
	require.Equal(t, readsBefore, reads.n.Load())
	require.Eventually(t, func() bool { return f.LostForwards() == lost+2 }, 10*time.Second, time.Millisecond,
		"the two payloads that are not forwards count as lost")
}

// TestLeaderForwardsAndTheFollowerDoesNotRead: with two instances, every event reaches the
// follower's subscriber once, in order, while the follower makes no read of the log; the
// leader reads for both.
func TestLeaderForwardsAndTheFollowerDoesNotRead(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool := testPool(t)
	conv := newConversation(t, pool, "lead-a", "lead-b")
	leader := startLeading(t, ctx, Config{Pool: pool, ListenURL: testDB, SafetyPoll: time.Hour})
	reads := &readCounter{}
	// LeaderWait: however slow the leader is here, the follower waits for its forwards.
	follower := startFollowing(t, ctx, quickLeader(Config{Pool: tracedPool(t, reads), ListenURL: testDB, SafetyPoll: time.Hour, LeaderWait: time.Hour}))
	sub, _ := follower.Hub().Subscribe("lead-a")
	// The catch-up read the listener asks for on connecting; nothing else makes a follower
	// read here (no gap, no safety tick, no wait for a leader that forwards).
	require.Eventually(t, func() bool { return reads.n.Load() >= 1 }, 10*time.Second, time.Millisecond)
	before := reads.n.Load()

	const n = 200
	want := make([]Cursor, n)
	for i := range want {
		want[i] = insertRead(t, pool, conv, "lead-b", int64(i+1))
		if i%2 == 0 {
			follower.Written() // rings the leader's doorbell
		} else {
			leader.Written()
		}
	}
	got := takeN(t, sub, n)
	require.Len(t, got, n)
	for i, e := range got {
		require.Equal(t, want[i], e.Cursor, "event %d", i)
	}
	require.False(t, follower.Leading())
	require.Equal(t, before, reads.n.Load(), "the follower read the log itself")
	require.Zero(t, follower.LostForwards())
	requireNothingMore(t, sub)
}

// TestLeaderKilledMidStreamAFollowerTakesOver: the leader stops (its process killed: its
// listener connection ends and with it the reader lock) while events are being written;
// the follower takes the lock and its subscriber still receives every event once, in
// order, whichever forwards were lost in between.
func TestLeaderKilledMidStreamAFollowerTakesOver(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool := testPool(t)
	conv := newConversation(t, pool, "kill-a", "kill-b")
	lctx, stop := context.WithCancel(ctx)
	startLeading(t, lctx, Config{Pool: pool, ListenURL: testDB, SafetyPoll: time.Hour})
	follower := startFollowing(t, ctx, quickLeader(Config{Pool: pool, ListenURL: testDB, SafetyPoll: time.Hour, LeaderWait: 50 * time.Millisecond}))
	// As a killed process does: the leader's listener session ends (PostgreSQL lets the
	// lock go with it) and the leader stops, with no chance to hand over.
	var kerr error
	kill := func() {
		_, kerr = pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_locks
			WHERE locktype = 'advisory' AND classid = 1919246692 AND granted AND database =
			(SELECT oid FROM pg_database WHERE datname = current_database())`)
		stop()
	}
	sub, _ := follower.Hub().Subscribe("kill-a")

	const n = 300
	want := make([]Cursor, n)
	var wg sync.WaitGroup
	var werr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range want {
			if want[i], werr = tryInsertRead(pool, conv, "kill-b", int64(i+1)); werr != nil {
				return
			}
			follower.Written()
			if i == n/3 {
				kill() // mid-stream: reads and forwards of the leader may be cut anywhere
			}
		}
	}()
	got := takeN(t, sub, n)
	wg.Wait()
	require.NoError(t, werr)
	require.NoError(t, kerr)
	for i, e := range got {
		require.Equal(t, want[i], e.Cursor, "event %d", i)
	}
	require.True(t, follower.Leading(), "the follower took over")
	requireNothingMore(t, sub)
}

// A leader that stops (a rolling deploy) hands the lock over: a follower leads at once, not
// at its next LeaderRetry. (The fault script's term phase stops a real process.)
func TestAStoppingLeaderHandsOver(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool := testPool(t)
	conv := newConversation(t, pool, "hand-a", "hand-b")
	lctx, stop := context.WithCancel(ctx)
	startLeading(t, lctx, Config{Pool: pool, ListenURL: testDB, SafetyPoll: time.Hour})
	follower := startFollowing(t, ctx, Config{Pool: pool, ListenURL: testDB, SafetyPoll: time.Hour, LeaderRetry: time.Hour})
	sub, _ := follower.Hub().Subscribe("hand-a")

	stop()
	require.Eventually(t, follower.Leading, 5*time.Second, 5*time.Millisecond,
		"the follower leads well before its LeaderRetry of an hour")
	want := insertRead(t, pool, conv, "hand-b", 1)
	follower.Written()
	got := takeN(t, sub, 1)
	require.Equal(t, want, got[0].Cursor)
}

func TestPackForwardSplitsAndCoversTheWholeRange(t *testing.T) {
	after, to := Cursor{Tx: 10, ID: 1}, Cursor{Tx: 90, ID: 900}
	var evs []*Event
	for i := int64(2); i < 400; i++ {
		evs = append(evs, &Event{Cursor: Cursor{Tx: 10 + uint64(i/5), ID: i}, Type: "message", Conversation: "c",
			Recipients: []string{"alice", "bob"}, Data: []byte(fmt.Sprintf(`{"body":%q}`, strings.Repeat("y", int(i%7)*40)))})
	}
	evs[100].Data = []byte(`"` + strings.Repeat("z", 9000) + `"`) // too large for any payload
	payloads := packForward("0123456789abcdef", after, to, evs)
	require.Greater(t, len(payloads), 5)
	pos, n := after, 0
	for i, p := range payloads {
		require.LessOrEqual(t, len(p), maxPayload, "payload %d", i)
		f, err := parseForward(p)
		require.NoError(t, err)
		require.Equal(t, pos, f.after, "payload %d starts where the one before ended", i)
		pos = f.to
		if f.self {
			require.Equal(t, evs[100].Cursor, f.to, "the large event's range is read by each follower")
			n++
			continue
		}
		for _, e := range f.events {
			require.Equal(t, evs[n].Cursor, e.Cursor)
			require.Equal(t, evs[n].Recipients, e.Recipients)
			require.JSONEq(t, string(evs[n].Data), string(e.Data))
			n++
		}
	}
	require.Equal(t, to, pos, "the payloads cover the range to its end, past rows that rendered to nothing")
	require.Equal(t, len(evs), n)
	require.Empty(t, packForward("0123456789abcdef", to, to, nil), "an empty range is not forwarded")
}

func TestParseForwardRefusesWhatIsNotARange(t *testing.T) {
	ev := func(c string) string { return `{"c":"` + c + `","t":"message","r":["a"],"d":{}}` }
	for _, p := range []string{
		``, `null`, `[]`, `{}`,
		`{"from":"00000000000000aa","after":"1_1","to":"1_1"}`,  // empty range
		`{"from":"00000000000000aa","after":"2_1","to":"1_1"}`,  // backwards
		`{"after":"1_1","to":"2_1"}`,                            // no sender
		`{"from":"x","after":"1_1","to":"2_1"}`,                 // not an instance id
		`{"from":"0123456789abcde\"","after":"1_1","to":"2_1"}`, // a quote, which packForward would not escape
		`{"from":"00000000000000aa","after":"01_1","to":"2_1"}`, // not a cursor
		`{"from":"00000000000000aa","after":"1_1","to":"2_1","self":true,"events":[` + ev("2_1") + `]}`,
		`{"from":"00000000000000aa","after":"1_1","to":"2_1","events":[` + ev("3_1") + `]}`,                   // outside
		`{"from":"00000000000000aa","after":"1_1","to":"3_1","events":[` + ev("2_1") + `,` + ev("2_1") + `]}`, // repeated
		`{"from":"00000000000000aa","after":"1_1","to":"3_1","events":[` + ev("1_1") + `]}`,                   // at after
		`{"from":"00000000000000aa","after":"1_1","to":"3_1","events":[{"c":"2_1","t":"","r":[],"d":{}}]}`,
		`{"from":"00000000000000aa","after":"1_1","to":"3_1","events":[{"c":"2_1","t":"m","r":[]}]}`,
		`{"from":"00000000000000aa","after":"1_1","to":"3_1","events":[7]}`,
	} {
		_, err := parseForward(p)
		require.ErrorIs(t, err, errBadForward, "%s", p)
	}
	f, err := parseForward(`{"from":"00000000000000aa","after":"1_1","to":"3_1","events":[` + ev("2_1") + `]}`)
	require.NoError(t, err)
	require.Equal(t, Cursor{Tx: 2, ID: 1}, f.events[0].Cursor)
}

// FuzzParseForward: no payload makes the decoder panic, and whatever it accepts is a range
// with its events in order inside it, which packs back into payloads that decode the same.
func FuzzParseForward(f *testing.F) {
	for _, p := range packForward("5eed000000000000", Cursor{Tx: 1, ID: 1}, Cursor{Tx: 5, ID: 9}, []*Event{
		{Cursor: Cursor{Tx: 2, ID: 3}, Type: "message", Conversation: "c", Recipients: []string{"a"}, Data: []byte(`{"x":"<"}`)},
		{Cursor: Cursor{Tx: 4, ID: 4}, Type: "member_added", Member: "b", Recipients: []string{"a", "b"}, Data: []byte(`[]`)},
	}) {
		f.Add(p)
	}
	f.Add(`{"from":"00000000000000aa","after":"1_1","to":"2_1","self":true}`)
	f.Fuzz(func(t *testing.T, payload string) {
		fw, err := parseForward(payload)
		if err != nil {
			return
		}
		require.True(t, fw.after.Less(fw.to))
		prev := fw.after
		for _, e := range fw.events {
			require.True(t, prev.Less(e.Cursor))
			require.False(t, fw.to.Less(e.Cursor))
			require.True(t, json.Valid(e.Data))
			prev = e.Cursor
		}
		if fw.self {
			return
		}
		// Packed again, every event is in a payload of its own range, or in a range that
		// followers read themselves (an event too large once re-encoded).
		n := 0
		for _, p := range packForward(fw.from, fw.after, fw.to, fw.events) {
			g, err := parseForward(p)
			require.NoError(t, err)
			n += len(g.events)
			if g.self {
				for _, e := range fw.events {
					if g.after.Less(e.Cursor) && !g.to.Less(e.Cursor) {
						n++
					}
				}
			}
		}
		require.Equal(t, len(fw.events), n)
	})
}

// TestAStaleForwardDoesNotStandForTheLeader: a forward of nothing new (here a repeat, as a
// leader that stops right after would leave) says nothing of the writes since, so the
// follower's own write is still read after LeaderWait when no leader forwards it.
func TestAStaleForwardDoesNotStandForTheLeader(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool := testPool(t)
	conv := newConversation(t, pool, "stale-a", "stale-b")
	holdReaderLock(t) // no leader
	f := NewLog(Config{Pool: pool, ListenURL: testDB, SafetyPoll: time.Hour, LeaderWait: 100 * time.Millisecond})
	require.NoError(t, f.Start(ctx))
	require.Eventually(t, f.Listening, 10*time.Second, 10*time.Millisecond)
	sub, head := f.Hub().Subscribe("stale-a")
	c1 := insertRead(t, pool, conv, "stale-b", 1)
	fake := &Event{Cursor: c1, Type: "read", Conversation: UUIDString(conv), Recipients: []string{"stale-a"}, Data: []byte(`{}`)}
	stale := packForward("7e57000000000001", head, c1, []*Event{fake})
	notifyForward(t, pool, stale[0])
	require.Equal(t, c1, takeN(t, sub, 1)[0].Cursor)

	c2 := insertRead(t, pool, conv, "stale-b", 2)
	f.Written() // arms the wait for a forward
	for range 5 {
		notifyForward(t, pool, stale[0]) // the same range again: nothing new
		time.Sleep(30 * time.Millisecond)
	}
	require.Equal(t, c2, takeN(t, sub, 1)[0].Cursor, "read by the follower itself once no forward brought it")
}

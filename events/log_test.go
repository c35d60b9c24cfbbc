package events

import (
	"context"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/chatd/chatd"
	"github.com/chatd/chatd/db"
	"github.com/chatd/chatd/db/dbtest"
)

var testDB string

func TestMain(m *testing.M) {
	// Every goroutine a test starts (readers, listeners, doorbells, pools) must be gone
	// once the tests have run: one left behind is a leak in the code or in a test's cleanup.
	os.Exit(dbtest.RunTests(m, "chatd_test_events", chatd.Schema, &testDB, func() error { return goleak.Find() }))
}

func testPool(t *testing.T) *pgxpool.Pool {
	pool, err := db.Open(context.Background(), testDB, 10)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// newConversation makes a group of the given users straight in the database.
func newConversation(t *testing.T, pool *pgxpool.Pool, users ...string) pgtype.UUID {
	ctx := context.Background()
	var id pgtype.UUID
	require.NoError(t, db.InTx(ctx, pool, func(q *db.Queries) error {
		if err := q.EnsureUsers(ctx, users); err != nil {
			return err
		}
		var err error
		if id, err = q.CreateGroupConversation(ctx, nil); err != nil {
			return err
		}
		return q.AddMembers(ctx, db.AddMembersParams{ConversationID: id, UserIds: users})
	}))
	return id
}

// TestFenceHoldsBackCommitsBehindAnOpenTransaction is DESIGN-NOTES.md §2 at the query level:
// B takes its event id after A and commits first; a reader must see neither until A ends,
// then both, A first, so a cursor taken in between can never skip A.
func TestFenceHoldsBackCommitsBehindAnOpenTransaction(t *testing.T) {
	ctx := context.Background()
	pool := testPool(t)
	q := db.New(pool)
	conv := newConversation(t, pool, "fence-a", "fence-b")
	log := NewLog(Config{Pool: pool, ListenURL: testDB})
	head, err := log.Head(ctx)
	require.NoError(t, err)

	a, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer a.Rollback(ctx) //nolint:errcheck // committed below
	require.NoError(t, db.New(a).InsertConversationEvent(ctx, conv))
	require.NoError(t, q.InsertConversationEvent(ctx, conv)) // B: autocommit, later id, committed first

	rows, err := q.ReadEvents(ctx, db.ReadEventsParams{AfterTx: head.Tx, AfterID: head.ID, RowLimit: 10})
	require.NoError(t, err)
	require.Empty(t, rows, "B's event is held back while A, which is older, is open")

	require.NoError(t, a.Commit(ctx))
	// The fence is cluster-wide: other databases' transactions (parallel test packages)
	// may hold it a moment longer.
	require.Eventually(t, func() bool {
		rows, err = q.ReadEvents(ctx, db.ReadEventsParams{AfterTx: head.Tx, AfterID: head.ID, RowLimit: 10})
		return err == nil && len(rows) == 2
	}, 10*time.Second, 5*time.Millisecond)
	require.Less(t, rows[0].Tx, rows[1].Tx, "A's event comes first: it is in the older transaction")
	require.Equal(t, []string{"fence-a", "fence-b"}, rows[0].Recipients)
}

// TestLogDeliversWithoutDoorbell: a write whose notification is lost still reaches the
// hub, by the safety poll.
func TestLogDeliversWithoutDoorbell(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool := testPool(t)
	conv := newConversation(t, pool, "quiet-a", "quiet-b")
	log := NewLog(Config{Pool: pool, ListenURL: testDB, SafetyPoll: 50 * time.Millisecond})
	require.NoError(t, log.Start(ctx))
	sub, _ := log.Hub().Subscribe("quiet-b")

	// Written straight to the database: no Written(), no NOTIFY.
	require.NoError(t, db.New(pool).InsertConversationEvent(ctx, conv))
	select {
	case <-sub.Ready():
		evs, _, _ := sub.Take()
		require.Len(t, evs, 1)
		require.Equal(t, "conversation", evs[0].Type)
		require.Contains(t, string(evs[0].Data), `"kind":"group"`)
	case <-time.After(10 * time.Second):
		t.Fatal("the safety poll did not deliver")
	}
}

// TestLogDoorbellCrossesInstances: a write on one Log wakes another Log's reader through
// NOTIFY, long before its safety poll.
func TestLogDoorbellCrossesInstances(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool := testPool(t)
	conv := newConversation(t, pool, "bell-a", "bell-b")
	writer := NewLog(Config{Pool: pool, ListenURL: testDB, SafetyPoll: time.Hour})
	reader := NewLog(Config{Pool: pool, ListenURL: testDB, SafetyPoll: time.Hour})
	require.NoError(t, writer.Start(ctx))
	require.NoError(t, reader.Start(ctx))
	require.Eventually(t, func() bool { return writer.Listening() && reader.Listening() }, 10*time.Second, 10*time.Millisecond)
	sub, _ := reader.Hub().Subscribe("bell-a")

	require.NoError(t, db.New(pool).InsertConversationEvent(ctx, conv))
	writer.Written()
	select {
	case <-sub.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the doorbell did not wake the other instance")
	}

	// Ephemeral events cross too, and are not stored.
	typing, _ := reader.Hub().Subscribe("bell-b")
	writer.Ephemeral(&Event{Type: "typing", Data: []byte(`{}`), Recipients: []string{"bell-a", "bell-b"}, Except: "bell-a"})
	select {
	case <-typing.Ready():
		evs, _, _ := typing.Take()
		require.Equal(t, "typing", evs[len(evs)-1].Type)
		require.False(t, evs[len(evs)-1].Durable())
	case <-time.After(10 * time.Second):
		t.Fatal("the ephemeral event did not cross")
	}
}

// TestLogSkipsAnEventItCannotRender: a malformed row is logged and skipped; the events
// after it still flow.
func TestLogSkipsAnEventItCannotRender(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool := testPool(t)
	conv := newConversation(t, pool, "poison-a", "poison-b")
	log := NewLog(Config{Pool: pool, ListenURL: testDB, SafetyPoll: 50 * time.Millisecond})
	require.NoError(t, log.Start(ctx))
	sub, _ := log.Hub().Subscribe("poison-a")

	_, err := pool.Exec(ctx, "INSERT INTO events (conversation_id, type) VALUES ($1, 'read')", conv) // no user, no seq
	require.NoError(t, err)
	require.NoError(t, db.New(pool).InsertConversationEvent(ctx, conv))
	log.Written()
	require.Eventually(t, func() bool {
		evs, _, _ := sub.Take()
		for _, e := range evs {
			if e.Type == "conversation" {
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond)
}

// readCounter counts the event-log reads (ReadEvents queries) started on a pool.
type readCounter struct{ n atomic.Int64 }

func (c *readCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if strings.HasPrefix(d.SQL, "-- name: ReadEvents ") {
		c.n.Add(1)
	}
	return ctx
}

func (c *readCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// The log's reads are sent in batches (db.WithoutJIT), whose queries are traced here.
func (c *readCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

func (c *readCounter) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	if strings.HasPrefix(d.SQL, "-- name: ReadEvents ") {
		c.n.Add(1)
	}
}

func (c *readCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// tracedPool is a pool on the test database whose queries tracer sees.
func tracedPool(t *testing.T, tracer pgx.QueryTracer) *pgxpool.Pool {
	cfg, err := pgxpool.ParseConfig(testDB)
	require.NoError(t, err)
	cfg.ConnConfig.Tracer = tracer
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// TestLogReReadsAfterAHoldBack: a transaction that rings no doorbell (here: a bare
// transaction id, as another application would hold) holds back an event that was
// announced; once it ends, the reader's follow-up reads deliver the event without waiting
// for the safety poll.
func TestLogReReadsAfterAHoldBack(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool := testPool(t)
	conv := newConversation(t, pool, "held-a", "held-b")
	reads := &readCounter{}
	log := NewLog(quickLeader(Config{Pool: tracedPool(t, reads), ListenURL: testDB, SafetyPoll: time.Hour}))
	require.NoError(t, log.Start(ctx))
	require.Eventually(t, log.Leading, 10*time.Second, 5*time.Millisecond, "the follow-up reads are the leader's")
	sub, _ := log.Hub().Subscribe("held-a")

	blocker, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer blocker.Rollback(ctx) //nolint:errcheck // committed below
	_, err = blocker.Exec(ctx, "SELECT pg_current_xact_id()")
	require.NoError(t, err)
	require.NoError(t, db.New(pool).InsertConversationEvent(ctx, conv))
	before := reads.n.Load()
	log.Written()
	// Not a time window but the reader's own work: it reads the log after the wake and
	// again in its follow-ups, each read starting after the one before has published what
	// it found. Three reads after the commit, and still nothing: the event is held back.
	require.Eventually(t, func() bool { return reads.n.Load() >= before+3 }, 10*time.Second, time.Millisecond,
		"the reader did not read the log after the wake")
	select {
	case <-sub.Ready():
		t.Fatal("delivered past an open older transaction")
	default:
	}
	require.NoError(t, blocker.Commit(ctx)) // no Written(): nobody rings
	select {
	case <-sub.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the held-back event was not delivered after the blocker ended")
	}
}

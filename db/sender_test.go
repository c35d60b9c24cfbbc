package db

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd"
	"github.com/chatd/chatd/db/dbtest"
)

// senderFixture is a database with users alice, bob and eve and two group conversations
// of alice and bob, A and B (eve is in neither).
type senderFixture struct {
	pool  *pgxpool.Pool
	a, b  pgtype.UUID
	other *pgx.Conn // a connection of the test's own, to hold locks
}

func newSenderFixture(t *testing.T) *senderFixture {
	ctx := context.Background()
	url, drop, err := dbtest.Create(ctx, dbtest.ServerURL(), "chatd_test_sender", chatd.Schema)
	require.NoError(t, err)
	t.Cleanup(drop)
	pool, err := Open(ctx, url, 8)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	other, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { other.Close(context.Background()) })
	f := &senderFixture{pool: pool, other: other}
	_, err = pool.Exec(ctx, "INSERT INTO users (id) VALUES ('alice'), ('bob'), ('eve')")
	require.NoError(t, err)
	for _, c := range []*pgtype.UUID{&f.a, &f.b} {
		require.NoError(t, pool.QueryRow(ctx, `
			WITH c AS (INSERT INTO conversations (kind, title) VALUES ('group', 'g') RETURNING id),
			     m AS (INSERT INTO members (conversation_id, user_id) SELECT c.id, u FROM c, unnest('{alice,bob}'::text[]) u)
			SELECT id FROM c`).Scan(c))
	}
	return f
}

// send runs s.Send on a goroutine of its own; the outcome arrives on the channel.
type outcome struct {
	sent Sent
	err  error
}

func goSend(s *Sender, m Send) <-chan outcome {
	ch := make(chan outcome, 1)
	go func() {
		out, err := s.Send(context.Background(), m)
		ch <- outcome{out, err}
	}()
	return ch
}

// waitBlocked waits until n lock requests wait in this test's database (of any kind; the
// other test packages share the server and its lock table).
func (f *senderFixture) waitBlocked(t *testing.T, n int) {
	require.Eventually(t, func() bool {
		var waiting int
		err := f.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_locks l
			JOIN pg_stat_activity s ON s.pid = l.pid WHERE NOT l.granted AND s.datname = current_database()`).Scan(&waiting)
		return err == nil && waiting == n
	}, 10*time.Second, 5*time.Millisecond)
}

// waitQueued waits until n sends wait in s's queue.
func waitQueued(t *testing.T, s *Sender, n int) {
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.queue) == n
	}, 10*time.Second, time.Millisecond)
}

// holdLock takes conversation c's send lock on the test's own connection, as a send would.
func (f *senderFixture) holdLock(t *testing.T, c pgtype.UUID) (release func()) {
	_, err := f.other.Exec(context.Background(), "SELECT pg_advisory_lock(1667785076, hashtext($1::uuid::text))", c)
	require.NoError(t, err)
	return func() {
		_, err := f.other.Exec(context.Background(), "SELECT pg_advisory_unlock(1667785076, hashtext($1::uuid::text))", c)
		require.NoError(t, err)
	}
}

// Sends queued while a batch runs go together in the next one: one transaction, each
// conversation's seqs gap-free and in queue order, and a duplicate client_id (against the
// database or an earlier send of the same batch) or an outsider is answered "not sent"
// without failing the others.
func TestSenderBatchesQueuedSendsAndSkipsDuplicatesWithoutFailing(t *testing.T) {
	f := newSenderFixture(t)
	ctx := context.Background()
	s := NewSender(f.pool, SenderConfig{Workers: 1})
	first, err := s.Send(ctx, Send{ConversationID: f.b, SenderID: "alice", Body: "before", ClientID: "used"})
	require.NoError(t, err)
	require.True(t, first.OK)

	release := f.holdLock(t, f.a)
	blocked := goSend(s, Send{ConversationID: f.a, SenderID: "bob", Body: "blocked"})
	f.waitBlocked(t, 1) // the only worker waits for A's lock: what follows queues
	batch := []Send{
		{ConversationID: f.a, SenderID: "alice", Body: "a1", ClientID: "x"},
		{ConversationID: f.b, SenderID: "alice", Body: "b1"},
		{ConversationID: f.a, SenderID: "alice", Body: "a1 again", ClientID: "x"},  // repeat in the batch
		{ConversationID: f.b, SenderID: "alice", Body: "repeat", ClientID: "used"}, // repeat of the database
		{ConversationID: f.b, SenderID: "eve", Body: "outsider"},
		{ConversationID: f.a, SenderID: "bob", Body: "a2", ClientID: "x"}, // another sender's key
		{ConversationID: f.b, SenderID: "bob", Body: "b2"},
	}
	outs := make([]<-chan outcome, len(batch))
	for i, m := range batch {
		outs[i] = goSend(s, m)
		waitQueued(t, s, i+1) // in this order
	}
	release()
	require.NoError(t, (<-blocked).err)

	wantSeq := []int64{2, 2, 0, 0, 0, 3, 3} // A: blocked=1, then a1, a2; B: before=1, then b1, b2
	var ids []pgtype.UUID
	for i, ch := range outs {
		o := <-ch
		require.NoError(t, o.err, "send %d", i)
		require.Equal(t, wantSeq[i] != 0, o.sent.OK, "send %d", i)
		if o.sent.OK {
			require.Equal(t, wantSeq[i], o.sent.Message.Seq, "send %d", i)
			require.Equal(t, batch[i].Body, o.sent.Message.Body, "send %d", i)
			ids = append(ids, o.sent.Message.ID)
		}
	}
	var txs, xmins, events int
	require.NoError(t, f.pool.QueryRow(ctx, `SELECT count(DISTINCT e.tx), count(DISTINCT x.xmin::text), count(*)
		FROM events e JOIN messages x ON x.id = e.message_id WHERE x.id = ANY($1)`, ids).Scan(&txs, &xmins, &events))
	require.Equal(t, 1, txs, "one commit for the whole batch's events")
	require.Equal(t, 1, xmins, "one commit for the whole batch's messages")
	require.Equal(t, len(ids), events, "one event per message")
	var last []int64
	require.NoError(t, f.pool.QueryRow(ctx, "SELECT array_agg(last_seq ORDER BY id = $1 DESC) FROM conversations", f.a).Scan(&last))
	require.Equal(t, []int64{3, 3}, last)
}

// Within a batch the log follows seq: each conversation's events, read in log order (tx, id),
// come in seq order.
func TestSenderLogsEventsInSeqOrder(t *testing.T) {
	f := newSenderFixture(t)
	s := NewSender(f.pool, SenderConfig{Workers: 1})
	release := f.holdLock(t, f.b)
	blocked := goSend(s, Send{ConversationID: f.b, SenderID: "bob", Body: "blocked"})
	f.waitBlocked(t, 1)
	var outs []<-chan outcome
	for i := range 20 {
		c := []pgtype.UUID{f.a, f.b}[i%2]
		outs = append(outs, goSend(s, Send{ConversationID: c, SenderID: "alice", Body: fmt.Sprint(i)}))
		waitQueued(t, s, i+1)
	}
	release()
	require.NoError(t, (<-blocked).err)
	for _, ch := range outs {
		require.NoError(t, (<-ch).err)
	}
	rows, err := f.pool.Query(context.Background(), `SELECT x.conversation_id, x.seq FROM events e
		JOIN messages x ON x.id = e.message_id ORDER BY e.tx, e.id`)
	require.NoError(t, err)
	defer rows.Close()
	seen := map[pgtype.UUID]int64{}
	for rows.Next() {
		var c pgtype.UUID
		var seq int64
		require.NoError(t, rows.Scan(&c, &seq))
		require.Equal(t, seen[c]+1, seq, "conversation %v", c)
		seen[c] = seq
	}
	require.NoError(t, rows.Err())
	require.Equal(t, map[pgtype.UUID]int64{f.a: 10, f.b: 11}, seen)
}

// A batch whose connection dies in the middle of its statement (an instance killed, a
// backend terminated) sends nothing: every caller in it gets the error, no conversation's
// seq moved, and each caller's retry with its client_id then sends exactly once.
func TestSenderBatchKilledMidwaySendsNothing(t *testing.T) {
	f := newSenderFixture(t)
	ctx := context.Background()
	s := NewSender(f.pool, SenderConfig{Workers: 1})
	release := f.holdLock(t, f.a)
	blocked := goSend(s, Send{ConversationID: f.a, SenderID: "bob", Body: "blocked"})
	f.waitBlocked(t, 1)
	batch := []Send{
		{ConversationID: f.a, SenderID: "alice", Body: "a1", ClientID: "k1"},
		{ConversationID: f.b, SenderID: "alice", Body: "b1", ClientID: "k2"},
		{ConversationID: f.a, SenderID: "bob", Body: "a2", ClientID: "k3"},
	}
	var outs []<-chan outcome
	for i, m := range batch {
		outs = append(outs, goSend(s, m))
		waitQueued(t, s, i+1)
	}
	// B's row is locked by another transaction, so the batch stops inside SendMessages,
	// after A's row is updated and before B's is.
	tx, err := f.other.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	_, err = tx.Exec(ctx, "SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE", f.b)
	require.NoError(t, err)
	release()
	require.NoError(t, (<-blocked).err)
	f.waitBlocked(t, 1)
	var killed bool
	require.NoError(t, f.pool.QueryRow(ctx, `SELECT pg_terminate_backend(l.pid) FROM pg_locks l
		JOIN pg_stat_activity s ON s.pid = l.pid
		WHERE NOT l.granted AND l.locktype = 'transactionid' AND s.datname = current_database()`).Scan(&killed))
	require.True(t, killed)
	for i, ch := range outs {
		require.Error(t, (<-ch).err, "send %d", i)
	}
	require.NoError(t, tx.Rollback(ctx))
	var n int
	require.NoError(t, f.pool.QueryRow(ctx, "SELECT count(*) FROM messages WHERE client_id IS NOT NULL").Scan(&n))
	require.Zero(t, n)
	for range 2 { // the retry sends; a second retry finds the first
		for i, m := range batch {
			_, err := s.Send(ctx, m)
			require.NoError(t, err, "send %d", i)
		}
	}
	var seqs []int64
	require.NoError(t, f.pool.QueryRow(ctx, "SELECT array_agg(seq ORDER BY client_id) FROM messages WHERE client_id IS NOT NULL").Scan(&seqs))
	require.Equal(t, []int64{2, 1, 3}, seqs)
}

// SendMessages runs on the plan sendPlan asks for: one kept per connection, made of index
// lookups only, so that it stays right as the tables grow after it was made (a sequential
// scan, hash or merge join in it would read whole tables on every send). Fails when the
// statement changes into one that needs a scan PostgreSQL cannot do by index.
func TestSendPlanIsIndexLookupsOnly(t *testing.T) {
	f := newSenderFixture(t)
	ctx := context.Background()
	tx, err := f.pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	_, err = tx.Exec(ctx, sendPlan)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "PREPARE send_plan AS "+sendMessages)
	require.NoError(t, err)
	var a string
	require.NoError(t, tx.QueryRow(ctx, "SELECT $1::uuid::text", f.a).Scan(&a))
	rows, err := tx.Query(ctx, "EXPLAIN EXECUTE send_plan(ARRAY['"+a+"'::uuid], '{alice}', '{hello}', '{k}', '{[]}')")
	require.NoError(t, err)
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	plan := strings.Join(lines, "\n")
	require.Contains(t, plan, "Index Scan using conversations_pkey", plan)
	for _, bad := range []string{"Seq Scan", "Hash Join", "Merge Join", "Hash Anti Join", "Hash Semi Join"} {
		require.NotContains(t, plan, bad, plan)
	}
}

// BenchmarkSender compares sends one per transaction (MaxBatch 1, as many workers as
// senders) with group commit, 64 concurrent senders over 100 conversations.
func BenchmarkSender(b *testing.B) {
	ctx := context.Background()
	url, drop, err := dbtest.Create(ctx, dbtest.ServerURL(), "chatd_bench_sender", chatd.Schema)
	require.NoError(b, err)
	defer drop()
	pool, err := Open(ctx, url, 20)
	require.NoError(b, err)
	defer pool.Close()
	var convs []pgtype.UUID
	require.NoError(b, pool.QueryRow(ctx, `
		WITH u AS (INSERT INTO users (id) VALUES ('alice'), ('bob')),
		     c AS (INSERT INTO conversations (kind, title) SELECT 'group', 'g' FROM generate_series(1, 100) RETURNING id),
		     m AS (INSERT INTO members (conversation_id, user_id) SELECT c.id, u FROM c, unnest('{alice,bob}'::text[]) u)
		SELECT array_agg(id) FROM c`).Scan(&convs))
	for _, cfg := range []SenderConfig{{MaxBatch: 1, Workers: 64}, {Workers: 1}, {Workers: 2}, {Workers: 3}, {Workers: 4}} {
		b.Run(fmt.Sprintf("batch=%d,workers=%d", cfg.MaxBatch, cfg.Workers), func(b *testing.B) {
			s := NewSender(pool, cfg)
			b.SetParallelism(32) // 64 senders on 2 cores
			var n atomicCounter
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.next()
					_, err := s.Send(ctx, Send{ConversationID: convs[i%len(convs)], SenderID: "alice", Body: "a message body of about a hundred bytes, as the benchmark of the throughput issue sends....."})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sends/s")
		})
	}
}

type atomicCounter struct{ n atomic.Int64 }

func (c *atomicCounter) next() int { return int(c.n.Add(1)) }

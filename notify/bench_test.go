package notify

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/db"
)

// benchConversations is how many conversations the benchmarks' senders share.
const benchConversations = 16

// benchGroups creates benchConversations conversations of members users each; the first
// member sends.
func benchGroups(b *testing.B, pool *pgxpool.Pool, members int) (convs []pgtype.UUID, users [][]string) {
	ctx := context.Background()
	q := db.New(pool)
	for range benchConversations {
		us := make([]string, members)
		for i := range us {
			us[i] = uniq("u")
		}
		require.NoError(b, q.EnsureUsers(ctx, us))
		id, err := q.CreateGroupConversation(ctx, nil)
		require.NoError(b, err)
		require.NoError(b, q.AddMembers(ctx, db.AddMembersParams{ConversationID: id, CreatorID: us[0], UserIds: us}))
		convs, users = append(convs, id), append(users, us)
	}
	return convs, users
}

// BenchmarkSend compares the cost of a send as chatd makes it (group commit, db.Sender;
// the scanner schedules checks later, off the write path) with the alternative of
// scheduling the checks in the send's own transaction: one River job per recipient, unique
// by user. The alternative is measured against the same transaction without the jobs.
func BenchmarkSend(b *testing.B) {
	pool, url := newDB(b)
	n, err := New(testConfig(pool, url))
	require.NoError(b, err)
	sender := db.NewSender(pool, db.SenderConfig{})
	for _, members := range []int{2, 20} {
		convs, users := benchGroups(b, pool, members)
		b.Run(fmt.Sprintf("chatd/members=%d", members), func(b *testing.B) {
			benchSends(b, func(ctx context.Context, i int) error {
				_, err := sender.Send(ctx, db.Send{ConversationID: convs[i], SenderID: users[i][0], Body: "hello"})
				return err
			})
		})
		for _, jobs := range []bool{false, true} {
			b.Run(fmt.Sprintf("own-tx/river-jobs=%t/members=%d", jobs, members), func(b *testing.B) {
				benchSends(b, func(ctx context.Context, i int) error {
					return sendInTx(ctx, pool, n, convs[i], users[i], jobs)
				})
			})
		}
	}
}

// sendInTx sends one message in a transaction of its own, with a check job per recipient
// when jobs is set.
func sendInTx(ctx context.Context, pool *pgxpool.Pool, n *Notifier, conv pgtype.UUID, users []string, jobs bool) error {
	return db.InTxRaw(ctx, pool, func(tx pgx.Tx) error {
		q := db.New(tx)
		ids := []pgtype.UUID{conv}
		if err := q.LockConversations(ctx, ids); err != nil {
			return err
		}
		if _, err := q.SendMessages(ctx, db.SendMessagesParams{ConversationIds: ids, SenderIds: users[:1],
			Bodies: []string{"hello"}, ClientIds: []string{""}}); err != nil || !jobs {
			return err
		}
		params := make([]river.InsertManyParams, 0, len(users)-1)
		for _, u := range users[1:] {
			params = append(params, river.InsertManyParams{Args: checkArgs{UserID: u}, InsertOpts: &river.InsertOpts{
				ScheduledAt: time.Now().Add(time.Minute), UniqueOpts: river.UniqueOpts{ByArgs: true}}})
		}
		_, err := n.river.InsertManyTx(ctx, tx, params)
		return err
	})
}

// benchSends runs send from 16 goroutines, each on its own conversation in turn.
func benchSends(b *testing.B, send func(ctx context.Context, conv int) error) {
	var next atomic.Int64
	b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0))) // 16 senders
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if err := send(ctx, int(next.Add(1))%benchConversations); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkScan measures the scanner's share of a message: one step over a batch of
// scanBatch messages in conversations of 20 members, reported per message. Every
// recipient is new to the step (pending and a check job inserted for each), the costliest
// case; in a busy conversation most recipients are pending already.
func BenchmarkScan(b *testing.B) {
	pool, url := newDB(b)
	n, err := New(testConfig(pool, url))
	require.NoError(b, err)
	ctx := context.Background()
	q := db.New(pool)
	require.NoError(b, q.NotifyCursorInit(ctx))
	start, err := q.NotifyCursor(ctx)
	require.NoError(b, err)
	convs, users := benchGroups(b, pool, 20)
	for i := range scanBatch {
		c := i % benchConversations
		_, err := db.NewSender(pool, db.SenderConfig{}).Send(ctx, db.Send{ConversationID: convs[c], SenderID: users[c][0], Body: "hello"})
		require.NoError(b, err)
	}
	// Every event below the fence first (another database's open transaction holds it back,
	// since transaction ids are cluster-wide); then each step reads the whole batch.
	require.Eventually(b, func() bool {
		var final bool
		err := pool.QueryRow(ctx, `SELECT max(tx) < pg_snapshot_xmin(pg_current_snapshot()) FROM events`).Scan(&final)
		return err == nil && final
	}, time.Minute, 10*time.Millisecond)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		_, err := pool.Exec(ctx, `UPDATE notify_cursor SET tx = $1, id = $2`, start.Tx, start.ID)
		require.NoError(b, err)
		_, err = pool.Exec(ctx, `TRUNCATE notify_pending, river_job`)
		require.NoError(b, err)
		b.StartTimer()
		_, err = n.scanOnce(ctx)
		require.NoError(b, err)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/scanBatch, "ns/message")
}

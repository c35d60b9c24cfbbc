package api

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

// Group commit's risk to delivery: one transaction writes the events of several
// conversations at once. Sends queue behind a held conversation lock on instance a, then
// commit as one batch spanning four conversations while the reader's streams keep
// dropping and resuming, alternately on both instances: every message still arrives
// exactly once, in each conversation's seq order.
func TestBatchSpanningConversationsUnderConcurrentResumes(t *testing.T) {
	a, b := newInstance(t), newInstance(t)
	reader, writer := newUser(t, a, "reader"), newUser(t, a, "writer")
	newConv := func() string {
		r := writer.do("POST", "/v1/conversations", map[string]any{"participant_ids": []string{reader.ID}, "title": "g"})
		require.Equal(t, 201, r.Status)
		return decode[events.Conversation](t, string(r.Body)).ID
	}
	blocker := newConv()
	convs := []string{newConv(), newConv(), newConv(), newConv()}
	first, cursor := openReady(t, a.URL+"/v1/events", reader.Token, nil)

	// A session lock needs a session of its own: not through the pool, which may go through
	// PgBouncer in transaction mode (CHAT_TEST_POOL=pgbouncer).
	ctx := context.Background()
	lock, err := pgx.Connect(ctx, testDB)
	require.NoError(t, err)
	defer lock.Close(ctx)
	_, err = lock.Exec(ctx, "SELECT pg_advisory_lock(1667785076, hashtext($1))", blocker)
	require.NoError(t, err)
	unlock := sync.OnceFunc(func() {
		_, err := lock.Exec(ctx, "SELECT pg_advisory_unlock(1667785076, hashtext($1))", blocker)
		require.NoError(t, err)
	})
	defer unlock()

	const queued = 40
	errs := make(chan error, queued+2)
	var wg sync.WaitGroup
	send := func(conv, body string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := writer.trySend(conv, body)
			errs <- err
		}()
	}
	// Each of instance a's two batch workers waits for the lock with one send. The second
	// send goes only once the first waits: sent together, both could go in one batch.
	waiters := func(n int) {
		require.Eventually(t, func() bool {
			var waiting int
			return a.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks
				WHERE locktype = 'advisory' AND NOT granted AND classid = 1667785076
				AND objid::bigint = (hashtext($1)::bigint + 4294967296) % 4294967296`, blocker).Scan(&waiting) == nil && waiting == n
		}, wait, 5*time.Millisecond)
	}
	send(blocker, "blocked 1")
	waiters(1)
	send(blocker, "blocked 2")
	waiters(2)
	for i := range queued {
		send(convs[i%len(convs)], fmt.Sprintf("queued %d", i))
	}
	require.Eventually(t, func() bool { return a.API.sender.Queued() == queued }, wait, time.Millisecond)
	unlock()

	seen := readResumingExactlyOnce(t, first, []*instance{a, b}, reader, cursor, queued+2, errs)
	require.Len(t, seen, queued+2)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	var txs int
	require.NoError(t, a.Pool.QueryRow(ctx, `SELECT count(DISTINCT e.tx) FROM events e
		JOIN messages x ON x.id = e.message_id WHERE x.body LIKE 'queued %' AND x.conversation_id = ANY($1::uuid[])`, convs).Scan(&txs))
	require.Equal(t, 1, txs, "the queued sends committed as one batch")
}

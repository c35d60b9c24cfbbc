package notify

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// What the tests wait for instead of sleeping: the state of the user's jobs in River's
// table, which is what every instance acts on.

// settled waits until user's checks have run at least checks times and none of its jobs
// (checks or deliveries) is left to run: whatever the pipeline was going to send, it has.
func settled(t *testing.T, pool *pgxpool.Pool, user string, checks int) {
	t.Helper()
	require.Eventually(t, func() bool {
		var open, done int
		err := pool.QueryRow(context.Background(), `
			SELECT count(*) FILTER (WHERE state NOT IN ('completed', 'cancelled', 'discarded')),
			       count(*) FILTER (WHERE state = 'completed' AND kind = 'chatd_notify_check')
			FROM river_job WHERE args->>'user_id' = $1`, user).Scan(&open, &done)
		return err == nil && open == 0 && done >= checks
	}, 20*time.Second, 20*time.Millisecond, "the jobs of %s did not settle", user)
}

// deliveryFailedOnce waits until River has recorded the first failed attempt of user's
// delivery: the job waits for its retry, held by no worker.
func deliveryFailedOnce(t *testing.T, pool *pgxpool.Pool, user string) {
	t.Helper()
	require.Eventually(t, func() bool {
		var n int
		err := pool.QueryRow(context.Background(), `
			SELECT count(*) FROM river_job
			WHERE kind = 'chatd_notify_deliver' AND args->>'user_id' = $1
			  AND state IN ('retryable', 'available') AND attempt = 1`, user).Scan(&n)
		return err == nil && n == 1
	}, 20*time.Second, 10*time.Millisecond)
}

// scannedPast waits until the notifier's cursor has passed the event of message id.
func scannedPast(t *testing.T, pool *pgxpool.Pool, message [16]byte) {
	t.Helper()
	require.Eventually(t, func() bool {
		past, err := cursorPast(pool, pgtype.UUID{Bytes: message, Valid: true})
		return err == nil && past
	}, 20*time.Second, 10*time.Millisecond)
}

// cursorPast reports whether the notifier's cursor has passed the event of message.
func cursorPast(pool *pgxpool.Pool, message pgtype.UUID) (bool, error) {
	var past bool
	err := pool.QueryRow(context.Background(), `SELECT (c.tx, c.id) >= (e.tx, e.id) FROM notify_cursor c, events e
		WHERE e.message_id = $1`, message).Scan(&past)
	return past, err
}

// jobsOf returns how many jobs of kind user has had.
func jobsOf(t *testing.T, pool *pgxpool.Pool, user, kind string) int {
	t.Helper()
	n, err := countJobs(pool, user, kind)
	require.NoError(t, err)
	return n
}

// countJobs is jobsOf for conditions polled off the test's goroutine.
func countJobs(pool *pgxpool.Pool, user, kind string) (int, error) {
	var n int
	err := pool.QueryRow(context.Background(),
		`SELECT count(*) FROM river_job WHERE kind = $1 AND args->>'user_id' = $2`, kind, user).Scan(&n)
	return n, err
}

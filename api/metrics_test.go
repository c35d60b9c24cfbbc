package api

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/db"
)

// The fence gauge scans pg_stat_activity: however often /metrics is scraped, the scan runs
// at most once per interval.
func TestCachedGaugeReadsAtMostOncePerInterval(t *testing.T) {
	now := time.Unix(1000, 0)
	reads := 0
	g := &cachedGauge{ttl: 5 * time.Second, now: func() time.Time { return now }, read: func() float64 {
		reads++
		return float64(reads)
	}}
	for range 100 {
		require.Equal(t, 1.0, g.get())
	}
	now = now.Add(4999 * time.Millisecond)
	require.Equal(t, 1.0, g.get())
	now = now.Add(time.Millisecond)
	require.Equal(t, 2.0, g.get())
	require.Equal(t, 2, reads)
}

// The fence's age is measured against the clock, not against the start of the scan's own
// transaction: a write transaction that began after the scan's transaction would otherwise
// give a negative age, which the gauge reserves for "unknown" (a CI run saw -1.2e-05).
func TestFenceAgeIsNeverNegative(t *testing.T) {
	ctx := context.Background()
	scan, err := pgx.Connect(ctx, testDB)
	require.NoError(t, err)
	defer scan.Close(ctx)
	writer, err := pgx.Connect(ctx, testDB)
	require.NoError(t, err)
	defer writer.Close(ctx)

	tx, err := scan.Begin(ctx) // now() is fixed from here on
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	_, err = tx.Exec(ctx, "SELECT now()")
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond)
	w, err := writer.Begin(ctx)
	require.NoError(t, err)
	defer w.Rollback(ctx)
	_, err = w.Exec(ctx, "SELECT pg_current_xact_id()") // holds a transaction id from now on
	require.NoError(t, err)

	age, err := db.New(tx).OldestWriteTransaction(ctx)
	require.NoError(t, err)
	require.GreaterOrEqual(t, age, 0.0)
}

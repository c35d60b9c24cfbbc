package db

import (
	"context"
	"strings"
	"testing"

	"github.com/chatd/chatd/db/dbtest"
	"github.com/stretchr/testify/require"
)

// TestSettingsHoldPerTransaction: the settings chatd relies on are made per transaction, so
// they hold through a pooler that shares server sessions, and nothing is left on the
// session for whoever uses it next.
func TestSettingsHoldPerTransaction(t *testing.T) {
	ctx := context.Background()
	url, drop, err := dbtest.Create(ctx, dbtest.ServerURL(), "chatd_test_db", "")
	require.NoError(t, err)
	defer drop()
	pool, err := Open(ctx, url, 1) // one session: what a transaction leaves on it, the next one sees
	require.NoError(t, err)
	defer pool.Close()
	const settings = "SELECT current_setting('jit') || ' ' || current_setting('idle_in_transaction_session_timeout')"
	var session string
	require.NoError(t, pool.QueryRow(ctx, settings).Scan(&session))
	require.NotEqual(t, "off 10s", session, "the session itself has neither setting")

	var inTx string
	require.NoError(t, InTx(ctx, pool, func(q *Queries) error { return q.db.QueryRow(ctx, settings).Scan(&inTx) }))
	require.Equal(t, "off 10s", inTx)

	rows, err := WithoutJIT(pool).Query(ctx, settings)
	require.NoError(t, err)
	require.True(t, rows.Next())
	var read string
	require.NoError(t, rows.Scan(&read))
	rows.Close()
	require.NoError(t, rows.Err())
	require.True(t, strings.HasPrefix(read, "off "), "a log read runs without JIT: %s", read)

	var after, app string
	require.NoError(t, pool.QueryRow(ctx, settings+", current_setting('application_name')").Scan(&after, &app))
	require.Equal(t, session, after, "nothing is left on the session")
	require.Equal(t, "chatd", app)
}

package db

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A user already stored as the token says costs no lock: while another transaction holds
// the row, the upsert of the same identity returns at once (ON CONFLICT alone would wait
// for it, and a burst of one user's first requests queued on each other's commits). A
// changed name still waits for the row and is stored; no name never erases one.
func TestUpsertUserLocksOnlyToChange(t *testing.T) {
	f := newSenderFixture(t)
	ctx := context.Background()
	q := New(f.pool)
	alice, alicia := "Alice", "Alicia"
	require.NoError(t, q.UpsertUser(ctx, UpsertUserParams{ID: "alice", Name: &alice}))

	tx, err := f.other.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "SELECT 1 FROM users WHERE id = 'alice' FOR UPDATE")
	require.NoError(t, err)
	quick, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	require.NoError(t, q.UpsertUser(quick, UpsertUserParams{ID: "alice", Name: &alice}), "unchanged: no wait")
	require.NoError(t, q.UpsertUser(quick, UpsertUserParams{ID: "alice"}), "no name: no wait")
	require.NoError(t, q.UpsertUser(quick, UpsertUserParams{ID: "zoe", Name: &alice}), "a new user")

	changed := make(chan error, 1)
	go func() { changed <- q.UpsertUser(ctx, UpsertUserParams{ID: "alice", Name: &alicia}) }()
	f.waitBlocked(t, 1) // a change waits for the row
	require.NoError(t, tx.Rollback(ctx))
	require.NoError(t, <-changed)
	var names []string
	require.NoError(t, f.pool.QueryRow(ctx, "SELECT array_agg(id || '=' || name ORDER BY id) FROM users WHERE id IN ('alice', 'zoe')").Scan(&names))
	require.Equal(t, []string{"alice=Alicia", "zoe=Alice"}, names)
}

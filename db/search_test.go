package db

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd"
	"github.com/chatd/chatd/db/dbtest"
)

// TestSetSearchLanguage: a language's configuration finds other forms of a word that
// simple does not, the index is rebuilt once and still serves the search, a second start
// with the same language changes nothing, and a name that is no configuration is refused
// with the list of those there are.
func TestSetSearchLanguage(t *testing.T) {
	ctx := context.Background()
	url, drop, err := dbtest.Create(ctx, dbtest.ServerURL(), "chatd_test_lang", chatd.Schema)
	require.NoError(t, err)
	defer drop()
	pool, err := Open(ctx, url, 2)
	require.NoError(t, err)
	defer pool.Close()
	q := New(pool)
	_, err = pool.Exec(ctx, `
		WITH u AS (INSERT INTO users (id) VALUES ('alice')),
		     c AS (INSERT INTO conversations (kind) VALUES ('group') RETURNING id),
		     m AS (INSERT INTO members (conversation_id, user_id) SELECT id, 'alice' FROM c)
		INSERT INTO messages (conversation_id, seq, sender_id, body) SELECT id, 1, 'alice', 'She was running late' FROM c`)
	require.NoError(t, err)
	found := func(word string) int {
		rows, err := q.SearchMessages(ctx, SearchMessagesParams{Q: word, UserID: "alice", RowLimit: 10})
		require.NoError(t, err)
		return len(rows)
	}
	indexFile := func() (file uint32) {
		require.NoError(t, pool.QueryRow(ctx, "SELECT relfilenode FROM pg_class WHERE relname = 'messages_search'").Scan(&file))
		return file
	}

	require.NoError(t, SetSearchLanguage(ctx, pool, "simple"))
	before := indexFile()
	require.Equal(t, 1, found("running"))
	require.Zero(t, found("run"), "simple does not stem")

	require.NoError(t, SetSearchLanguage(ctx, pool, "english"))
	rebuilt := indexFile()
	require.NotEqual(t, before, rebuilt, "the index was rebuilt for the new language")
	require.Equal(t, 1, found("run"), "english finds running by run")
	require.Equal(t, 1, found("runs"))
	// One row is read faster without an index; the plan shows that the index still matches.
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	_, err = tx.Exec(ctx, "SET LOCAL enable_seqscan = off")
	require.NoError(t, err)
	rows, err := tx.Query(ctx, "EXPLAIN "+searchMessages, "run", "alice", nil, nil, nil, 10)
	require.NoError(t, err)
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Contains(t, strings.Join(lines, "\n"), "Bitmap Index Scan on messages_search", "%v", lines)
	require.NoError(t, tx.Rollback(ctx))

	require.NoError(t, SetSearchLanguage(ctx, pool, "pg_catalog.english"), "a qualified name is the same language")
	require.Equal(t, rebuilt, indexFile(), "the same language again rebuilds nothing")

	err = SetSearchLanguage(ctx, pool, "klingon'; DROP TABLE messages; --")
	require.ErrorContains(t, err, "not a text search configuration")
	require.ErrorContains(t, err, "english, ")
	require.Equal(t, 1, found("run"), "a refused name changes nothing")
}

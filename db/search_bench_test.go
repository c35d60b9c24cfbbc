package db

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd"
	"github.com/chatd/chatd/db/dbtest"
)

// The search workload: 2,000 conversations of 50 messages each (100,000 messages), each
// with two of 1,000 users; the searcher is also in 40 of them (2,000 messages), a busy
// marketplace user. A body is 8 words drawn from 2,000 with a skew (word k is "w<k>",
// smaller k more frequent): w0 is in about half of all messages, w100 in about 1 %, w1500
// in about 0.2 %, as common, ordinary and rare words are.
const (
	searchConversations = 2000
	searchPerConv       = 50
	searchMember        = 40 // conversations of the searcher
	searcher            = "searcher"
)

// seedSearch creates a database with the search workload and returns a pool on it.
func seedSearch(t testing.TB) *Queries {
	t.Helper()
	ctx := context.Background()
	url, drop, err := dbtest.Create(ctx, dbtest.ServerURL(), "chatd_test_search", chatd.Schema)
	require.NoError(t, err)
	t.Cleanup(drop)
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	n, per, member := searchConversations, searchPerConv, searchMember
	for _, st := range []struct {
		sql  string
		args []any
	}{
		{"INSERT INTO users (id) SELECT 'u' || g FROM generate_series(1, 1000) g UNION ALL SELECT 'searcher'", nil},
		{`CREATE TEMP TABLE conv_n AS
		 SELECT gen_random_uuid() AS id, g AS n FROM generate_series(0, $1 - 1) g`, []any{n}},
		{`INSERT INTO conversations (id, kind, last_seq) SELECT id, 'group', $1 FROM conv_n`, []any{per}},
		{`INSERT INTO members (conversation_id, user_id, took_part)
		 SELECT id, 'u' || (2 * (n % 500) + 1), true FROM conv_n
		 UNION ALL SELECT id, 'u' || (2 * (n % 500) + 2), true FROM conv_n
		 UNION ALL SELECT id, 'searcher', true FROM conv_n WHERE n % $1 = 0`, []any{n / member}},
		// Messages of all conversations interleave in time, one a second.
		{`INSERT INTO messages (conversation_id, seq, sender_id, body, created_at)
		 SELECT c.id, s, 'u' || (2 * (c.n % 500) + 1 + s % 2),
		     (SELECT string_agg('w' || floor(2000 * random() ^ 3)::int, ' ') FROM generate_series(1, 8) k
		      WHERE k > s - s), -- correlated, so each message draws its own words
		     timestamptz '2026-01-01 00:00:00Z' + make_interval(secs => s * $1 + c.n)
		 FROM conv_n c, generate_series(1, $2) s`, []any{n, per}},
		{"ANALYZE", nil},
	} {
		_, err := conn.Exec(ctx, st.sql, st.args...)
		require.NoError(t, err, st.sql)
	}
	pool, err := Open(ctx, url, 4)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return New(pool)
}

// search runs a search as the API does: the query tree check, then one page of 20.
func search(ctx context.Context, q *Queries, p SearchMessagesParams) ([]SearchMessagesRow, error) {
	if _, err := q.SearchQueryTree(ctx, p.Q); err != nil {
		return nil, err
	}
	p.UserID, p.RowLimit = searcher, 21
	return q.SearchMessages(ctx, p)
}

// BenchmarkSearch measures a search over 100,000 messages; the contract is under 50 ms.
//
//	go test -run '^$' -bench BenchmarkSearch -benchtime 50x ./db
func BenchmarkSearch(b *testing.B) {
	q := seedSearch(b)
	ctx := context.Background()
	var oneConv pgtype.UUID
	require.NoError(b, q.db.QueryRow(ctx, "SELECT conversation_id FROM members WHERE user_id = $1 LIMIT 1", searcher).Scan(&oneConv))
	for _, bc := range []struct {
		name string
		p    SearchMessagesParams
	}{
		{"rare_word", SearchMessagesParams{Q: "w1500"}},
		{"one_percent_word", SearchMessagesParams{Q: "w100"}},
		{"word_in_half", SearchMessagesParams{Q: "w0"}},
		{"two_words", SearchMessagesParams{Q: "w3 w40"}},
		{"phrase", SearchMessagesParams{Q: `"w0 w1"`}},
		{"one_conversation", SearchMessagesParams{Q: "w0", ConversationID: oneConv}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			rows, err := search(ctx, q, bc.p)
			require.NoError(b, err)
			require.NotEmpty(b, rows, "the workload has matches for %q", bc.p.Q)
			for b.Loop() {
				if _, err := search(ctx, q, bc.p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestSearchReadsTheIndex: a search finds its candidates through the GIN index, not by
// reading (and parsing) messages, and only the searcher's conversations come back.
func TestSearchReadsTheIndex(t *testing.T) {
	q := seedSearch(t)
	ctx := context.Background()
	var raw []byte
	require.NoError(t, q.db.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+searchMessages,
		"w1500", searcher, nil, nil, nil, 21).Scan(&raw))
	var plan []struct{ Plan planNode }
	require.NoError(t, json.Unmarshal(raw, &plan))
	var usesIndex bool
	walk(plan[0].Plan, func(n planNode) {
		usesIndex = usesIndex || n.Index == "messages_search"
	})
	require.True(t, usesIndex, "%s", raw)

	rows, err := search(ctx, q, SearchMessagesParams{Q: "w0"})
	require.NoError(t, err)
	require.Len(t, rows, 21)
	for i, r := range rows {
		ok, err := q.IsMember(ctx, IsMemberParams{ConversationID: r.ConversationID, UserID: searcher})
		require.NoError(t, err)
		require.True(t, ok)
		if i > 0 {
			require.False(t, r.CreatedAt.After(rows[i-1].CreatedAt), "newest first")
		}
	}
}

package db

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd"
	"github.com/chatd/chatd/db/dbtest"
)

// An unread count is read on every conversation listing, so it must cost what is unread,
// not what the conversation ever held: in a conversation of 100,000 messages with 10
// unread, every query that counts reads messages by an index range over the unread tail.
// The plans are PostgreSQL's own (EXPLAIN ANALYZE of the queries the service runs).
func TestUnreadCountsReadOnlyTheUnreadTail(t *testing.T) {
	ctx := context.Background()
	url, drop, err := dbtest.Create(ctx, dbtest.ServerURL(), "chatd_test_unread", chatd.Schema)
	require.NoError(t, err)
	defer drop()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)

	const total, unread = 100_000, 10
	var conv [16]byte
	require.NoError(t, conn.QueryRow(ctx, `
		WITH u AS (INSERT INTO users (id) VALUES ('alice'), ('bob')),
		     c AS (INSERT INTO conversations (kind, direct_a, direct_b, last_seq)
		           VALUES ('direct', 'alice', 'bob', $1) RETURNING id),
		     m AS (INSERT INTO members (conversation_id, user_id, last_read_seq, took_part)
		           SELECT c.id, x.u, x.r, true FROM c, (VALUES ('alice', $1 - $2), ('bob', $1)) x(u, r)),
		     s AS (INSERT INTO messages (conversation_id, seq, sender_id, body)
		           SELECT c.id, g, CASE WHEN g % 2 = 0 THEN 'alice' ELSE 'bob' END, 'message ' || g
		           FROM c, generate_series(1, $1) g)
		SELECT id FROM c`, total, unread).Scan(&conv))
	_, err = conn.Exec(ctx, "ANALYZE")
	require.NoError(t, err)

	for name, q := range map[string]struct {
		sql  string
		args []any
	}{
		"GetConversation":   {getConversation, []any{conv, "alice"}},
		"ListConversations": {listConversations, []any{"alice", nil, nil, 20}},
		"UnreadCounts":      {unreadCounts, []any{"alice"}},
	} {
		t.Run(name, func(t *testing.T) {
			var plan []struct{ Plan planNode }
			var raw []byte
			require.NoError(t, conn.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+q.sql, q.args...).Scan(&raw))
			require.NoError(t, json.Unmarshal(raw, &plan))
			var scans int
			walk(plan[0].Plan, func(n planNode) {
				if n.Relation != "messages" {
					return
				}
				scans++
				require.Contains(t, []string{"Index Scan", "Index Only Scan", "Bitmap Heap Scan"}, n.Type,
					"messages read by %s:\n%s", n.Type, raw)
				// Each loop reads at most the unread tail (5 of the 10 are alice's own).
				require.LessOrEqual(t, (n.Rows+n.Removed)*max(n.Loops, 1), float64(unread), "%s", raw)
			})
			require.NotZero(t, scans, "the query reads messages: %s", raw)
		})
	}
}

// planNode is the part of an EXPLAIN (FORMAT JSON) node the test looks at.
type planNode struct {
	Type     string     `json:"Node Type"`
	Relation string     `json:"Relation Name"`
	Index    string     `json:"Index Name"`
	Rows     float64    `json:"Actual Rows"`
	Removed  float64    `json:"Rows Removed by Filter"`
	Loops    float64    `json:"Actual Loops"`
	Plans    []planNode `json:"Plans"`
}

func walk(n planNode, f func(planNode)) {
	f(n)
	for _, c := range n.Plans {
		walk(c, f)
	}
}

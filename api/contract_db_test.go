package api

// Contract rules that need a database of their own: breaking it (taking it down, moving the
// retention floor) must not disturb the other tests sharing the package's database.

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd"
	"github.com/chatd/chatd/db"
	"github.com/chatd/chatd/db/dbtest"
	"github.com/chatd/chatd/events"
)

// scratch is an instance on a database of its own, dropped when the test ends.
type scratch struct {
	*instance
	Name string        // the database's name
	Pool *pgxpool.Pool // the instance's own pool on it (instance.Pool is the package's)
}

func newScratchInstance(t *testing.T) *scratch {
	t.Helper()
	ctx := context.Background()
	dbURL, drop, err := dbtest.Create(ctx, dbtest.ServerURL(), "chatd_test_contract", chatd.Schema)
	require.NoError(t, err)
	t.Cleanup(drop) // after the instance and its pool (cleanups run last first)
	pool, err := db.Open(ctx, dbURL, 10)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	in := newInstance(t, func(c *Config, e *events.Config) {
		c.Pool, e.Pool, e.ListenURL = pool, pool, dbURL
	})
	return &scratch{instance: in, Name: u.Path[1:], Pool: pool}
}

// admin runs a statement on the server's maintenance database.
func admin(t *testing.T, sql string, args ...any) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbtest.ServerURL())
	require.NoError(t, err)
	defer conn.Close(context.Background())
	_, err = conn.Exec(context.Background(), sql, args...)
	require.NoError(t, err)
}

func TestContractDatabaseDownIs503WithRetryAfter(t *testing.T) {
	t.Parallel()
	in := newScratchInstance(t)
	alice, bob := newUser(t, in.instance, "alice"), newUser(t, in.instance, "bob")
	conv := alice.direct(bob)
	msgs := "/v1/conversations/" + conv.ID + "/messages"
	require.Equal(t, 200, alice.do("GET", msgs, nil).Status)

	// The database goes away: every connection is cut and no new one is accepted.
	ident := pgx.Identifier{in.Name}.Sanitize()
	admin(t, "ALTER DATABASE "+ident+" ALLOW_CONNECTIONS false")
	t.Cleanup(func() { admin(t, "ALTER DATABASE "+ident+" ALLOW_CONNECTIONS true") })
	admin(t, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", in.Name)

	for _, tc := range []struct {
		method, path string
		body         any
	}{
		{"GET", msgs, nil},
		{"POST", msgs, map[string]any{"body": "into the void"}},
		{"GET", "/v1/unread", nil},
		{"GET", "/readyz", nil},
	} {
		r := alice.do(tc.method, tc.path, tc.body)
		restRequireError(t, r, http.StatusServiceUnavailable, "")
		after, err := strconv.Atoi(r.Header.Get("Retry-After"))
		require.NoError(t, err, "%s %s: Retry-After %q", tc.method, tc.path, r.Header.Get("Retry-After"))
		require.Positive(t, after)
	}

	// It is a passing state: once the database is back, so is the service.
	admin(t, "ALTER DATABASE "+ident+" ALLOW_CONNECTIONS true")
	require.Eventually(t, func() bool {
		r, err := restDo("GET", in.URL+msgs, alice.Token, "", nil)
		return err == nil && r.Status == 200
	}, wait, 20*time.Millisecond)
}

func TestContractLongPollResetsExpiredCursors(t *testing.T) {
	t.Parallel()
	in := newScratchInstance(t)
	alice, bob := newUser(t, in.instance, "alice"), newUser(t, in.instance, "bob")
	conv := alice.direct(bob)
	var before pollAnswer
	r := bob.do("GET", "/v1/events/poll", nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	r.JSON(t, &before)
	m := alice.send(conv.ID, "soon pruned")
	// Poll until the message arrives (the head may have lagged the conversation's event).
	last := ""
	for cursor := before.Cursor; last == ""; {
		var got pollAnswer
		r = bob.do("GET", "/v1/events/poll?timeout=10&cursor="+url.QueryEscape(cursor), nil)
		require.Equal(t, 200, r.Status, "%s", r.Body)
		r.JSON(t, &got)
		require.NotEmpty(t, got.Events)
		for _, e := range got.Events {
			if e.Type == "message" && decode[events.Message](t, string(e.Data)).ID == m.ID {
				last = e.ID
			}
		}
		cursor = got.Cursor
	}
	pruned, err := events.ParseCursor(last)
	require.NoError(t, err)

	// Retention pruned everything up to the message (this database is ours alone).
	_, err = in.Pool.Exec(context.Background(), "UPDATE event_floor SET tx = $1::text::xid8, id = $2", fmt.Sprint(pruned.Tx), pruned.ID)
	require.NoError(t, err)
	contractRequireReset(t, bob, before.Cursor, "expired", pruned)

	// The floor itself is still a place to resume from: no reset, an empty answer.
	r = bob.do("GET", "/v1/events/poll?timeout=0&cursor="+url.QueryEscape(last), nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	require.JSONEq(t, fmt.Sprintf(`{"events":[],"cursor":%q}`, last), string(r.Body))
}

package notify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/chatd/chatd"
	"github.com/chatd/chatd/db"
	"github.com/chatd/chatd/db/dbtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// testKey signs the webhooks of every test; testSecret is how an operator writes it.
var (
	testKey    = []byte("a-webhook-key-of-32-bytes-length")
	testSecret = "whsec_YS13ZWJob29rLWtleS1vZi0zMi1ieXRlcy1sZW5ndGg="
)

// newDB creates a database of the test's own (chatd's schema and River's tables, migrated
// as `chatd migrate` does) and returns a pool on it and its URL.
func newDB(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	ctx := context.Background()
	url, drop, err := dbtest.Create(ctx, dbtest.ServerURL(), "chatd_test_notify", "")
	require.NoError(t, err)
	t.Cleanup(drop)
	pool := newPool(t, url)
	require.NoError(t, db.Migrate(ctx, pool, chatd.Schema, Migrate))
	return pool, url
}

// newPool opens a pool of its own on url, closed when the test ends.
func newPool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := db.Open(context.Background(), url, 8)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// testConfig is quick enough to test: a delay of a second, retries 50 ms apart, a log
// followed every 20 ms, jobs fetched every 20 ms.
func testConfig(pool *pgxpool.Pool, url string) Config {
	return Config{Pool: pool, URL: url, Secret: testKey, After: time.Second, Backoff: 50 * time.Millisecond,
		Timeout: 5 * time.Second, ScanInterval: 20 * time.Millisecond, FetchPollInterval: 20 * time.Millisecond,
		PresenceStale: 2 * time.Second}
}

// startNotifier starts a notifier (an instance's share of the pipeline) stopped when the
// test ends.
func startNotifier(t *testing.T, cfg Config) *Notifier {
	t.Helper()
	n, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, n.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = n.Stop(ctx)
	})
	return n
}

// uniq returns prefix with a random suffix.
func uniq(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// chat is a group conversation of two users, made with the service's own queries.
type chat struct {
	q        *db.Queries
	sender   *db.Sender
	id       pgtype.UUID
	from, to string // a named sender, and the recipient the tests watch
}

// newChat creates the users (the sender named "Alice") and their conversation.
func newChat(t *testing.T, pool *pgxpool.Pool) *chat {
	t.Helper()
	ctx := context.Background()
	c := &chat{q: db.New(pool), sender: db.NewSender(pool, db.SenderConfig{}), from: uniq("alice"), to: uniq("bob")}
	name := "Alice"
	require.NoError(t, c.q.UpsertUser(ctx, db.UpsertUserParams{ID: c.from, Name: &name}))
	require.NoError(t, c.q.EnsureUsers(ctx, []string{c.to}))
	title := "Bike for sale"
	id, err := c.q.CreateGroupConversation(ctx, &title)
	require.NoError(t, err)
	c.id = id
	require.NoError(t, c.q.AddMembers(ctx, db.AddMembersParams{ConversationID: id, CreatorID: c.from, UserIds: []string{c.from, c.to}}))
	return c
}

// send sends body from the sender, the way POST .../messages does.
func (c *chat) send(t *testing.T, body string) db.Message {
	t.Helper()
	sent, err := c.sender.Send(context.Background(), db.Send{ConversationID: c.id, SenderID: c.from, Body: body})
	require.NoError(t, err)
	require.True(t, sent.OK)
	return sent.Message
}

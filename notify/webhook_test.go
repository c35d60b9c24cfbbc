package notify

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/db"
	"github.com/chatd/chatd/events"
)

// A message to a user who is away: one signed digest after the delay, none before, and no
// second one while the user stays away.
func TestDigestAfterDelay(t *testing.T) {
	pool, _ := newDB(t)
	rcv := newReceiver(t)
	startNotifier(t, testConfig(pool, rcv.URL))
	c := newChat(t, pool)

	long := "Is the bike still available? " + strings.Repeat("é", 300)
	m := c.send(t, long)
	sent := time.Now()
	d := rcv.next(t, 20*time.Second)
	require.GreaterOrEqual(t, d.At.Sub(sent), time.Second, "sent before the user was away for CHAT_NOTIFY_AFTER")
	require.Equal(t, http.StatusOK, d.Status)
	require.True(t, strings.HasPrefix(d.ID, "msg_"))

	requireDigestContract(t, d.Body)
	var got Digest
	require.NoError(t, json.Unmarshal(d.Body, &got))
	require.Equal(t, "unread.digest", got.Type)
	require.Equal(t, c.to, got.UserID)
	require.Len(t, got.Conversations, 1)
	conv := got.Conversations[0]
	require.Equal(t, events.UUIDString(c.id), conv.ID)
	require.Equal(t, "Bike for sale", *conv.Title)
	require.EqualValues(t, 1, conv.UnreadCount)
	require.Len(t, conv.Messages, 1)
	msg := conv.Messages[0]
	require.Equal(t, events.UUIDString(m.ID), msg.ID)
	require.Equal(t, m.Seq, msg.Seq)
	require.Equal(t, c.from, *msg.SenderID)
	require.Equal(t, "Alice", *msg.SenderName)
	require.Equal(t, previewChars, utf8.RuneCountInString(msg.Preview), "the preview is capped")
	require.True(t, strings.HasPrefix(long, strings.TrimSuffix(msg.Preview, "…")))

	// Still away: a new message schedules a check, which finds the absence told already.
	c.send(t, "Hello?")
	settled(t, pool, c.to, 2)
	rcv.none(t)
	require.Empty(t, rcv.badSignatures())
}

// A user who reads the message before the delay ends gets nothing.
func TestReadBeforeDelay(t *testing.T) {
	pool, _ := newDB(t)
	rcv := newReceiver(t)
	startNotifier(t, testConfig(pool, rcv.URL))
	c := newChat(t, pool)

	m := c.send(t, "Still available?")
	_, err := c.q.MarkRead(context.Background(), db.MarkReadParams{ConversationID: c.id, UserID: c.to, Seq: m.Seq})
	require.NoError(t, err)
	settled(t, pool, c.to, 1)
	rcv.none(t)
	require.Zero(t, jobsOf(t, pool, c.to, "chatd_notify_deliver"))
}

// A user with a stream open when the delay ends gets nothing then; once it leaves without
// reading, it gets the digest after being away for the delay.
func TestOnlineThenAway(t *testing.T) {
	pool, _ := newDB(t)
	rcv := newReceiver(t)
	startNotifier(t, testConfig(pool, rcv.URL))
	c := newChat(t, pool)
	presence := startPresence(t, pool)

	c.send(t, "Are you there?")
	presence.Connect(c.to)
	require.Eventually(t, func() bool {
		n, err := countJobs(pool, c.to, "chatd_notify_check")
		return err == nil && n >= 2 // checked, online: checks again later
	}, 20*time.Second, 20*time.Millisecond)
	rcv.none(t)

	presence.Disconnect(c.to)
	left := time.Now()
	d := rcv.next(t, 20*time.Second)
	require.GreaterOrEqual(t, d.At.Sub(left), time.Second, "sent before the user was away for CHAT_NOTIFY_AFTER")
	var got Digest
	require.NoError(t, json.Unmarshal(d.Body, &got))
	require.Equal(t, c.to, got.UserID)
}

// startPresence runs the service's presence tracker on pool, as an instance does, with a
// short grace period.
func startPresence(t *testing.T, pool *pgxpool.Pool) *events.Presence {
	t.Helper()
	p := events.NewPresence(events.PresenceConfig{Pool: pool, Instance: uniq("instance"), Publish: func(*events.Event) {},
		Grace: 100 * time.Millisecond, Beat: 200 * time.Millisecond, Stale: 2 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	require.NoError(t, p.Start(ctx))
	return p
}

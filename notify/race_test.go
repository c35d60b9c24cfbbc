package notify

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/db"
)

// The ordering the pipeline relies on (schema.sql, notify_pending): a message committed
// while a check of its recipient runs, too late for the check to read it, still gets a
// check of its own. Here the check has taken the pending mark and found nothing unread;
// the message's transaction began before the check and commits after the check's read, so
// the scanner sees it while the check is still open. The scanner waits for the check,
// then marks the user pending again and schedules a new check.
func TestMessageDuringCheckGetsItsOwnCheck(t *testing.T) {
	pool, url := newDB(t)
	n, err := New(testConfig(pool, url)) // not started: the test drives the scanner
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, db.New(pool).NotifyCursorInit(ctx))
	c := newChat(t, pool)
	first := c.send(t, "first")
	scanUntilPast(t, n, first.ID)
	_, err = c.q.MarkRead(ctx, db.MarkReadParams{ConversationID: c.id, UserID: c.to, Seq: first.Seq})
	require.NoError(t, err)

	send, err := pool.Begin(ctx) // the message's transaction takes its id first
	require.NoError(t, err)
	defer func() { _ = send.Rollback(ctx) }()
	ids := []pgtype.UUID{c.id}
	require.NoError(t, db.New(send).LockConversations(ctx, ids))
	sent, err := db.New(send).SendMessages(ctx, db.SendMessagesParams{ConversationIds: ids,
		SenderIds: []string{c.from}, Bodies: []string{"second"}, ClientIds: []string{""}})
	require.NoError(t, err)

	check, err := pool.Begin(ctx) // the check, as checkWorker runs it
	require.NoError(t, err)
	defer func() { _ = check.Rollback(ctx) }()
	require.NoError(t, db.New(check).NotifyTakePending(ctx, c.to))
	st, err := db.New(check).NotifyState(ctx, db.NotifyStateParams{UserID: c.to, StaleSeconds: 20})
	require.NoError(t, err)
	require.False(t, st.Unread, "the check cannot see the message yet")
	require.NoError(t, send.Commit(ctx))

	scanned := make(chan error, 1)
	go func() { scanned <- scanPast(n, sent[0].ID) }()
	require.Eventually(t, func() bool { // the scanner waits for the check's transaction
		var waiting bool
		err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock')`).Scan(&waiting)
		return err == nil && waiting
	}, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, check.Commit(ctx)) // nothing unread: no recheck
	require.NoError(t, <-scanned)
	require.Equal(t, 2, jobsOf(t, pool, c.to, "chatd_notify_check"), "the message got no check of its own")
}

// scanUntilPast runs the scanner until its cursor has passed the event of message.
func scanUntilPast(t *testing.T, n *Notifier, message pgtype.UUID) {
	t.Helper()
	require.NoError(t, scanPast(n, message))
}

// scanPast runs the scanner until its cursor has passed the event of message (another
// database's open transaction may hold the fence back a while), for at most 30 s.
func scanPast(n *Notifier, message pgtype.UUID) error {
	ctx := context.Background()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for {
		if _, err := n.scanOnce(ctx); err != nil {
			return err
		}
		past, err := cursorPast(n.cfg.Pool, message)
		if err != nil || past {
			return err
		}
		select {
		case <-tick.C:
		case <-deadline:
			return errors.New("the scanner did not pass the message within 30s")
		}
	}
}

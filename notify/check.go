package notify

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/chatd/chatd/db"
)

// checkArgs asks whether user should get a digest now. The scanner schedules one per user
// that becomes pending (notify_pending), Config.After after the message that made it so.
type checkArgs struct {
	UserID string `json:"user_id"`
}

// Kind implements river.JobArgs.
func (checkArgs) Kind() string { return "chatd_notify_check" }

// InsertOpts implements river.JobArgsWithInsertOpts.
func (checkArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{Queue: Queue} }

// checkWorker decides, from what the database says when the check runs, whether a user
// gets a digest; the decision and its consequence (a digest to deliver, or a later check)
// commit together with the job's completion, so a crash anywhere repeats the check
// instead of losing or doubling its outcome.
type checkWorker struct {
	river.WorkerDefaults[checkArgs]
	n *Notifier
}

// Work runs the check in one transaction.
func (w *checkWorker) Work(ctx context.Context, job *river.Job[checkArgs]) error {
	user := job.Args.UserID
	return db.InTxRaw(ctx, w.n.cfg.Pool, func(tx pgx.Tx) error {
		q := db.New(tx)
		// First, so that a message committed after this statement schedules a check of
		// its own (schema.sql, notify_pending).
		if err := q.NotifyTakePending(ctx, user); err != nil {
			return err
		}
		st, err := q.NotifyState(ctx, db.NotifyStateParams{UserID: user, StaleSeconds: w.n.cfg.PresenceStale.Seconds()})
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		switch v := decide(st, err == nil, w.n.cfg.After); {
		case v.recheck > 0:
			if err := q.NotifyPend(ctx, user); err != nil {
				return err
			}
			if _, err := w.n.river.InsertTx(ctx, tx, checkArgs{UserID: user},
				&river.InsertOpts{ScheduledAt: w.n.now().Add(v.recheck)}); err != nil {
				return err
			}
		case v.send:
			if err := w.n.enqueueDigest(ctx, tx, q, user); err != nil {
				return err
			}
		}
		_, err = river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job)
		return err
	})
}

// enqueueDigest renders user's digest and schedules its delivery, and records that the
// user has been notified for this absence.
func (n *Notifier) enqueueDigest(ctx context.Context, tx pgx.Tx, q *db.Queries, user string) error {
	body, err := buildDigest(ctx, q, user, n.now())
	if err != nil || body == nil {
		return err
	}
	if err := q.NotifyMarkNotified(ctx, user); err != nil {
		return err
	}
	_, err = n.river.InsertTx(ctx, tx, deliverArgs{WebhookID: newWebhookID(), UserID: user, Body: string(body)}, nil)
	return err
}

// verdict is what a check decided: send a digest now, look again after recheck, or
// neither (nothing to say, or said already).
type verdict struct {
	send    bool
	recheck time.Duration
}

// decide applies the notification rule to a user's state; found is false for a user that
// does not exist. A user gets a digest when it accepts webhooks, has unread messages, has
// had no stream or poll open for at least after, and got no digest since it was last
// seen. While it is online, or away for less than after, the check looks again later: a
// user who leaves without reading is told after being away for after.
func decide(st db.NotifyStateRow, found bool, after time.Duration) verdict {
	switch {
	case !found || !st.NotifyWebhook || !st.Unread:
		return verdict{}
	case st.Online:
		return verdict{recheck: after}
	case st.LastSeenAt != nil && st.DbNow.Sub(*st.LastSeenAt) < after:
		return verdict{recheck: st.LastSeenAt.Add(after).Sub(st.DbNow)}
	case st.NotifiedAt != nil && (st.LastSeenAt == nil || !st.NotifiedAt.Before(*st.LastSeenAt)):
		return verdict{} // notified already, and not seen since
	}
	return verdict{send: true}
}

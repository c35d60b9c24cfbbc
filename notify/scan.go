package notify

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/chatd/chatd/db"
)

// scanBatch is how many events one step along the log reads.
const scanBatch = 1000

// scanLoop follows the event log every ScanInterval, as far as it goes. Every instance
// runs one; the advisory lock of NotifyScanLock lets one at a time move the shared cursor,
// so a dead instance's share is simply taken up by the next that tries.
//
// The scanner schedules the checks instead of the write path: a send stays one statement,
// and a burst in a busy conversation costs one scan per interval, not one job per
// recipient per message.
func (n *Notifier) scanLoop(ctx context.Context) {
	defer close(n.done)
	t := time.NewTicker(n.cfg.ScanInterval)
	defer t.Stop()
	var lastErrLog time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for {
			more, err := n.scanOnce(ctx)
			if err != nil {
				if ctx.Err() == nil && time.Since(lastErrLog) >= 5*time.Second {
					n.logger.Warn("notify: follow the event log; retrying", "err", err)
					lastErrLog = time.Now()
				}
				break
			}
			if !more {
				break
			}
		}
	}
}

// scanOnce takes one batch of final events after the cursor, makes the recipients of its
// messages pending, schedules a check for each that was not pending yet, and moves the
// cursor past the batch, all in one transaction. more reports a full batch.
func (n *Notifier) scanOnce(ctx context.Context) (more bool, err error) {
	err = db.InTxRaw(ctx, n.cfg.Pool, func(tx pgx.Tx) error {
		q := db.New(tx)
		mine, err := q.NotifyScanLock(ctx)
		if err != nil || !mine {
			return err // another instance is scanning
		}
		cur, err := q.NotifyCursor(ctx)
		if err != nil {
			return err
		}
		row, err := q.NotifyScan(ctx, db.NotifyScanParams{AfterTx: cur.Tx, AfterID: cur.ID, RowLimit: scanBatch})
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(row.Scheduled) > 0 {
			at := n.now().Add(n.cfg.After)
			jobs := make([]river.InsertManyParams, len(row.Scheduled))
			for i, u := range row.Scheduled {
				jobs[i] = river.InsertManyParams{Args: checkArgs{UserID: u}, InsertOpts: &river.InsertOpts{ScheduledAt: at}}
			}
			if _, err := n.river.InsertManyTx(ctx, tx, jobs); err != nil {
				return err
			}
		}
		more = row.Events >= scanBatch
		return nil
	})
	return more, err
}

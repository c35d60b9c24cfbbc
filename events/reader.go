package events

// The reader: it follows the durable log below the fence and publishes what is new to
// the hub; Backfill serves one stream's replay.

import (
	"context"
	"log/slog"
	"time"

	"github.com/chatd/chatd/db"
)

// errLogInterval is the least time between two log lines about failed reads.
const errLogInterval = 5 * time.Second

// busyShare paces the reader and the doorbell by their own cost: the next read (or
// NOTIFY) waits at least this many times as long as the last one took, and at most
// busyWait: a slow read adds little to delivery latency, a failed one (the database
// away, a timeout) none.
const (
	busyShare = 4
	busyWait  = 10 * time.Millisecond
)

// busyPace is the least time until the next read or doorbell after one that took took.
func busyPace(floor, took time.Duration) time.Duration {
	return max(floor, busyShare*took)
}

// readLoop reads the log whenever woken, and on the safety timer. Reads are at least
// ReadInterval apart, and at least busyShare times the last read's duration: under load,
// one read then takes every event of the interval instead of one query per message, and
// when PostgreSQL is busy (reads take longer) the reader asks less often and takes more
// each time, spending at most a fifth of its time waiting for reads.
//
// After a wake it reads again a few times, 5 ms, 10 ms, 20 ms ... later, until a read
// finds nothing new: a transaction that rings no doorbell (another application's, or a
// presence update) may have been holding back the fence over events already committed.
func (l *Log) readLoop(ctx context.Context) {
	safety := time.NewTicker(l.cfg.SafetyPoll)
	defer safety.Stop()
	followUp := time.NewTimer(time.Hour)
	followUp.Stop()
	const firstFollowUp = 5 * time.Millisecond
	delay := time.Duration(0)
	var lastRead, lastErrLog time.Time
	var took time.Duration // the last read's
	failed := 0            // reads that failed since the last error line
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.wake:
			delay = firstFollowUp
		case <-followUp.C:
			delay *= 2
		case <-safety.C:
		}
		if !pace(ctx, lastRead, busyPace(l.cfg.ReadInterval, took)) {
			return
		}
		lastRead = time.Now()
		found, err := l.catchUp(ctx)
		took = 0
		if err == nil {
			took = min(time.Since(lastRead), busyWait/busyShare)
		}
		if err != nil && ctx.Err() == nil {
			failed++
			// While the database is away every wake fails: one line per few seconds says
			// so, with how many reads failed, instead of one line per read.
			if time.Since(lastErrLog) >= errLogInterval {
				level := slog.LevelError
				if db.IsUnavailable(err) {
					level = slog.LevelWarn // PostgreSQL restarting: expected, and retried
				}
				l.cfg.Logger.Log(ctx, level, "read event log; retrying", "err", err, "failed_reads", failed)
				lastErrLog, failed = time.Now(), 0
			}
		}
		if found > 0 && delay > 0 {
			delay = firstFollowUp
		}
		if delay > 0 && delay < l.cfg.SafetyPoll {
			followUp.Reset(delay)
		} else {
			delay = 0
		}
	}
}

// catchUp publishes every final event after the reader's position and returns how many
// rows it read.
func (l *Log) catchUp(ctx context.Context) (found int, err error) {
	for {
		rows, err := l.q.ReadEvents(ctx, db.ReadEventsParams{AfterTx: l.pos.Tx, AfterID: l.pos.ID, RowLimit: int32(l.cfg.BatchSize)})
		if err != nil {
			return found, err
		}
		found += len(rows)
		if len(rows) == 0 {
			return found, nil
		}
		// Only events someone here will receive are rendered; every instance reads the
		// whole log, but each renders only its own streams' share. The claim comes first,
		// so a stream that subscribes after the check replays this batch instead.
		l.hub.Claim(Cursor{Tx: rows[len(rows)-1].Tx, ID: rows[len(rows)-1].ID})
		raw := make([]eventRow, 0, len(rows))
		for _, r := range rows {
			if r.Type == "member_added" || r.Type == "member_removed" {
				l.members.forget(UUIDString(r.ConversationID)) // typing goes to the members of now
			}
			if !l.hub.Interested(r.Recipients) {
				continue
			}
			raw = append(raw, rowOf(r))
		}
		evs, err := l.renderAll(ctx, raw)
		if err != nil {
			return found, err
		}
		l.hub.Publish(evs)
		l.published.Add(uint64(len(rows)))
		l.pos = Cursor{Tx: rows[len(rows)-1].Tx, ID: rows[len(rows)-1].ID}
		l.hub.SetHead(l.pos) // past any skipped row too
		if len(rows) < l.cfg.BatchSize {
			return found, nil
		}
	}
}

// Backfill calls fn with user's events in (from, upto], in log order, in batches.
func (l *Log) Backfill(ctx context.Context, user string, from, upto Cursor, fn func([]*Event) error) error {
	for from.Less(upto) {
		rows, err := l.q.BackfillEvents(ctx, db.BackfillEventsParams{UserID: user,
			AfterTx: from.Tx, AfterID: from.ID, UptoTx: upto.Tx, UptoID: upto.ID, RowLimit: int32(l.cfg.BatchSize)})
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			return nil
		}
		raw := make([]eventRow, len(rows))
		for i, r := range rows {
			raw[i] = rowOf(db.ReadEventsRow(r))
		}
		evs, err := l.renderAll(ctx, raw)
		if err != nil {
			return err
		}
		from = raw[len(raw)-1].cursor
		if len(evs) == 0 {
			continue
		}
		if err := fn(evs); err != nil {
			return err
		}
		if len(rows) < l.cfg.BatchSize {
			return nil // a short batch is the end of the range
		}
	}
	return nil
}

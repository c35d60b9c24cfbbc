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

// readLoop runs the reader, as leader or follower (forward.go), whichever the listener
// last found this instance to be.
//
// The leader reads the log whenever woken, and on the safety timer. Reads are at least
// ReadInterval apart, and at least busyShare times the last read's duration: under load,
// one read then takes every event of the interval instead of one query per message, and
// when PostgreSQL is busy (reads take longer) the reader asks less often and takes more
// each time, spending at most a fifth of its time waiting for reads. After a wake it reads
// again a few times, 5 ms, 10 ms, 20 ms ... later, until a read finds nothing new: a
// transaction that rings no doorbell (another application's, or a presence update) may
// have been holding back the fence over events already committed.
//
// A follower publishes the leader's forwards, and reads the log itself only when one is
// missing: when a forward does not start where the follower stands, when its events were
// too large to forward, when a write or a doorbell is not followed by a forward within
// LeaderWait (no leader), and on a safety tick that passed without any forward.
func (l *Log) readLoop(ctx context.Context) {
	safety := time.NewTicker(l.cfg.SafetyPoll)
	defer safety.Stop()
	followUp := time.NewTimer(time.Hour)
	followUp.Stop()
	fallback := time.NewTimer(time.Hour)
	fallback.Stop()
	const firstFollowUp = 5 * time.Millisecond
	delay := time.Duration(0)
	waiting := false // fallback is set
	heard := false   // a forward arrived since the last safety tick
	var lastRead, lastErrLog time.Time
	var took time.Duration // the last read's
	failed := 0            // reads that failed since the last error line
	read := func() (found int, ok bool) {
		if !pace(ctx, lastRead, busyPace(l.cfg.ReadInterval, took)) {
			return 0, false
		}
		lastRead = time.Now()
		found, err := l.catchUp(ctx)
		took = 0
		if err == nil {
			took = min(time.Since(lastRead), busyWait/busyShare)
			l.readFails.Store(0)
		}
		if err != nil && ctx.Err() == nil {
			l.readFailed()
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
		return found, ctx.Err() == nil
	}
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-l.forwards:
			// Only a forward that brings something new shows that the leader is at work:
			// a stale one says nothing of the writes since.
			if l.pos.Less(f.to) {
				heard = true
				if waiting {
					fallback.Stop()
					waiting = false
				}
			}
			if l.applyForward(f) {
				continue
			}
			if _, ok := read(); !ok {
				return
			}
			l.applyForward(f) // what the read did not reach, if anything
			continue
		case <-l.catchup:
			delay = firstFollowUp
		case <-l.wake:
			if !l.leading.Load() {
				if !waiting {
					fallback.Reset(l.cfg.LeaderWait)
					waiting = true
				}
				continue
			}
			delay = firstFollowUp
		case <-followUp.C:
			delay *= 2
		case <-fallback.C:
			waiting = false
		case <-safety.C:
			if heard && !l.leading.Load() {
				heard = false
				continue // the leader is forwarding; a missed forward shows as a gap
			}
			heard = false
		}
		found, ok := read()
		if !ok {
			return
		}
		if !l.leading.Load() {
			delay = 0 // follow-up reads are the leader's
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
// rows it read. The leader renders every event and forwards them; a follower renders only
// those someone here will receive.
func (l *Log) catchUp(ctx context.Context) (found int, err error) {
	for {
		n, more, err := l.readBatch(ctx)
		found += n
		if err != nil || !more {
			return found, err
		}
	}
}

// readBatch reads and publishes one batch of the log, within QueryTimeout; more reports
// that the batch was full.
func (l *Log) readBatch(ctx context.Context) (found int, more bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.QueryTimeout)
	defer cancel()
	l.reads.Add(1)
	rows, err := l.q.ReadEvents(ctx, db.ReadEventsParams{AfterTx: l.pos.Tx, AfterID: l.pos.ID, RowLimit: int32(l.cfg.BatchSize)})
	if err != nil || len(rows) == 0 {
		return 0, false, err
	}
	leading := l.leading.Load()
	// The claim comes before the check of who is here, so a stream that subscribes
	// after the check replays this batch instead.
	to := Cursor{Tx: rows[len(rows)-1].Tx, ID: rows[len(rows)-1].ID}
	l.hub.Claim(to)
	raw := make([]eventRow, 0, len(rows))
	for _, r := range rows {
		if r.Type == "member_added" || r.Type == "member_removed" {
			l.members.forget(UUIDString(r.ConversationID)) // typing goes to the members of now
		}
		if !leading && !l.hub.Interested(r.Recipients) {
			continue
		}
		raw = append(raw, rowOf(r))
	}
	evs, err := l.renderAll(ctx, raw)
	if err != nil {
		return len(rows), false, err
	}
	l.hub.Publish(evs)
	if leading {
		l.forward(l.pos, to, evs)
	}
	l.published.Add(uint64(len(rows)))
	l.pos = to
	l.hub.SetHead(l.pos) // past any skipped row too
	return len(rows), len(rows) == l.cfg.BatchSize, nil
}

// forward hands the leader's read of (after, to] to sendLoop. When sendLoop is that far
// behind, the read is not forwarded: the followers find the gap and read it themselves.
func (l *Log) forward(after, to Cursor, evs []*Event) {
	select {
	case l.out <- packForward(l.instance, after, to, evs):
	default:
		l.lost.Add(1)
	}
}

// receiveForward hands a forward from the listener to the reader. One that cannot be
// decoded, or does not fit in the reader's queue, is dropped: the reader finds the gap.
func (l *Log) receiveForward(payload string) {
	f, err := parseForward(payload)
	if err != nil {
		l.lost.Add(1)
		l.cfg.Logger.Warn("dropping a forward that cannot be read", "err", err)
		return
	}
	if f.from == l.instance {
		return
	}
	select {
	case l.forwards <- f:
	default:
		l.lost.Add(1)
	}
}

// applyForward publishes what f holds after the reader's position. It reports false when
// the reader must read the log first: f starts after the position (a forward was missed)
// or its events were too large to forward. A forward of nothing new is ignored.
func (l *Log) applyForward(f *forward) bool {
	if !l.pos.Less(f.to) {
		return true
	}
	if l.pos.Less(f.after) || f.self {
		return false
	}
	evs := f.events
	for len(evs) > 0 && !l.pos.Less(evs[0].Cursor) {
		evs = evs[1:]
	}
	for _, e := range evs {
		if e.Type == "member_added" || e.Type == "member_removed" {
			l.members.forget(e.Conversation)
		}
	}
	l.hub.Publish(evs)
	l.published.Add(uint64(len(evs)))
	l.pos = f.to
	l.hub.SetHead(l.pos)
	return true
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

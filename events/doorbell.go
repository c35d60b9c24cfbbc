package events

// The doorbell: after commits, tell the other instances to read the log.

import (
	"context"
	"time"

	"github.com/chatd/chatd/db"
)

// sendLoop sends the doorbell and ephemeral events to the other instances. Rings that
// arrive while one is being sent, or within DoorbellInterval after it (or busyShare times
// as long as the last doorbell took, when PostgreSQL is busy), collapse into the next, so
// a burst of writes costs one notification, whatever its size: every NOTIFY is a commit
// that takes PostgreSQL's cluster-wide notification lock.
func (l *Log) sendLoop(ctx context.Context) {
	var lastRing time.Time
	var took time.Duration // the last doorbell's
	for {
		var channel, payload string
		if first := l.carry; first != nil {
			l.carry = nil
			channel, payload = ephemeralChannel, l.pack(first)
		} else {
			select {
			case <-ctx.Done():
				return
			case <-l.ring:
				if !pace(ctx, lastRing, busyPace(l.cfg.DoorbellInterval, took)) {
					return
				}
				lastRing = time.Now()
				channel, payload = doorbellChannel, l.instance
			case p := <-l.ephemeral:
				channel, payload = ephemeralChannel, l.pack(p)
			}
		}
		start := time.Now()
		err := l.q.Notify(ctx, db.NotifyParams{Channel: channel, Payload: payload})
		if err != nil && ctx.Err() == nil {
			l.cfg.Logger.Warn("notify other instances", "channel", channel, "err", err)
		}
		if channel == doorbellChannel {
			took = 0
			if err == nil {
				took = min(time.Since(start), busyWait/busyShare)
			}
		}
	}
}

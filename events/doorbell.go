package events

// The doorbell: after commits, tell the other instances to read the log.

import (
	"context"
	"time"

	"github.com/chatd/chatd/db"
)

// sendLoop sends the doorbell and ephemeral events to the other instances. Rings that
// arrive while one is being sent, or within DoorbellInterval after it, collapse into the
// next, so a burst of writes costs one notification, whatever its size: every NOTIFY is a
// commit that takes PostgreSQL's cluster-wide notification lock.
func (l *Log) sendLoop(ctx context.Context) {
	var lastRing time.Time
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
				if !pace(ctx, lastRing, l.cfg.DoorbellInterval) {
					return
				}
				lastRing = time.Now()
				channel, payload = doorbellChannel, l.instance
			case p := <-l.ephemeral:
				channel, payload = ephemeralChannel, l.pack(p)
			}
		}
		if err := l.q.Notify(ctx, db.NotifyParams{Channel: channel, Payload: payload}); err != nil && ctx.Err() == nil {
			l.cfg.Logger.Warn("notify other instances", "channel", channel, "err", err)
		}
	}
}

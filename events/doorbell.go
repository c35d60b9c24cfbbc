package events

// The doorbell: after commits, tell the other instances to read the log; and the leader's
// forwards.

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
			case p := <-l.out:
				l.sendForwards(ctx, p)
				continue
			}
		}
		start := time.Now()
		nctx, cancel := context.WithTimeout(ctx, l.cfg.QueryTimeout)
		err := l.q.Notify(nctx, db.NotifyParams{Channel: channel, Payload: payload})
		cancel()
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

// sendForwards sends the leader's forward payloads, first and whatever else is queued, in
// one transaction. Forwards that fail are lost to the followers, which read their ranges
// themselves.
func (l *Log) sendForwards(ctx context.Context, first []string) {
	payloads := first
	for more := true; more && len(payloads) < 256; {
		select {
		case p := <-l.out:
			payloads = append(payloads, p...)
		default:
			more = false
		}
	}
	nctx, cancel := context.WithTimeout(ctx, l.cfg.QueryTimeout)
	defer cancel()
	err := l.q.NotifyAll(nctx, db.NotifyAllParams{Channel: forwardChannel, Payloads: payloads})
	if err != nil && ctx.Err() == nil {
		l.lost.Add(1)
		l.cfg.Logger.Warn("forward what was read to the other instances", "err", err)
	}
}

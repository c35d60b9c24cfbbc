package events

// The listener: one LISTEN connection per instance, for the doorbell and ephemeral events.

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
)

// listenLoop holds the instance's LISTEN connection: connect, LISTEN, catch up, wait; ping
// when idle; on any failure reconnect with backoff and jitter and catch up again.
func (l *Log) listenLoop(ctx context.Context) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			backoff := min(100*time.Millisecond<<min(attempt-1, 6), 5*time.Second)
			backoff = backoff/2 + rand.N(backoff/2+1)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
		}
		err := l.listen(ctx, func() { attempt = 0 })
		if ctx.Err() == nil {
			l.cfg.Logger.Warn("event listener lost its connection; reconnecting", "err", err)
		}
	}
}

// listen runs one listener connection until it fails; connected is called once it listens.
func (l *Log) listen(ctx context.Context, connected func()) error {
	cfg, err := pgx.ParseConfig(l.cfg.ListenURL)
	if err != nil {
		return err
	}
	cfg.RuntimeParams["application_name"] = "chatd_listener" // findable in pg_stat_activity
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.ConnectConfig(cctx, cfg)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, ch := range []string{doorbellChannel, ephemeralChannel} {
		if _, err := conn.Exec(ctx, "LISTEN "+ch); err != nil {
			return err
		}
	}
	l.listening.Store(true)
	defer l.listening.Store(false)
	connected()
	signal(l.wake) // notifications sent while we were away are lost: read the log
	for {
		wctx, cancel := context.WithTimeout(ctx, l.cfg.PingAfter)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			pctx, cancel := context.WithTimeout(ctx, l.cfg.PingAfter)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
		case err != nil:
			return err
		case n.Channel == doorbellChannel:
			if n.Payload != l.instance {
				signal(l.wake)
			}
		case n.Channel == ephemeralChannel:
			l.receiveEphemeral(n.Payload)
		}
	}
}

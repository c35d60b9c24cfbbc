package events

// The listener: one LISTEN connection per instance, for the doorbell, ephemeral events and
// the leader's forwards; the leader's connection also holds the reader lock.

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chatd/chatd/db"
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
// The connection also holds the reader lock while this instance is the leader: the lock
// is a session's, so it is let go when the connection ends, however it ends (the process
// killed, the connection cut), and a follower takes it within LeaderRetry.
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
	// PostgreSQL's side of this connection holds the reader lock while this instance leads.
	// Should this instance's host vanish without closing it, the server would keep the
	// session (and the lock) until TCP gave up: two hours of system keepalive defaults when
	// idle. These make the server drop it within about half a minute.
	if _, err := conn.Exec(ctx, "SELECT set_config('tcp_keepalives_idle', '10', false), "+
		"set_config('tcp_keepalives_interval', '5', false), set_config('tcp_keepalives_count', '3', false), "+
		"set_config('tcp_user_timeout', '30000', false)"); err != nil {
		return err
	}
	// A follower needs no doorbells: the leader's forwards are its news. Each listener on
	// a channel costs PostgreSQL a wakeup (a transaction) per notification.
	for _, ch := range []string{ephemeralChannel, forwardChannel} {
		if _, err := conn.Exec(ctx, "LISTEN "+ch); err != nil {
			return err
		}
	}
	l.listening.Store(true)
	defer l.listening.Store(false)
	defer l.leading.Store(false)
	connected()
	q := db.New(conn)
	var tried time.Time // the last attempt to take the reader lock
	lead := func() error {
		tried = time.Now()
		got, err := q.TryLeadLog(ctx)
		if err != nil || !got {
			return err
		}
		// The leader is woken by the doorbell; its own forwards would only come back to it.
		for _, cmd := range []string{"LISTEN " + doorbellChannel, "UNLISTEN " + forwardChannel} {
			if _, err := conn.Exec(ctx, cmd); err != nil {
				return err
			}
		}
		l.leading.Store(true)
		l.cfg.Logger.Info("this instance now reads the event log for the cluster")
		signal(l.catchup) // from where this instance stands: followers skip what they have
		return nil
	}
	signal(l.catchup) // notifications sent while we were away are lost: read the log
	for {
		// Tried between notifications too: a follower that is never idle must still take
		// over from a leader that is gone.
		if !l.leading.Load() && time.Since(tried) >= l.cfg.LeaderRetry {
			if err := lead(); err != nil {
				return err
			}
		}
		idle := l.cfg.PingAfter
		if !l.leading.Load() {
			idle = min(idle, l.cfg.LeaderRetry-time.Since(tried))
		}
		wctx, cancel := context.WithTimeout(ctx, idle)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			if !l.leading.Load() && time.Since(tried) >= l.cfg.LeaderRetry {
				continue // the attempt at the top is a query: proof enough that the connection is alive
			}
			pctx, cancel := context.WithTimeout(ctx, l.cfg.PingAfter)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
		case err != nil:
			return err
		case n.Channel == forwardChannel:
			l.receiveForward(n.Payload)
		case n.Channel == doorbellChannel:
			if n.Payload != l.instance {
				signal(l.wake)
			}
		case n.Channel == ephemeralChannel:
			l.receiveEphemeral(n.Payload)
		}
	}
}

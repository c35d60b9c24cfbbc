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
	// Every query on this connection has PingAfter to answer: a connection that went
	// half-open would otherwise hold the listener (and readiness) for as long as TCP
	// retransmits, about a quarter of an hour.
	exec := func(sql string) error {
		qctx, cancel := context.WithTimeout(ctx, l.cfg.PingAfter)
		defer cancel()
		_, err := conn.Exec(qctx, sql)
		return err
	}
	// PostgreSQL's side of this connection holds the reader lock while this instance leads.
	// Should this instance's host vanish without closing it, the server would keep the
	// session (and the lock) until TCP gave up: two hours of system keepalive defaults when
	// idle. These make the server drop it within about half a minute.
	if err := exec("SELECT set_config('tcp_keepalives_idle', '10', false), " +
		"set_config('tcp_keepalives_interval', '5', false), set_config('tcp_keepalives_count', '3', false), " +
		"set_config('tcp_user_timeout', '30000', false)"); err != nil {
		return err
	}
	// A follower takes a doorbell only as a hint that a forward should follow (see
	// LeaderWait); the leader reads on it. PostgreSQL (15, async.c) wakes every listening
	// backend of the database for every notification, whatever its channel, so listening
	// to fewer channels would save the followers only the messages.
	for _, ch := range []string{doorbellChannel, ephemeralChannel, forwardChannel} {
		if err := exec("LISTEN " + ch); err != nil {
			return err
		}
	}
	l.listening.Store(true)
	defer l.listening.Store(false)
	defer l.leading.Store(false)
	defer l.stepDown.Store(nil)
	q := db.New(conn)
	// handOverLock lets the reader lock go and tells the followers, who try at once.
	handOverLock := func(ctx context.Context) error {
		hctx, cancel := context.WithTimeout(ctx, l.cfg.PingAfter)
		defer cancel()
		return q.HandOverLog(hctx, db.HandOverLogParams{Channel: doorbellChannel, Payload: handOver})
	}
	defer func() {
		if l.leading.Load() && ctx.Err() != nil { // stopping, not failing: hand over
			if err := handOverLock(context.Background()); err != nil {
				l.cfg.Logger.Warn("hand the event log over to another instance", "err", err)
			}
		}
	}()
	connected()
	var tried time.Time // the last attempt to take the reader lock
	// While this instance leads, waits end early when its reads keep failing (stepDown):
	// it resigns.
	leadCtx, endLead := ctx, context.CancelFunc(func() {})
	defer func() { endLead() }()
	lead := func() error {
		tried = time.Now()
		qctx, cancel := context.WithTimeout(ctx, l.cfg.PingAfter)
		got, err := q.TryLeadLog(qctx)
		cancel()
		if err != nil || !got {
			return err
		}
		// The leader's own forwards would only come back to it.
		if err := exec("UNLISTEN " + forwardChannel); err != nil {
			return err
		}
		leadCtx, endLead = context.WithCancel(ctx)
		stop := endLead // a copy: endLead changes with the next lead
		l.stepDown.Store(&stop)
		l.leading.Store(true)
		l.cfg.Logger.Info("this instance now reads the event log for the cluster")
		signal(l.catchup) // from where this instance stands: followers skip what they have
		return nil
	}
	// resign hands the lock over while this instance goes on as a follower. It does not
	// try to lead again while its reads fail (healthy).
	resign := func() error {
		l.resigned.Add(1)
		l.stepDown.Store(nil)
		endLead()
		leadCtx = ctx
		if err := handOverLock(ctx); err != nil {
			return err // the connection goes, and the lock with it
		}
		l.leading.Store(false)
		tried = time.Now()
		l.cfg.Logger.Warn("this instance's reads of the event log keep failing; another instance may read it for the cluster")
		return exec("LISTEN " + forwardChannel)
	}
	signal(l.catchup) // notifications sent while we were away are lost: read the log
	for {
		if l.leading.Load() && leadCtx.Err() != nil {
			if err := resign(); err != nil {
				return err
			}
		}
		// Tried between notifications too: a follower that is never idle must still take
		// over from a leader that is gone.
		retry := !l.leading.Load() && time.Since(tried) >= l.cfg.LeaderRetry
		if retry && l.healthy() {
			if err := lead(); err != nil {
				return err
			}
		} else if retry {
			tried = time.Now() // not while this instance's own reads fail
		}
		idle := l.cfg.PingAfter
		if !l.leading.Load() {
			idle = min(idle, l.cfg.LeaderRetry-time.Since(tried))
		}
		wctx, cancel := context.WithTimeout(leadCtx, idle)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil && leadCtx.Err() != nil:
			continue // stepDown: resign at the top
		case errors.Is(err, context.DeadlineExceeded):
			if !l.leading.Load() && time.Since(tried) >= l.cfg.LeaderRetry && l.healthy() {
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
		case n.Channel == doorbellChannel && n.Payload == handOver:
			if n.PID != conn.PgConn().PID() { // PostgreSQL tells a session of its own NOTIFYs too
				tried = time.Time{} // the leader let go of the lock: try now, not at LeaderRetry
				if !l.healthy() {
					signal(l.catchup) // a read tells whether this instance may lead
				}
			}
		case n.Channel == doorbellChannel:
			if n.Payload != l.instance {
				signal(l.wake)
			}
		case n.Channel == ephemeralChannel:
			l.receiveEphemeral(n.Payload)
		}
	}
}

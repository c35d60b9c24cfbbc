// Package events moves durable and ephemeral events from PostgreSQL to the streams of one
// instance: the log reader follows the events table by cursor below the commit fence
// (reader.go) on one instance of the cluster, which forwards what it read to the others
// (forward.go), NOTIFY rings a doorbell between instances (doorbell.go, listener.go), the
// hub routes rendered events (render.go) to subscribers (hub.go), and presence records who
// is connected anywhere (presence.go). It knows nothing of HTTP.
package events

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chatd/chatd/db"
)

// Channels of the doorbell, of ephemeral events and of the leader's forwards between
// instances.
const (
	doorbellChannel  = "chatd_events"
	ephemeralChannel = "chatd_ephemeral"
	forwardChannel   = "chatd_log"
)

// handOver is the doorbell of a leader that stops: it has let go of the reader lock, and
// the followers try to take it at once, so a rolling deploy leaves the cluster without a
// reader for a round trip rather than for LeaderRetry. (Not hex: no instance id.)
const handOver = "hand-over"

// Config tunes a Log. Zero values take the defaults noted on each field.
type Config struct {
	// Pool serves every query; the listener has a connection of its own.
	Pool *pgxpool.Pool
	// ListenURL is the listener's direct connection (LISTEN does not survive PgBouncer's
	// transaction pooling).
	ListenURL string
	// SafetyPoll reads the log even without a doorbell, so a lost notification delays
	// delivery by at most this long and never loses it. Default 1s.
	SafetyPoll time.Duration
	// PingAfter is how long the listener waits idle before it checks that its connection is
	// alive (TCP keepalive would take minutes to notice). Default 5s.
	PingAfter time.Duration
	// LeaderRetry is how often a follower tries to take the reader lock, so that another
	// instance reads the log for the cluster soon after its leader is gone. Default 1s.
	LeaderRetry time.Duration
	// LeaderWait is how long a follower waits, after a doorbell or a write of its own, for
	// a forward from the leader before it reads the log itself: without a leader, delivery
	// is this much later but continues. Default 200ms.
	LeaderWait time.Duration
	// DoorbellInterval is the least time between two doorbells: the other instances learn
	// of new events at most this much later, and a busy instance sends at most one NOTIFY
	// per interval. Default 2ms.
	DoorbellInterval time.Duration
	// QueryTimeout bounds each read of the log and each notification. A pool connection
	// that went half-open (a NAT or firewall that forgot it) would otherwise hold the
	// reader, or the doorbell and the leader's forwards, and with them delivery across the
	// cluster, for as long as TCP retransmits: about a quarter of an hour. Default 10s.
	QueryTimeout time.Duration
	// ResignAfter is how many reads of the log must fail in a row before the leader
	// resigns (resignAfter explains why). Default 3.
	ResignAfter int
	// ReadInterval is the least time between two reads of the log. Default 1ms.
	ReadInterval time.Duration
	// BatchSize is how many events one read of the log takes. Default 1000.
	BatchSize int
	// StreamBuffer is how many events a stream may fall behind before the hub cuts it
	// off. Default 1024.
	StreamBuffer int
	// StreamBufferBytes is how many bytes of event data a stream may fall behind before
	// the hub cuts it off: a few large events weigh as much as many small ones. Default
	// 1 MiB.
	StreamBufferBytes int
	// Online answers the participants' online flag of conversation events; nil means false.
	Online func(ctx context.Context, users []string) map[string]bool
	Logger *slog.Logger
}

// Log reads the durable event log and publishes what is new to the hub. NOTIFY is only a
// doorbell: rung after commits, coalesced, never inside a message's own transaction
// (DESIGN-NOTES.md §1); the log table is the truth, read by cursor. One instance of the
// cluster, the leader, reads the log for all and forwards what it read (forward.go); the
// others read it only to fill a gap.
type Log struct {
	cfg      Config
	q        *db.Queries
	hub      *Hub
	instance string // tags this instance's own notifications, which it skips

	wake      chan struct{} // something was written: the leader reads, a follower waits for a forward
	catchup   chan struct{} // read the log now, leader or not (a listener (re)connected)
	ring      chan struct{} // tell the other instances
	forwards  chan *forward // from the leader, for the reader
	out       chan []string // forward payloads, for sendLoop
	ephemeral chan []byte   // payloads for other instances
	carry     []byte        // an ephemeral payload that did not fit the last notification
	members   *memberCache  // recipients of conversation-addressed ephemeral events
	resolve   chan ephemeralMsg
	listened  chan struct{} // closed when the listener has ended, its lock handed over
	listening atomic.Bool
	leading   atomic.Bool                        // this instance holds the reader lock
	stepDown  atomic.Pointer[context.CancelFunc] // while leading: makes the listener resign
	readFails atomic.Int32                       // log reads failed in a row
	lastFail  atomic.Int64                       // when the last of them failed (Unix ns)
	resigned  atomic.Uint64                      // times this instance let the lock go because its reads failed
	published atomic.Uint64
	rings     atomic.Uint64
	reads     atomic.Uint64 // queries of the log by the reader
	lost      atomic.Uint64 // forwards not sent or not taken: their ranges are read again
	pos       Cursor        // owned by the reader goroutine
}

// NewLog returns a Log with the Hub it publishes to (see Hub). Call Start to run it.
func NewLog(cfg Config) *Log {
	orDefault(&cfg.SafetyPoll, time.Second)
	orDefault(&cfg.PingAfter, 5*time.Second)
	orDefault(&cfg.BatchSize, 1000)
	orDefault(&cfg.ReadInterval, time.Millisecond)
	orDefault(&cfg.QueryTimeout, 10*time.Second)
	orDefault(&cfg.ResignAfter, 3)
	orDefault(&cfg.DoorbellInterval, 2*time.Millisecond)
	orDefault(&cfg.LeaderRetry, time.Second)
	orDefault(&cfg.LeaderWait, 200*time.Millisecond)
	orDefault(&cfg.StreamBuffer, 1024)
	orDefault(&cfg.StreamBufferBytes, 1<<20)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	id := make([]byte, 8)
	_, _ = crand.Read(id) // crypto/rand never fails on supported platforms
	return &Log{
		cfg: cfg, q: db.New(db.WithoutJIT(cfg.Pool)), hub: NewHub(Limit{Events: cfg.StreamBuffer, Bytes: cfg.StreamBufferBytes}), instance: hex.EncodeToString(id),
		wake: make(chan struct{}, 1), catchup: make(chan struct{}, 1), ring: make(chan struct{}, 1),
		forwards: make(chan *forward, 1024), out: make(chan []string, 256), ephemeral: make(chan []byte, 1024),
		members: newMemberCache(), resolve: make(chan ephemeralMsg, 1024), listened: make(chan struct{}),
	}
}

// Start positions the hub at the log's current head, so that startup replays nothing, and
// runs the reader, the listener and the doorbell until ctx ends.
func (l *Log) Start(ctx context.Context) error {
	head, err := l.Head(ctx)
	if err != nil {
		return err
	}
	l.pos = head
	l.hub.SetHead(head)
	go l.readLoop(ctx)
	go func() {
		defer close(l.listened)
		l.listenLoop(ctx)
	}()
	go l.sendLoop(ctx)
	go l.resolveLoop(ctx)
	return nil
}

// Stopped is closed once the Log's context has ended and its listener with it: a leader
// has handed the reader lock over by then. A process waits for it (briefly) before it exits.
func (l *Log) Stopped() <-chan struct{} { return l.listened }

// Instance is this instance's id, which tags its notifications and presence rows.
func (l *Log) Instance() string { return l.instance }

// Hub is where the log publishes.
func (l *Log) Hub() *Hub { return l.hub }

// Published is the number of durable events this instance has read from the log.
func (l *Log) Published() uint64 { return l.published.Load() }

// Listening reports whether the listener holds a live connection (readiness).
func (l *Log) Listening() bool { return l.listening.Load() }

// Leading reports whether this instance reads the log for the cluster.
func (l *Log) Leading() bool { return l.leading.Load() }

// Reads is the number of queries of the log this instance's reader made.
func (l *Log) Reads() uint64 { return l.reads.Load() }

// Resignations is how many times this instance let the reader lock go because its reads
// of the log kept failing.
func (l *Log) Resignations() uint64 { return l.resigned.Load() }

// LostForwards is the number of forwards this instance did not send (as leader) or could
// not take (as follower); each costs the followers a read of its range.
func (l *Log) LostForwards() uint64 { return l.lost.Load() }

// Written is called after every write transaction ends, committed or not: it wakes this
// instance's reader and, unless this instance is the leader, rings the other instances'
// doorbell, which wakes the leader. A rolled-back transaction rings too, because it may
// have been holding back the fence over others' commits.
func (l *Log) Written() {
	l.rings.Add(1)
	signal(l.wake)
	if !l.leading.Load() {
		signal(l.ring)
	}
}

// A leader resigns when ResignAfter reads of the log in a row fail: its pool cannot reach
// PostgreSQL (its PgBouncer is down, say) while its listener's direct connection can, so
// it would hold the lock and forward nothing. It does not lead again until a read of its
// own works, or benched has passed since its last failed read (a follower may not read
// for a long time while forwards arrive).
const benched = 10 * time.Second

// readFailed counts a failed read of the log, and has a failing leader resign.
func (l *Log) readFailed() {
	l.lastFail.Store(time.Now().UnixNano())
	if l.readFails.Add(1) >= int32(l.cfg.ResignAfter) {
		if stop := l.stepDown.Load(); stop != nil {
			(*stop)()
		}
	}
}

// healthy reports whether this instance may lead: its reads of the log work, as far as it
// knows.
func (l *Log) healthy() bool {
	return l.readFails.Load() < int32(l.cfg.ResignAfter) || time.Since(time.Unix(0, l.lastFail.Load())) > benched
}

// Rings is how many times Written was called.
func (l *Log) Rings() uint64 { return l.rings.Load() }

// orDefault sets a setting left at zero (or below) to its default.
func orDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// pace waits until at least interval has passed since last; false when ctx ended first.
func pace(ctx context.Context, last time.Time, interval time.Duration) bool {
	wait := interval - time.Since(last)
	if wait <= 0 {
		return true
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Head returns the newest final position of the log.
func (l *Log) Head(ctx context.Context) (Cursor, error) {
	h, err := l.q.EventHead(ctx)
	if errors.Is(err, pgx.ErrNoRows) {
		f, err := l.q.EventFloor(ctx)
		return Cursor{Tx: f.Tx, ID: f.ID}, err
	}
	return Cursor{Tx: h.Tx, ID: h.ID}, err
}

// Resumable reports whether a stream may resume after c: c is a position the log handed
// out and nothing after it has been pruned. reason says why not ("expired", "unknown").
func (l *Log) Resumable(ctx context.Context, c Cursor) (ok bool, reason string, err error) {
	st, err := l.q.CursorStatus(ctx, db.CursorStatusParams{Tx: c.Tx, ID: c.ID})
	if err != nil {
		return false, "", err
	}
	floor := Cursor{Tx: st.FloorTx, ID: st.FloorID}
	switch {
	case c == floor:
		return true, "", nil
	case c.Less(floor):
		return false, "expired", nil
	case !st.Found:
		return false, "unknown", nil
	}
	return true, "", nil
}

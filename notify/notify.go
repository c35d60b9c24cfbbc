// Package notify tells an application, by a signed webhook, that a user who is away has
// unread messages. It follows the durable event log by a cursor of its own (scan.go),
// schedules a check per user on River, a PostgreSQL job queue (check.go), and delivers
// the digests the checks decide on, at least once, signed per the Standard Webhooks
// specification (deliver.go, sign.go). River's job locking makes one instance work a
// given job; its leader moves scheduled jobs along; jobs live in PostgreSQL, so nothing is
// lost when an instance dies or the database restarts. It knows nothing of HTTP requests
// to chatd.
package notify

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/chatd/chatd/db"
)

// Queue is the River queue of chatd's notification jobs.
const Queue = "chatd_notify"

// Config tunes a Notifier. Zero durations take the defaults noted on each field.
type Config struct {
	Pool   *pgxpool.Pool
	URL    string // the receiver (CHAT_WEBHOOK_URL)
	Secret []byte // the signing key (ParseSecret of CHAT_WEBHOOK_SECRET)
	Logger *slog.Logger

	// After is how long a user must be away with unread messages before a digest is sent
	// (CHAT_NOTIFY_AFTER). Default 60s.
	After time.Duration
	// Timeout bounds one delivery attempt, connection to answer. Default 10s.
	Timeout time.Duration
	// Backoff is the wait before the first retry; it doubles after every failed attempt up
	// to MaxBackoff. Defaults 10s and 1h.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// GiveUpAfter ends the retries of a webhook, counted from its creation. Default 24h.
	GiveUpAfter time.Duration
	// ScanInterval is how often the log is followed; a message's check is scheduled at
	// most this much late. Default 1s.
	ScanInterval time.Duration
	// PresenceStale is events.PresenceConfig.Stale: how old an instance's heartbeat may be
	// for its streams to count as online. Default 20s.
	PresenceStale time.Duration
	// Workers is how many jobs this instance works at once. Default 10.
	Workers int
	// PollOnly makes River poll for jobs instead of LISTENing, for a pool that goes
	// through PgBouncer in transaction mode.
	PollOnly bool
	// FetchPollInterval is how often River looks for jobs without a notification (every
	// retry shorter than River's scheduler interval relies on it). Default 1s.
	FetchPollInterval time.Duration
}

// Notifier runs the notification pipeline of one instance: the scanner and River's
// client, whose workers check users and deliver webhooks.
type Notifier struct {
	cfg       Config
	logger    *slog.Logger
	river     *river.Client[pgx.Tx]
	client    *http.Client
	now       func() time.Time
	delivered atomic.Uint64
	failed    atomic.Uint64
	stop      context.CancelFunc
	done      chan struct{}
}

// New returns a Notifier over cfg; Start runs it.
func New(cfg Config) (*Notifier, error) {
	if cfg.URL == "" || len(cfg.Secret) == 0 || cfg.Pool == nil {
		return nil, errors.New("notify: a pool, a URL and a secret are required")
	}
	orDefault(&cfg.After, time.Minute)
	orDefault(&cfg.Timeout, 10*time.Second)
	orDefault(&cfg.Backoff, 10*time.Second)
	orDefault(&cfg.MaxBackoff, time.Hour)
	orDefault(&cfg.GiveUpAfter, 24*time.Hour)
	orDefault(&cfg.ScanInterval, time.Second)
	orDefault(&cfg.PresenceStale, 20*time.Second)
	orDefault(&cfg.FetchPollInterval, time.Second)
	if cfg.Workers <= 0 {
		cfg.Workers = 10
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &Notifier{cfg: cfg, logger: cfg.Logger, client: newHTTPClient(cfg.Timeout), now: time.Now,
		done: make(chan struct{})}
	workers := river.NewWorkers()
	river.AddWorker(workers, &checkWorker{n: n})
	river.AddWorker(workers, &deliverWorker{n: n})
	jobTimeout := cfg.Timeout + 5*time.Second
	rc, err := river.NewClient(riverpgxv5.New(cfg.Pool), &river.Config{
		Queues:            map[string]river.QueueConfig{Queue: {MaxWorkers: cfg.Workers}},
		Workers:           workers,
		Logger:            cfg.Logger,
		PollOnly:          cfg.PollOnly,
		FetchCooldown:     min(river.FetchCooldownDefault, cfg.FetchPollInterval),
		FetchPollInterval: cfg.FetchPollInterval,
		JobTimeout:        jobTimeout,
		// A job still running this long after it began was orphaned by an instance that
		// died mid-attempt: River gives it to another.
		RescueStuckJobsAfter: jobTimeout + 2*time.Minute,
	})
	if err != nil {
		return nil, err
	}
	n.river = rc
	return n, nil
}

// Start places the cursor at the log's head on the very first start, then runs River's
// client and the scanner until Stop.
func (n *Notifier) Start(ctx context.Context) error {
	if err := db.New(n.cfg.Pool).NotifyCursorInit(ctx); err != nil {
		return err
	}
	if err := n.river.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	n.stop = stop
	go n.scanLoop(sctx)
	return nil
}

// Stop ends the scanner and lets the jobs in progress finish until ctx ends; then they are
// cancelled, and River retries them later (on another instance).
func (n *Notifier) Stop(ctx context.Context) error {
	if n.stop == nil {
		return nil // never started
	}
	n.stop()
	<-n.done
	err := n.river.Stop(ctx)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return n.river.StopAndCancel(context.Background())
	}
	return err
}

// Delivered is how many webhooks this instance delivered (a 2xx answer).
func (n *Notifier) Delivered() uint64 { return n.delivered.Load() }

// Collectors are the notifier's Prometheus metrics: attempts of this instance that were
// answered 2xx, and those that failed (each retried, until the give-up time).
func (n *Notifier) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "chatd_webhooks_delivered_total",
			Help: "Webhook attempts answered 2xx by the receiver."}, func() float64 { return float64(n.delivered.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "chatd_webhook_attempts_failed_total",
			Help: "Webhook attempts that failed (retried later)."}, func() float64 { return float64(n.failed.Load()) }),
	}
}

// Migrate is a db.MigrationStep: it applies River's next outstanding migration inside tx
// (db.Migrate runs it under chatd's migration lock, after schema.sql, until it is done).
// One migration per transaction, as River's own Migrate does; MigrateTx is the only way to
// run it in chatd's transaction, under chatd's lock.
func Migrate(ctx context.Context, tx pgx.Tx) (done bool, err error) {
	m, err := rivermigrate.New(riverpgxv5.New(nil), &rivermigrate.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return false, err
	}
	//nolint:staticcheck // see above: one step, in chatd's transaction
	res, err := m.MigrateTx(ctx, tx, rivermigrate.DirectionUp, &rivermigrate.MigrateOpts{MaxSteps: 1})
	if err != nil {
		return false, err
	}
	return len(res.Versions) == 0, nil
}

// orDefault sets a duration left at zero (or below) to its default.
func orDefault(v *time.Duration, def time.Duration) {
	if *v <= 0 {
		*v = def
	}
}

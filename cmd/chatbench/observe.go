package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// serverSample is the sum over the instances of what their /metrics say.
type serverSample struct {
	at      time.Time
	rss     float64 // process_resident_memory_bytes
	cpu     float64 // process_cpu_seconds_total
	streams float64 // chatd_streams_open
	read    float64 // chatd_events_read_total: durable events the log reader has fanned out
	// go_goroutines
	goroutines float64
	cpuBy      []float64 // process_cpu_seconds_total per instance, in -url's order
	err        error
}

// scrape reads every instance's /metrics.
func (b *bench) scrape(ctx context.Context) serverSample {
	s := serverSample{at: time.Now()}
	for _, u := range b.opt.urls {
		cpu := s.cpu
		if err := b.scrapeOne(ctx, u+"/metrics", &s); err != nil {
			s.err = fmt.Errorf("%s/metrics: %w", u, err)
			return s
		}
		s.cpuBy = append(s.cpuBy, s.cpu-cpu)
	}
	return s
}

func (b *bench) scrapeOne(ctx context.Context, u string, s *serverSample) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	if b.opt.metricsToken != "" {
		req.Header.Set("Authorization", "Bearer "+b.opt.metricsToken)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	found := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		var dst *float64
		switch name {
		case "process_resident_memory_bytes":
			dst = &s.rss
		case "process_cpu_seconds_total":
			dst = &s.cpu
		case "chatd_streams_open":
			dst = &s.streams
		case "chatd_events_read_total":
			dst = &s.read
		case "go_goroutines":
			dst = &s.goroutines
		default:
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		*dst += v
		found++
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if found < 2 {
		return fmt.Errorf("no process_resident_memory_bytes / process_cpu_seconds_total (not Linux?)")
	}
	return nil
}

// selfCPU is this process's CPU time so far (user + system).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// selfMaxRSS is this process's peak resident memory in bytes (Linux reports KiB).
func selfMaxRSS() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Maxrss) * 1024
}

// dbWatch counts chatd's PostgreSQL connections in pg_stat_activity: the pool's
// (application_name 'chatd') and the listeners' ('chatd_listener'), in -db's database.
// It is connected to the server's maintenance database when it can be, so that its own
// queries do not count in -db's statistics (cost.go measures those).
type dbWatch struct {
	mu      sync.Mutex
	conn    *pgx.Conn
	datname string // -db's database
	// own is true when conn is to -db's database itself (no maintenance database): its
	// queries are then among the database's transactions.
	own bool
	max dbSample
	n   int
	err error
	// The oldest transaction holding a transaction id anywhere in the cluster: chatd's
	// delivery fence (tx < pg_snapshot_xmin) waits for it, whatever its database.
	oldestXact    float64 // seconds, the most seen
	oldestXactWho string  // its database/application_name
}

type dbSample struct {
	pool     int // connections of chatd's pools, all instances
	busy     int // of those, not idle (running a query or in a transaction)
	listener int // LISTEN connections
}

func openDBWatch(ctx context.Context, url string) (*dbWatch, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["application_name"] = "chatbench"
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	w := &dbWatch{datname: cfg.Database}
	if cfg.Database != "postgres" {
		maint := cfg.Copy()
		maint.Database = "postgres"
		if w.conn, err = pgx.ConnectConfig(ctx, maint); err == nil {
			return w, nil
		}
		logf("-db: no maintenance database (%v): the watcher's own queries count in %s's statistics", err, cfg.Database)
	}
	if w.conn, err = pgx.ConnectConfig(ctx, cfg); err != nil {
		return nil, err
	}
	w.own = true
	return w, nil
}

func (w *dbWatch) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	_ = w.conn.Close(context.Background())
}

// sample counts the connections now and keeps the maxima.
func (w *dbWatch) sample(ctx context.Context) (dbSample, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var s dbSample
	err := w.conn.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE application_name = 'chatd'),
		       count(*) FILTER (WHERE application_name = 'chatd' AND state IS DISTINCT FROM 'idle'),
		       count(*) FILTER (WHERE application_name = 'chatd_listener')
		FROM pg_stat_activity WHERE datname = $1`, w.datname).Scan(&s.pool, &s.busy, &s.listener)
	if err != nil {
		if w.err == nil && ctx.Err() == nil {
			w.err = err
		}
		return s, err
	}
	var age float64
	var who string
	err = w.conn.QueryRow(ctx, `
		SELECT coalesce(extract(epoch FROM now() - xact_start), 0)::float8,
		       coalesce(datname, '') || '/' || coalesce(application_name, '')
		FROM pg_stat_activity
		WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
		ORDER BY xact_start LIMIT 1`).Scan(&age, &who)
	if err == nil && age > w.oldestXact {
		w.oldestXact, w.oldestXactWho = age, who
	}
	w.n++
	w.max.pool = max(w.max.pool, s.pool)
	w.max.busy = max(w.max.busy, s.busy)
	w.max.listener = max(w.max.listener, s.listener)
	return s, nil
}

// watch samples every interval until ctx ends.
func (w *dbWatch) watch(ctx context.Context, every time.Duration) {
	onTick(ctx, every, func() { _, _ = w.sample(ctx) })
}

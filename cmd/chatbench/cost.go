package main

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// What a load phase cost (-pg-cost): PostgreSQL's CPU, transactions, rows and statements,
// and each instance's CPU, per 1,000 accepted messages, so that runs with different rates or
// numbers of instances compare (issue 9: work per message must not grow with instances).

// CostResult is what the load phase cost, from just before the first send to the end of the
// drain (CPU and statements), or to -pg-settle after it (pg_stat_database, whose counters a
// backend flushes lazily).
type CostResult struct {
	WindowS  float64 `json:"window_s"`
	Messages int64   `json:"messages"` // accepted in the window: the "per 1,000 messages" divisor

	ChatdCPUPercent []float64 `json:"chatd_cpu_percent"` // per instance, of one core
	// PostgreSQL's CPU (utime+stime in /proc), of one core: every postgres process on the
	// machine (other databases' work included), and only -db's backends plus the
	// server's background processes.
	PGCPUPercent      float64 `json:"pg_cpu_percent"`
	PGCPUDBPercent    float64 `json:"pg_cpu_db_percent"`
	PGCPUMsPer1k      float64 `json:"pg_cpu_ms_per_1k"`
	PGCPUDBMsPer1k    float64 `json:"pg_cpu_db_ms_per_1k"`
	ChatdCPUMsPer1k   float64 `json:"chatd_cpu_ms_per_1k"` // all instances together
	PGCPUError        string  `json:"pg_cpu_error,omitempty"`
	PGProcesses       int     `json:"pg_processes"`
	PGProcessesOfDB   int     `json:"pg_processes_of_db"`
	StatsAfterSettleS float64 `json:"stats_after_settle_s"`
	// The pg_stat_database window: the load window and the settle after it, in which the
	// instances' idle work (a safety read of the log a second each, presence beats) counts too.
	StatsWindowS float64 `json:"stats_window_s"`

	// pg_stat_database of -db's database over its window, and per 1,000 messages.
	Stats      map[string]int64   `json:"pg_stat_database"`
	StatsPer1k map[string]float64 `json:"pg_stat_database_per_1k"`
	StatsError string             `json:"pg_stat_database_error,omitempty"`
	// The watcher had to use -db's own database: its queries (about 20 a second) are in Stats.
	WatcherInDB bool `json:"watcher_in_db,omitempty"`

	// pg_stat_statements of -db's database, when the server has it loaded; the most called
	// first. Statements is empty and StatementsNote says why otherwise.
	Statements     []StatementCost `json:"statements,omitempty"`
	StatementsNote string          `json:"statements_note,omitempty"`
}

// StatementCost is one statement's share of the window.
type StatementCost struct {
	Query       string  `json:"query"`
	Calls       int64   `json:"calls"`
	CallsPer1k  float64 `json:"calls_per_1k"`
	RowsPer1k   float64 `json:"rows_per_1k"`
	MeanExecMs  float64 `json:"mean_exec_ms"`
	TotalExecMs float64 `json:"total_exec_ms"`
}

// pgStatColumns are the pg_stat_database counters reported, in order.
var pgStatColumns = []string{"xact_commit", "xact_rollback", "tup_returned", "tup_fetched",
	"tup_inserted", "tup_updated", "tup_deleted", "blks_read", "blks_hit"}

// costProbe holds the window's first look.
type costProbe struct {
	b      *bench
	at     time.Time
	server serverSample
	cpu    map[int]int64 // postgres pid -> CPU ticks
	ofDB   map[int]bool  // pids of -db's backends and background processes
	stats  map[string]int64
	stmts  map[string]stmtCount
	local  bool // PostgreSQL runs on this machine (its /proc is ours)
	errs   map[string]error
}

// stmtCount is one pg_stat_statements entry.
type stmtCount struct {
	query       string
	calls, rows int64
	execMs      float64
}

// startCost waits -pg-settle for the setup's statistics to be flushed, then takes the
// window's first look.
func (b *bench) startCost(ctx context.Context) *costProbe {
	logf("cost: waiting %s for PostgreSQL's statistics to settle", b.opt.pgSettle)
	sleepCtx(ctx, b.opt.pgSettle)
	c := &costProbe{b: b, local: localDB(b.opt.dbURL), errs: map[string]error{}}
	c.stats, c.errs["stats"] = b.db.stats(ctx)
	c.stmts, c.errs["stmts"] = b.db.statements(ctx)
	c.ofDB = b.db.pidsOfDB(ctx)
	c.server = b.scrape(ctx)
	c.at = time.Now()
	c.cpu = postgresCPU()
	return c
}

// finish takes the window's last look once the load has drained: CPU and statements at
// once, pg_stat_database after -pg-settle more.
func (c *costProbe) finish(ctx context.Context, messages int64) *CostResult {
	b := c.b
	cpu := postgresCPU()
	at := time.Now()
	server := b.scrape(ctx)
	stmts, stmtErr := b.db.statements(ctx)
	for pid := range b.db.pidsOfDB(ctx) {
		c.ofDB[pid] = true
	}
	r := &CostResult{WindowS: at.Sub(c.at).Seconds(), Messages: messages, WatcherInDB: b.db.own}
	per1k := func(v float64) float64 { return 1000 * v / max(float64(messages), 1) }
	c.cpuShares(r, cpu, per1k)
	if server.err == nil && c.server.err == nil && len(server.cpuBy) == len(c.server.cpuBy) {
		var all float64
		for i := range server.cpuBy {
			d := server.cpuBy[i] - c.server.cpuBy[i]
			all += d
			r.ChatdCPUPercent = append(r.ChatdCPUPercent, 100*d/r.WindowS)
		}
		r.ChatdCPUMsPer1k = per1k(1000 * all)
	}
	switch {
	case c.errs["stmts"] != nil:
		r.StatementsNote = c.errs["stmts"].Error()
	case stmtErr != nil:
		r.StatementsNote = stmtErr.Error()
	default:
		r.Statements = statementDeltas(c.stmts, stmts, per1k)
	}

	logf("cost: waiting %s for PostgreSQL's statistics to settle", b.opt.pgSettle)
	sleepCtx(ctx, b.opt.pgSettle)
	r.StatsAfterSettleS = b.opt.pgSettle.Seconds()
	stats, err := b.db.stats(ctx)
	r.StatsWindowS = time.Since(c.at).Seconds()
	if err == nil {
		err = c.errs["stats"]
	}
	if err != nil {
		r.StatsError = err.Error()
		return r
	}
	r.Stats, r.StatsPer1k = map[string]int64{}, map[string]float64{}
	for _, k := range pgStatColumns {
		r.Stats[k] = stats[k] - c.stats[k]
		r.StatsPer1k[k] = per1k(float64(r.Stats[k]))
	}
	return r
}

// cpuShares fills in PostgreSQL's CPU over the window from two looks at /proc.
func (c *costProbe) cpuShares(r *CostResult, cpu map[int]int64, per1k func(float64) float64) {
	if !c.local {
		r.PGCPUError = "-db is not on this machine: its processes are not in this /proc"
		return
	}
	if len(cpu) == 0 {
		r.PGCPUError = "no postgres process found in /proc"
		return
	}
	var all, ofDB int64
	for pid, t := range cpu {
		d := t - c.cpu[pid] // a process started in the window: all of its time
		all += d
		r.PGProcesses++
		if c.ofDB[pid] {
			ofDB += d
			r.PGProcessesOfDB++
		}
	}
	secs := func(ticks int64) float64 { return float64(ticks) / clockTicks }
	r.PGCPUPercent, r.PGCPUDBPercent = 100*secs(all)/r.WindowS, 100*secs(ofDB)/r.WindowS
	r.PGCPUMsPer1k, r.PGCPUDBMsPer1k = per1k(1000*secs(all)), per1k(1000*secs(ofDB))
}

// statementDeltas is each statement's calls over the window, the most called first; the
// watcher's own statements and those called less than once per 1,000 messages are left out.
func statementDeltas(before, after map[string]stmtCount, per1k func(float64) float64) []StatementCost {
	var out []StatementCost
	for id, a := range after {
		bf := before[id]
		calls := a.calls - bf.calls
		if calls <= 0 || per1k(float64(calls)) < 1 || strings.Contains(a.query, "pg_stat_") {
			continue
		}
		exec := a.execMs - bf.execMs
		out = append(out, StatementCost{Query: a.query, Calls: calls, CallsPer1k: per1k(float64(calls)),
			RowsPer1k: per1k(float64(a.rows - bf.rows)), MeanExecMs: exec / float64(calls), TotalExecMs: exec})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Calls > out[j].Calls })
	return out
}

// stats reads -db's database's pg_stat_database counters.
func (w *dbWatch) stats(ctx context.Context) (map[string]int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	vals := make([]int64, len(pgStatColumns))
	dst := make([]any, len(vals))
	for i := range vals {
		dst[i] = &vals[i]
	}
	q := "SELECT " + strings.Join(pgStatColumns, ", ") + " FROM pg_stat_database WHERE datname = $1"
	if err := w.conn.QueryRow(ctx, q, w.datname).Scan(dst...); err != nil {
		return nil, fmt.Errorf("pg_stat_database: %w", err)
	}
	out := map[string]int64{}
	for i, k := range pgStatColumns {
		out[k] = vals[i]
	}
	return out, nil
}

// statements reads pg_stat_statements for -db's database, keyed by queryid. It needs the
// module loaded (shared_preload_libraries) and the extension created in the database the
// watcher is connected to or, failing that, in -db's own.
func (w *dbWatch) statements(ctx context.Context) (map[string]stmtCount, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var loaded bool
	err := w.conn.QueryRow(ctx, `SELECT 'pg_stat_statements' = ANY(string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ','))`).Scan(&loaded)
	if err != nil {
		return nil, fmt.Errorf("pg_stat_statements: %w", err)
	}
	if !loaded {
		return nil, fmt.Errorf("pg_stat_statements is not in shared_preload_libraries: no per-statement counts")
	}
	const q = `SELECT queryid::text, left(regexp_replace(query, '\s+', ' ', 'g'), 160), calls, rows, total_exec_time
		FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = $1 AND queryid IS NOT NULL`
	conn := w.conn
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements')`).Scan(&exists); err != nil {
		return nil, fmt.Errorf("pg_stat_statements: %w", err)
	}
	if !exists { // the view lives where the extension was created: try -db's database
		cfg := w.conn.Config().Copy()
		cfg.Database = w.datname
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("pg_stat_statements: %w", err)
		}
		defer c.Close(context.WithoutCancel(ctx))
		conn = c
	}
	rows, err := conn.Query(ctx, q, w.datname)
	if err != nil {
		return nil, fmt.Errorf("pg_stat_statements (CREATE EXTENSION pg_stat_statements in %s?): %w", w.datname, err)
	}
	out := map[string]stmtCount{}
	for rows.Next() {
		var id string
		var s stmtCount
		if err := rows.Scan(&id, &s.query, &s.calls, &s.rows, &s.execMs); err != nil {
			return nil, err
		}
		out[id] = s
	}
	return out, rows.Err()
}

// pidsOfDB are the server processes whose work is -db's: its backends, and the processes of
// no database (checkpointer, WAL writer, background writer, launchers).
func (w *dbWatch) pidsOfDB(ctx context.Context) map[int]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[int]bool{}
	rows, err := w.conn.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = $1 OR datname IS NULL`, w.datname)
	if err != nil {
		return out
	}
	defer rows.Close()
	for rows.Next() {
		var pid int
		if rows.Scan(&pid) == nil {
			out[pid] = true
		}
	}
	return out
}

// localDB reports whether -db's server is on this machine (loopback or a Unix socket).
func localDB(dbURL string) bool {
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		return false
	}
	if strings.HasPrefix(cfg.Host, "/") || cfg.Host == "localhost" {
		return true
	}
	ip := net.ParseIP(cfg.Host)
	return ip != nil && ip.IsLoopback()
}

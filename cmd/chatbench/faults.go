package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// -mode faults: real processes, real faults. Two chatd instances share a scratch database;
// clients post steadily (each sender prefers one instance) and every participant holds a
// stream (one side of each conversation on each instance). Then:
//
//  1. kill: instance B, which reads the event log for both (the leader: it started first
//     and took the reader lock), gets SIGKILL while messages are being posted to it; A
//     must take the lock over. A sender whose
//     POST fails with a connection error retries on the other instance with the same
//     client_id; a stream that ends resumes on the other instance by Last-Event-ID. B is
//     started again and its streams and senders go back to it.
//  2. term: the instance that now reads the log (A, after a kill) is stopped as in a
//     rolling deploy (SIGTERM): it ends its streams, finishes its requests and hands the
//     reader lock over; the other must take it, and the clients move as after a kill. It
//     is started again and its clients go back to it.
//  3. pg: PostgreSQL is stopped for -pg-down and started again while messages are being
//     posted. POSTs must get 503 with Retry-After meanwhile (and never another 5xx); the
//     senders retry after Retry-After; streams must deliver again once it is back.
//
// Then every acknowledged message (a 2xx answer) must appear exactly once in each of its two
// recipients' streams (duplicates are failures: no client-side deduplication) and exactly
// once in the history, seqs without gaps.
const (
	faultSteady     = 2500 * time.Millisecond // posting before each fault
	faultAfter      = 3 * time.Second         // posting after each fault
	faultMsgTimeout = 25 * time.Second        // a sender gives up on a message after this
	faultDrain      = 15 * time.Second        // deliveries after the last acknowledgement
	faultReady      = 20 * time.Second        // an instance or all streams getting ready
)

// checkFaults validates the flags of -mode faults.
func (o *options) checkFaults() error {
	if o.secret == "" {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		o.secret = hex.EncodeToString(b)
	}
	phases := strings.Split(o.phases, ",")
	for _, p := range phases {
		if p != "kill" && p != "term" && p != "pg" {
			return fmt.Errorf("-phases %q: want some of kill, term and pg", o.phases)
		}
	}
	pu, err := url.Parse(o.pgServer)
	switch {
	case o.chatdBin == "":
		return errors.New("-chatd (the chatd binary) is required")
	case slices.Contains(phases, "pg") && strings.TrimSpace(o.pgCtl) == "":
		return errors.New("-pg-ctl is required to restart PostgreSQL (or -phases kill,term)")
	case err != nil || !isLoopbackHost(pu.Hostname()):
		return fmt.Errorf("-pg %q: want a postgres:// URL on a loopback address", o.pgServer)
	case o.pooler != "" && !isLoopbackAddr(o.pooler):
		return fmt.Errorf("-pgbouncer %q: want host:port on a loopback address", o.pooler)
	case o.streams < 4 || o.streams%2 != 0:
		return errors.New("-streams must be even and at least 4")
	case o.rate <= 0 || o.clients < 1:
		return errors.New("-rate and -clients must be positive")
	case o.pgDown <= 0 || o.timeout <= 0:
		return errors.New("-pg-down and -timeout must be positive")
	}
	return nil
}

func isLoopbackAddr(hostPort string) bool {
	h, _, err := net.SplitHostPort(hostPort)
	return err == nil && isLoopbackHost(h)
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// faultRun is one run of -mode faults: its processes, clients and what they saw.
type faultRun struct {
	opt    options
	b      *bench
	inst   [2]*instance
	pg     *pgControl
	dbURL  string
	dropDB func()
	t      *tracker
	fp     *faultPoster
	fs     *faultStreams
	start  time.Time

	kill   *stopPhase   // nil when not run
	term   *stopPhase   // nil when not run
	pgr    *pgPhase     // nil when not run
	counts *faultCounts // what verify found

	historyPages int

	failures []string
}

// stopPhase is what a phase that stops the instance reading the log (kill, term) measured.
type stopPhase struct {
	signal      string // SIGKILL or SIGTERM
	victim      string // the instance stopped, and the other
	other       string
	at          time.Time
	pid         int
	displaced   int           // streams that were on the victim
	exited      time.Duration // until the process had ended
	streamsUp   time.Duration // until every stream was connected again; -1: never
	leaderUp    time.Duration // until the other read the log for both; -1: never
	postsBefore int64         // messages started before the signal
}

// pgPhase is what the PostgreSQL restart measured.
type pgPhase struct {
	stopAt, stopped, startAt, back time.Time
	readyAfter                     time.Duration // both /readyz 200 after back; -1: never
}

func (r *faultRun) fail(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	r.failures = append(r.failures, s)
	logf("FAIL: %s", s)
}

// runFaults runs -mode faults and returns the exit status: 0 when every check passed, 1 on
// a failed check, 2 when the run could not be set up. Whatever happens, it stops the
// instances, starts PostgreSQL again if it stopped it, and drops the scratch database.
func runFaults(parent context.Context, opt options) int {
	ctx, cancel := context.WithTimeout(parent, opt.timeout)
	defer cancel()
	r := &faultRun{opt: opt, start: time.Now()}
	if r.opt.workDir == "" {
		d, err := os.MkdirTemp("", "chatd-faults-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "chatbench:", err)
			return 2
		}
		defer os.RemoveAll(d)
		r.opt.workDir = d
	}
	r.pg = &pgControl{command: strings.Fields(opt.pgCtl), serverURL: opt.pgServer}
	err := r.setup(ctx)
	defer r.cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatbench: faults setup:", err)
		return 2
	}
	r.exercise(ctx)
	if ctx.Err() != nil {
		r.fail("the run did not finish within -timeout %s (or was interrupted)", opt.timeout)
	}
	r.verify(context.Background())
	r.report(os.Stdout)
	if len(r.failures) > 0 {
		return 1
	}
	return 0
}

// setup creates and migrates the database, starts both instances, creates the
// conversations and opens every stream.
func (r *faultRun) setup(ctx context.Context) error {
	opt := &r.opt
	dbURL, drop, err := scratchDatabase(ctx, opt.pgServer, opt.workDir)
	if err != nil {
		return fmt.Errorf("scratch database: %w", err)
	}
	r.dbURL = dbURL
	r.dropDB = drop
	env := map[string]string{
		"CHAT_DATABASE_URL": dbURL,
		"CHAT_JWT_SECRET":   opt.secret,
		"CHAT_RATE_LIMIT":   "0",
		// /metrics on the public address, to see which instance reads the log.
		"CHAT_METRICS_TOKEN": opt.secret + "-metrics",
		// Cleanup sends SIGTERM; the streams it ends resume nowhere, so do not wait long.
		"CHAT_SHUTDOWN_TIMEOUT": "2s",
	}
	if err := migrate(ctx, opt.chatdBin, chatdEnv(env)); err != nil {
		return err
	}
	if opt.pooler != "" {
		// Set up as the README's "Through PgBouncer" says for PgBouncer before 1.21: migrate
		// (above) created the database directly; the pools go through the pooler with the
		// statement mode it needs, each listener keeps a session of its own on PostgreSQL.
		env["CHAT_DATABASE_URL"], env["CHAT_LISTEN_DATABASE_URL"] = throughPooler(dbURL, opt.pooler), dbURL
		logf("pools through PgBouncer at %s (transaction mode), listeners direct", opt.pooler)
	}
	// B starts first and takes the reader lock before A starts: the kill below takes the
	// instance that reads the log for both.
	for _, k := range []int{1, 0} {
		name := []string{"A", "B"}[k]
		in, err := newInstance(name, opt.chatdBin, opt.workDir, env)
		if err != nil {
			return err
		}
		in.metricsToken = env["CHAT_METRICS_TOKEN"]
		r.inst[k] = in
		if err := in.start(ctx, faultReady); err != nil {
			return err
		}
		logf("chatd %s: pid %d on %s", name, in.cmd.Process.Pid, in.addr)
		if k == 1 && in.waitLeading(ctx, time.Now(), faultReady) < 0 {
			return fmt.Errorf("chatd B did not take the reader lock within %s", faultReady)
		}
	}
	opt.urls = []string{r.inst[0].url, r.inst[1].url}
	opt.sources = 0 // a few dozen streams need no extra source addresses
	res := &Result{Mode: opt.mode, RunID: opt.runID, Instances: opt.urls, Streams: opt.streams}
	r.b, err = newBench(ctx, *opt, res)
	if err != nil {
		return err
	}
	logf("run %s: %d conversations, %d streams over 2 instances, %.0f msgs/s from %d senders",
		opt.runID, opt.streams/2, opt.streams, opt.rate, opt.clients)
	if err := r.b.setup(ctx); err != nil {
		return err
	}
	// Room for the whole run at the target rate, with margin.
	r.t = newTracker(len(r.b.convs), int(opt.rate*opt.timeout.Seconds())+1000)
	r.t.record = true
	r.fs = startFaultStreams(ctx, r.b, r.t)
	if err := r.fs.waitUp(ctx, faultReady); err != nil {
		return err
	}
	logf("streams: %d ready", len(r.b.streams))
	return nil
}

// throughPooler is dbURL with its server replaced by the pooler at hostPort and
// default_query_exec_mode=exec, which PgBouncer in transaction mode before 1.21 needs.
func throughPooler(dbURL, hostPort string) string {
	u, _ := url.Parse(dbURL) // checked by scratchDatabaseURL
	u.Host = hostPort
	q := u.Query()
	q.Set("default_query_exec_mode", "exec")
	u.RawQuery = q.Encode()
	return u.String()
}

// chatdEnv is this process's environment without any CHAT_* variable, plus env: a stray
// setting of the caller's must not change what is tested.
func chatdEnv(env map[string]string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CHAT_") {
			out = append(out, kv)
		}
	}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// cleanup stops the streams and instances, starts PostgreSQL again if it is still stopped,
// and drops the database. It runs on every exit path.
func (r *faultRun) cleanup() {
	if r.fs != nil {
		r.fs.close()
	}
	if r.b != nil {
		r.b.close()
	}
	for _, in := range r.inst {
		if in != nil {
			in.stop(3 * time.Second)
		}
	}
	if err := r.pg.ensureRunning(); err != nil {
		fmt.Fprintln(os.Stderr, "chatbench: PostgreSQL could not be started again:", err)
	}
	if r.dropDB != nil {
		r.dropDB()
	}
}

// exercise posts steadily and injects the faults of -phases, one after the other.
func (r *faultRun) exercise(ctx context.Context) {
	r.fp = newFaultPoster(r.b, r.opt, r.t)
	r.fp.start(ctx)
	phases := strings.Split(r.opt.phases, ",")
	if slices.Contains(phases, "kill") && sleepCtx(ctx, faultSteady) {
		r.kill = r.stopPhase(ctx, "kill", syscall.SIGKILL)
	}
	if slices.Contains(phases, "term") && sleepCtx(ctx, faultSteady) {
		r.term = r.stopPhase(ctx, "term", syscall.SIGTERM)
	}
	if slices.Contains(phases, "pg") && sleepCtx(ctx, faultSteady) {
		r.pgPhase(ctx)
	}
	sleepCtx(ctx, faultAfter)
	logf("posting: stopping (senders finish what they have started)")
	r.fp.stop()
	r.drain(ctx)
	r.fs.close()
}

// stopPhase stops the instance that reads the log for both with sig, waits for the
// clients to move to the other and for it to take the reader lock, then starts the
// stopped one again and sends its streams and senders home.
func (r *faultRun) stopPhase(ctx context.Context, tag string, sig syscall.Signal) *stopPhase {
	v := r.leaderIndex(ctx)
	if v < 0 {
		r.fail("%s: neither instance reads the log for both", tag)
		return nil
	}
	victim, other := r.inst[v], r.inst[1-v]
	k := &stopPhase{signal: unix.SignalName(sig), victim: victim.name, other: other.name, pid: victim.cmd.Process.Pid,
		displaced: r.fs.on(v), postsBefore: r.fp.started(), exited: -1}
	logf("%s: %s to chatd %s (pid %d), the log's reader, with %d streams on it", tag, k.signal, victim.name, k.pid, k.displaced)
	k.at = time.Now()
	leader := make(chan time.Duration, 1)
	go func() { leader <- other.waitLeading(ctx, k.at, faultReady) }()
	if sig == syscall.SIGKILL {
		victim.kill()
	} else {
		victim.stop(faultReady)
	}
	if !victim.alive() {
		k.exited = time.Since(k.at)
	}
	k.streamsUp = r.fs.waitAllOn(ctx, 1-v, k.at, faultReady)
	if k.streamsUp < 0 {
		r.fail("%s: the %d streams of %s were not all connected to %s within %s", tag, k.displaced, victim.name, other.name, faultReady)
	} else {
		logf("%s: every stream connected to %s %.2fs after the signal", tag, other.name, k.streamsUp.Seconds())
	}
	if k.leaderUp = <-leader; k.leaderUp < 0 {
		r.fail("%s: %s did not take the reader lock over within %s", tag, other.name, faultReady)
	} else {
		logf("%s: %s reads the log for both %.2fs after the signal", tag, other.name, k.leaderUp.Seconds())
	}
	sleepCtx(ctx, faultAfter)
	logf("%s: starting chatd %s again", tag, victim.name)
	if err := victim.start(ctx, faultReady); err != nil {
		r.fail("%s: chatd %s did not start again: %v", tag, victim.name, err)
		return k
	}
	r.fp.goHome()
	r.fs.goHome()
	if !r.fs.waitHome(ctx, faultReady) {
		r.fail("%s: streams did not all reconnect to %s once it was back", tag, victim.name)
	}
	return k
}

// leaderIndex is the index of the instance that reads the log for both, -1 when neither
// does within faultReady.
func (r *faultRun) leaderIndex(ctx context.Context) int {
	for deadline := time.Now().Add(faultReady); ctx.Err() == nil && time.Now().Before(deadline); {
		for k, in := range r.inst {
			if in.waitLeading(ctx, time.Now(), 0) >= 0 {
				return k
			}
		}
		sleepCtx(ctx, 50*time.Millisecond)
	}
	return -1
}

// pgPhase stops PostgreSQL for -pg-down and starts it again, and waits until both
// instances are ready.
func (r *faultRun) pgPhase(ctx context.Context) {
	p := &pgPhase{readyAfter: -1}
	r.pgr = p
	logf("pg: stopping PostgreSQL")
	p.stopAt = time.Now()
	r.fp.pgDown.Store(true)
	if err := r.pg.stop(ctx); err != nil {
		r.fail("pg: %v", err)
	}
	p.stopped = time.Now()
	logf("pg: stopped in %.2fs; down for %s", p.stopped.Sub(p.stopAt).Seconds(), r.opt.pgDown)
	sleepCtx(ctx, r.opt.pgDown)
	p.startAt = time.Now()
	// Both instances' /readyz are polled from now on, so their recovery is timed against
	// the moment PostgreSQL accepted connections again, not against pg_ctlcluster's return.
	readyAt := make(chan time.Time, 1)
	go func() {
		var at time.Time
		for deadline := time.Now().Add(faultReady + 30*time.Second); ctx.Err() == nil && time.Now().Before(deadline); {
			if r.b.ready(ctx, r.inst[0].url) && r.b.ready(ctx, r.inst[1].url) {
				at = time.Now()
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		readyAt <- at
	}()
	// Start it even when the run's time is up: PostgreSQL must be running afterwards.
	back, err := r.pg.start(context.WithoutCancel(ctx))
	if err != nil {
		r.fail("pg: %v", err)
		return
	}
	p.back = back
	r.fp.pgDown.Store(false)
	logf("pg: accepting connections again %.2fs after the stop began (%s returned %.2fs later)",
		p.back.Sub(p.stopAt).Seconds(), strings.Join(r.pg.command, " "), time.Since(p.back).Seconds())
	if at := <-readyAt; !at.IsZero() {
		p.readyAfter = max(at.Sub(p.back), 0) // both are polled: either may see it first
		logf("pg: both instances ready %.2fs after PostgreSQL was back", p.readyAfter.Seconds())
	} else {
		r.fail("pg: /readyz not 200 on both instances within %s of PostgreSQL being back", faultReady)
	}
	for _, in := range r.inst {
		if !in.alive() {
			r.fail("pg: chatd %s exited during the PostgreSQL restart (see its log)", in.name)
		}
	}
}

// drain waits until the streams have received every acknowledged message twice (once per
// participant), or faultDrain, and a little longer for late duplicates.
func (r *faultRun) drain(ctx context.Context) {
	want := 2 * r.fp.ackedCount()
	start := time.Now()
	for r.t.delivered.Load() < want && time.Since(start) < faultDrain && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	logf("drain: %d of %d deliveries after %.2fs", r.t.delivered.Load(), want, time.Since(start).Seconds())
	sleepCtx(ctx, 300*time.Millisecond) // late duplicates would show up here
}

// sleepCtx sleeps for d or until ctx ends; it reports whether it slept the whole time.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// ready reports whether u/readyz answers 200.
func (b *bench) ready(ctx context.Context, u string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return b.callJSON(ctx, "GET", u+"/readyz", "", nil, nil) == nil
}

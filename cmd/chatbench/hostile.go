package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// -mode slowread, slowclients and soak start their own chatd processes (as -mode faults
// does, with its instance type) on a scratch database, so that they can read each
// process's memory and files from /proc, reach its pprof endpoints, and restart it.

// hostileRun is the processes and clients of one of those modes.
type hostileRun struct {
	opt   options
	b     *bench
	inst  []*instance
	debug []string          // each instance's CHAT_DEBUG_ADDR (pprof)
	mets  []string          // each instance's CHAT_METRICS_ADDR (/metrics)
	env   map[string]string // what every instance runs with
	drop  func()            // drops the scratch database
	rmDir bool              // the work directory is ours
}

// startHostile creates and migrates a scratch database, starts n instances with env (plus
// what every run needs), and creates -streams/2 direct conversations through them.
func startHostile(ctx context.Context, opt options, n int, env map[string]string) (*hostileRun, error) {
	r := &hostileRun{opt: opt}
	if r.opt.workDir == "" {
		d, err := os.MkdirTemp("", "chatd-hostile-")
		if err != nil {
			return r, err
		}
		r.opt.workDir, r.rmDir = d, true
	}
	dbURL, _, drop, err := scratchDatabaseURL(opt.pgServer, "chatd_hostile")
	if err != nil {
		return r, fmt.Errorf("scratch database: %w", err)
	}
	r.drop = drop
	env["CHAT_DATABASE_URL"] = dbURL
	env["CHAT_JWT_SECRET"] = opt.secret
	env["CHAT_RATE_LIMIT"] = "0"
	env["CHAT_SHUTDOWN_TIMEOUT"] = "2s"
	if r.opt.metricsToken == "" {
		r.opt.metricsToken = rand.Text() // the instances are ours: any token will do
	}
	env["CHAT_METRICS_TOKEN"] = r.opt.metricsToken
	if err := migrate(ctx, opt.chatdBin, chatdEnv(env)); err != nil {
		return r, err
	}
	r.opt.urls = nil // -url is not used: the instances are these
	r.env = env
	for k := 0; k < n; k++ {
		if err := r.startInstance(ctx); err != nil {
			return r, err
		}
	}
	res := &Result{Mode: opt.mode, RunID: opt.runID, Instances: r.opt.urls, Streams: opt.streams, DB: &DBResult{}}
	r.b, err = newBench(ctx, r.opt, res)
	if err != nil {
		return r, err
	}
	return r, r.b.setup(ctx)
}

// startInstance starts one more instance, named by its place (A, B, ...), and adds it to
// r.opt.urls.
func (r *hostileRun) startInstance(ctx context.Context) error {
	dbg, err := freeLoopbackAddr()
	if err != nil {
		return err
	}
	r.env["CHAT_DEBUG_ADDR"] = dbg
	// /metrics answers on an address of its own (chatd before 89e46cb ignores this and
	// answers on the public one).
	mets, err := freeLoopbackAddr()
	if err != nil {
		return err
	}
	r.env["CHAT_METRICS_ADDR"] = mets
	r.mets = append(r.mets, mets)
	in, err := newInstance(string(rune('A'+len(r.inst))), r.opt.chatdBin, r.opt.workDir, r.env)
	if err != nil {
		return err
	}
	r.inst = append(r.inst, in)
	r.debug = append(r.debug, dbg)
	if err := in.start(ctx, faultReady); err != nil {
		return err
	}
	logf("chatd %s: pid %d on %s (pprof on %s)", in.name, in.cmd.Process.Pid, in.addr, dbg)
	r.opt.urls = append(r.opt.urls, in.url)
	return nil
}

// cleanup stops the instances and drops the database; it runs on every exit path.
func (r *hostileRun) cleanup() {
	if r.b != nil {
		r.b.close()
	}
	for _, in := range r.inst {
		in.stop(3 * time.Second)
	}
	if r.drop != nil {
		r.drop()
	}
	if r.rmDir {
		os.RemoveAll(r.opt.workDir)
	}
}

// mintUsers makes n users "<run-id>-<prefix><i>" with tokens that outlive the run.
func (r *hostileRun) mintUsers(prefix string, n int) []*user {
	out := make([]*user, n)
	for i := range out {
		id := fmt.Sprintf("%s-%s%d", r.opt.runID, prefix, i)
		tok, _ := signToken(r.opt.secret, id, id, 3*time.Hour, time.Now())
		out[i] = &user{id: id, token: tok}
	}
	return out
}

// victimGroups mints victims and senders, and has each sender create a group with per of
// the victims (sender k: victims k*per onwards, wrapping around).
func (r *hostileRun) victimGroups(ctx context.Context, victims, senders, per int) (v, s []*user, groups []string, err error) {
	v, s = r.mintUsers("v", victims), r.mintUsers("s", senders)
	groups = make([]string, senders)
	for k, sender := range s {
		members := make([]*user, per)
		for i := range members {
			members[i] = v[(k*per+i)%victims]
		}
		if groups[k], err = r.createGroup(ctx, sender, members); err != nil {
			return nil, nil, nil, fmt.Errorf("group: %w", err)
		}
	}
	return v, s, groups, nil
}

// createGroup creates a group of owner and members on the first instance.
func (r *hostileRun) createGroup(ctx context.Context, owner *user, members []*user) (string, error) {
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = m.id
	}
	body, _ := json.Marshal(map[string]any{"participant_ids": ids, "title": "hostile " + owner.id})
	var out struct {
		ID string `json:"id"`
	}
	err := r.b.callJSON(ctx, http.MethodPost, r.opt.urls[0]+"/v1/conversations", owner.token, body, &out)
	return out.ID, err
}

// saveProfile fetches one pprof profile of instance k into the work directory.
func (r *hostileRun) saveProfile(ctx context.Context, k int, name, file string) {
	u := "http://" + r.debug[k] + "/debug/pprof/" + name
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := r.b.client.Do(req)
	if err != nil {
		logf("pprof %s: %v", name, err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(file)
	if err != nil {
		logf("pprof %s: %v", name, err)
		return
	}
	defer f.Close()
	_, _ = f.ReadFrom(resp.Body)
	logf("pprof %s of chatd %s saved to %s", name, r.inst[k].name, file)
}

// phaseResult is the normal users' load in one phase of -mode slowread or slowclients, and
// the server over that phase.
type phaseResult struct {
	Name     string          `json:"name"`
	Load     *LoadResult     `json:"load"`
	Delivery *DeliveryResult `json:"delivery"`
	Server   serverWindow    `json:"server"`
	// SecondsP99 is the delivery p99 (ms) of the messages scheduled in each second of the
	// phase: whether a tail comes from a few bursts or from all along.
	SecondsP99 []float64 `json:"seconds_p99_ms"`
	Error      string    `json:"error,omitempty"`
}

// loadPhase runs the normal users as -mode load does (every stream open, -rate msgs/s for
// -duration, open loop, then the drain), with attack (when not nil) started once their
// streams are ready and stopped after the drain.
func (r *hostileRun) loadPhase(ctx context.Context, s *sampler, name string, attack func(context.Context) (stop func())) phaseResult {
	b := r.b
	b.opt.runID = r.opt.runID + "-" + name // a client_id of one phase must not repeat another's
	n := int(b.opt.rate * b.opt.duration.Seconds())
	t := newTracker(len(b.convs), n)
	from := time.Now()
	g, _, _, err := b.openAll(ctx, t)
	defer g.close()
	if err != nil {
		return phaseResult{Name: name, Error: err.Error()}
	}
	stop := func() {}
	if attack != nil {
		stop = attack(ctx)
	}
	logf("%s: %d messages at %.0f/s over %s from the normal users", name, n, b.opt.rate, b.opt.duration)
	p := newPoster(b, n)
	p.openLoop(ctx, b.opt.rate)
	replied := time.Now()
	want := 2 * p.accepted.Load()
	for t.delivered.Load() < want && time.Since(replied) < b.opt.drain && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	drained := time.Since(replied)
	stop()
	to := time.Now()
	g.close()
	b.summariseStreams(t, g)
	b.summariseLoad(t, p, drained)
	pr := phaseResult{Name: name, Load: b.res.Load, Delivery: b.res.Delivery, Server: window(s.between(from, to)),
		SecondsP99: secondsP99(t, int(b.opt.rate))}
	logf("%s: delivery %s; lost %d, duplicates %d", name, qstr(pr.Load.DeliveryLatency), pr.Delivery.Lost, pr.Delivery.Duplicates)
	return pr
}

func (p phaseResult) String() string {
	if p.Error != "" {
		return p.Error
	}
	secs := make([]string, len(p.SecondsP99))
	for i, v := range p.SecondsP99 {
		secs[i] = strconv.FormatFloat(v, 'f', 0, 64)
	}
	return fmt.Sprintf("%.0f msgs/s accepted; delivery %s; POST %s; lost %d, duplicates %d\n    server: %s\n    delivery p99 by second (ms): %s",
		p.Load.AchievedRate, qstr(p.Load.DeliveryLatency), qstr(p.Load.PostLatency), p.Delivery.Lost, p.Delivery.Duplicates, p.Server,
		strings.Join(secs, " "))
}

// hostileModes are the modes that start their own instances, by -mode.
var hostileModes = map[string]func(context.Context, options) int{
	"slowread":    runSlowread,
	"slowclients": runSlowclients,
	"soak":        runSoak,
}

// checkHostile validates the flags of -mode slowread, slowclients and soak.
func (o *options) checkHostile() error {
	if o.secret == "" {
		o.secret = rand.Text() // the instances are this run's own
	}
	pu, err := url.Parse(o.pgServer)
	switch {
	case o.chatdBin == "":
		return errors.New("-chatd (the chatd binary) is required")
	case err != nil || !isLoopbackHost(pu.Hostname()):
		return fmt.Errorf("-pg %q: want a postgres:// URL on a loopback address", o.pgServer)
	case o.streams < 4 || o.streams%2 != 0:
		return errors.New("-streams must be even and at least 4")
	case o.rate <= 0 || o.duration <= 0 || o.clients < 1:
		return errors.New("-rate, -duration and -clients must be positive")
	case o.attackers < 0 || o.flood < 1 || o.soakFor <= 0 || o.sampleEvery <= 0:
		return errors.New("-attackers, -flood, -soak-for and -sample-every must be positive")
	case o.sources < 1 || o.sources > 250:
		return errors.New("-sources must be between 1 and 250: the attackers need source addresses")
	case o.attackerNice < -1 || o.attackerNice > 19 || o.attackerNice >= 0 && o.mode != "slowclients":
		return errors.New("-attacker-nice: 0 to 19, and only with -mode slowclients")
	case (o.attackOther || o.attackerCPUs != "") && o.attackerNice < 0:
		return errors.New("-attack-other-instance and -attacker-cpus need -attacker-nice (and -mode slowclients)")
	}
	return nil
}

// startVictims starts the one instance that -mode slowread and slowclients (mode) attack,
// with env, and mints the victims, the senders and their groups (victimGroups). A failure
// is reported on stderr before it is returned; r is to be cleaned up either way, as
// startHostile's is.
func startVictims(ctx context.Context, opt options, mode string, env map[string]string, victims, senders, per int) (r *hostileRun, v, s []*user, groups []string, err error) {
	r, err = startHostile(ctx, opt, 1, env)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatbench: "+mode+" setup:", err)
		return r, nil, nil, nil, err
	}
	v, s, groups, err = r.victimGroups(ctx, victims, senders, per)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatbench: "+mode+":", err)
	}
	return r, v, s, groups, err
}

// saveJSON writes a hostile mode's result to path (-json) when one is given; a failure
// is logged, as the result has already been printed.
func saveJSON(path string, res any) {
	if path == "" {
		return
	}
	if err := writeJSON(path, res); err != nil {
		logf("json: %v", err)
	}
}

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"time"
)

// Result is everything a run measured; printed as a table and written as JSON.
type Result struct {
	Mode      string   `json:"mode"`
	RunID     string   `json:"run_id"`
	Instances []string `json:"instances"`
	Streams   int      `json:"streams"`
	Clients   int      `json:"clients"`
	Sources   int      `json:"sources"`
	FileLimit uint64   `json:"file_limit"`

	SetupReaderS     float64 `json:"setup_reader_s"` // setup start .. the server had fanned out its conversation events
	StreamsReady     int64   `json:"streams_ready"`
	StreamOpenErrors int64   `json:"stream_open_errors"`
	StreamDrops      int64   `json:"stream_drops"`
	StreamError      string  `json:"stream_error,omitempty"`
	OpenSeconds      float64 `json:"open_seconds"`
	Resets           int64   `json:"resets"`

	Load      *LoadResult      `json:"load,omitempty"`
	Storm     *StormResult     `json:"storm,omitempty"`
	Delivery  *DeliveryResult  `json:"delivery,omitempty"`
	Server    ServerResult     `json:"server"`
	Heartbeat *HeartbeatResult `json:"heartbeat,omitempty"`
	DB        *DBResult        `json:"db,omitempty"`
	Pgbench   *PgbenchResult   `json:"pgbench,omitempty"`

	Budgets  []Budget `json:"budgets"`
	Failures []string `json:"failures"`
}

// Quantiles of a latency, in milliseconds.
type Quantiles struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

type LoadResult struct {
	TargetRate        float64          `json:"target_msgs_per_s"`
	AchievedRate      float64          `json:"achieved_msgs_per_s"` // accepted / (first send .. last reply)
	DurationS         float64          `json:"duration_s"`
	Scheduled         int64            `json:"scheduled"`
	Sent              int64            `json:"sent"`
	Accepted          int64            `json:"accepted"`
	Rejected          int64            `json:"rejected"`
	RejectedByStatus  map[string]int64 `json:"rejected_by_status,omitempty"`
	Errors            int64            `json:"errors"`
	Overload          int64            `json:"client_overload"`
	FirstError        string           `json:"first_error,omitempty"`
	SchedulerLagMaxMs float64          `json:"scheduler_lag_max_ms"`
	DrainS            float64          `json:"drain_s"` // last reply .. all delivered
	PostLatency       *Quantiles       `json:"post_latency"`
	DeliveryLatency   *Quantiles       `json:"delivery_latency"`
	// With several instances: deliveries by a stream on the instance the message was
	// posted to, and on another one (the cross-instance path).
	DeliverySameInstance  *Quantiles `json:"delivery_latency_same_instance,omitempty"`
	DeliveryOtherInstance *Quantiles `json:"delivery_latency_other_instance,omitempty"`
}

type StormResult struct {
	Missed       int        `json:"missed_per_conversation"`
	Posted       int64      `json:"posted"`
	Accepted     int64      `json:"accepted"`
	PostS        float64    `json:"post_s"`
	Reconnected  int64      `json:"reconnected"`
	CaughtUp     int64      `json:"caught_up"`
	AllCaughtUpS float64    `json:"all_caught_up_s"` // -1: not all within the wait
	Ready        *Quantiles `json:"ready"`           // reconnection .. `event: ready`, per stream
	CatchUp      *Quantiles `json:"catch_up"`        // reconnection .. last missed message, per stream
	FirstError   string     `json:"first_error,omitempty"`
	// The server's log reader at the reconnection: events not yet fanned out (from
	// chatd_events_read_total), and when it had read them all (-1: not within the wait).
	ReaderBehind float64 `json:"reader_behind_at_reconnect"`
	ReaderDoneS  float64 `json:"reader_done_s"`
}

type DeliveryResult struct {
	Expected       int64 `json:"expected"`  // 2 per accepted message
	Delivered      int64 `json:"delivered"` // of those, arrived (duplicates not counted)
	Lost           int64 `json:"lost"`
	Duplicates     int64 `json:"duplicates"`
	Misrouted      int64 `json:"misrouted"`
	SeqErrors      int64 `json:"seq_errors"`
	Unparsed       int64 `json:"unparsed"`
	Unacknowledged int64 `json:"unacknowledged"` // deliveries of messages whose POST did not answer 201
}

type ServerResult struct {
	RSSBaselineMiB     float64 `json:"rss_baseline_mib"`
	RSSOpenMiB         float64 `json:"rss_open_mib"`
	RSSEndMiB          float64 `json:"rss_end_mib"`
	RSSPerStreamKiB    float64 `json:"rss_per_stream_kib"`     // (open - baseline) / streams
	RSSPerStreamEndKiB float64 `json:"rss_per_stream_end_kib"` // (end - baseline) / streams
	StreamsOpen        float64 `json:"streams_open"`           // chatd_streams_open with the streams open
	CPUPercent         float64 `json:"cpu_percent"`            // of one core: idle window / load phase / storm
	ToolCPUPercent     float64 `json:"chatbench_cpu_percent"`
	ToolMaxRSSMiB      float64 `json:"chatbench_max_rss_mib"`
	Error              string  `json:"error,omitempty"`
}

type HeartbeatResult struct {
	ExpectedS float64 `json:"expected_s"`
	MaxGapS   float64 `json:"max_gap_s"` // per stream: the longest time without a ping
	P99GapS   float64 `json:"p99_gap_s"`
	P50GapS   float64 `json:"p50_gap_s"`
	Late      int     `json:"late_streams"` // max gap > expected + 2 s
	Pings     int64   `json:"pings"`
	OnTime    bool    `json:"on_time"`
}

type DBResult struct {
	Before      int    `json:"pool_before_streams"`
	WithStreams int    `json:"pool_with_streams"`
	AtEnd       int    `json:"pool_at_end,omitempty"`
	PoolMax     int    `json:"pool_max"`
	BusyMax     int    `json:"busy_max"`
	ListenerMax int    `json:"listener_max"`
	Samples     int    `json:"samples"`
	Error       string `json:"error,omitempty"`
	// The oldest open write transaction seen anywhere in the cluster (it holds back
	// chatd's delivery fence), seconds, and its database/application.
	OldestWriteXactS   float64 `json:"oldest_write_xact_s"`
	OldestWriteXactWho string  `json:"oldest_write_xact_who,omitempty"`
}

type PgbenchResult struct {
	Clients   int     `json:"clients"`
	Seconds   int     `json:"seconds"`
	BodyBytes int     `json:"body_bytes"`
	TPS       float64 `json:"tps"`
	Ratio     float64 `json:"service_ratio"` // accepted msgs/s ÷ tps
	Error     string  `json:"error,omitempty"`
}

// Budget is one of the budgets, judged on this run.
type Budget struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	OK    bool   `json:"ok"`
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }

// quantiles sorts ns (nanoseconds) and returns its nearest-rank quantiles in ms.
func quantiles(ns []int64) *Quantiles {
	if len(ns) == 0 {
		return nil
	}
	slices.Sort(ns)
	return &Quantiles{N: len(ns), P50: ms(rank(ns, 0.50)), P90: ms(rank(ns, 0.90)), P99: ms(rank(ns, 0.99)), Max: ms(ns[len(ns)-1])}
}

// rank is the nearest-rank q-quantile of sorted values.
func rank(sorted []int64, q float64) int64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func pct(cpu, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return 100 * cpu.Seconds() / wall.Seconds()
}

// summariseStreams records the streams' health and heartbeat gaps after the group ended.
func (b *bench) summariseStreams(t *tracker, g *streamGroup) {
	r := b.res
	r.StreamOpenErrors += t.failed.Load()
	r.StreamDrops += t.drops.Load()
	r.Resets += t.resets.Load()
	if t.firstErr != "" && r.StreamError == "" {
		r.StreamError = t.firstErr
	}
	var gaps []int64
	for _, s := range b.streams {
		if s.readyAt != 0 {
			gaps = append(gaps, s.maxGap)
		}
	}
	if len(gaps) == 0 {
		return
	}
	slices.Sort(gaps)
	hb := b.opt.heartbeat
	h := &HeartbeatResult{ExpectedS: hb.Seconds(), Pings: t.pings.Load(),
		MaxGapS: time.Duration(gaps[len(gaps)-1]).Seconds(), P99GapS: time.Duration(rank(gaps, 0.99)).Seconds(),
		P50GapS: time.Duration(rank(gaps, 0.50)).Seconds()}
	for _, gp := range gaps {
		if time.Duration(gp) > hb+2*time.Second {
			h.Late++
		}
	}
	h.OnTime = h.Late == 0
	r.Heartbeat = h
}

// checkDeliveries compares the deliveries with the accepted messages: two each.
func checkDeliveries(t *tracker, accepted []bool) *DeliveryResult {
	d := &DeliveryResult{Misrouted: t.misrouted.Load(), SeqErrors: t.seqErrs.Load(), Unparsed: t.unparsed.Load()}
	for i := range t.deliveries {
		n := int64(t.deliveries[i].Load())
		if !accepted[i] {
			d.Unacknowledged += n
			continue
		}
		d.Expected += 2
		d.Delivered += min(n, 2)
		d.Lost += max(2-n, 0)
		d.Duplicates += max(n-2, 0)
	}
	return d
}

// deliveryLatencies gathers the recorded arrival - scheduled times.
func deliveryLatencies(t *tracker) []int64 {
	var out []int64
	for i := range t.deliveries {
		n := min(int(t.deliveries[i].Load()), 2)
		out = append(out, t.latency[2*i:2*i+n]...)
	}
	return out
}

func (b *bench) summariseLoad(t *tracker, p *poster, drained time.Duration) {
	opt := b.opt
	l := &LoadResult{TargetRate: opt.rate, DurationS: opt.duration.Seconds(), Scheduled: int64(p.n),
		Accepted: p.accepted.Load(), Rejected: p.rejected.Load(), Errors: p.errs.Load(), Overload: p.overload.Load(),
		FirstError: p.firstErr, SchedulerLagMaxMs: ms(int64(p.lagMax)), DrainS: drained.Seconds(),
		RejectedByStatus: p.statuses()}
	l.Sent = l.Scheduled - l.Overload
	var lastDone int64
	var postLat []int64
	for i := 0; i < p.n; i++ {
		if p.ok[i] {
			postLat = append(postLat, p.postLat[i])
			lastDone = max(lastDone, p.doneAt[i])
		}
	}
	window := max(opt.duration, time.Duration(lastDone-p.start.UnixNano()))
	l.AchievedRate = float64(l.Accepted) / window.Seconds()
	l.PostLatency = quantiles(postLat)
	l.DeliveryLatency = quantiles(deliveryLatencies(t))
	if ni := len(opt.urls); ni > 1 {
		var same, other []int64
		for i := range t.deliveries {
			for k := 2 * i; k < 2*i+min(int(t.deliveries[i].Load()), 2); k++ {
				if int(t.slotInst[k]) == i%ni {
					same = append(same, t.latency[k])
				} else {
					other = append(other, t.latency[k])
				}
			}
		}
		l.DeliverySameInstance, l.DeliveryOtherInstance = quantiles(same), quantiles(other)
	}
	b.res.Load = l
	b.res.Delivery = checkDeliveries(t, p.ok[:p.n])
	if b.res.Pgbench != nil && b.res.Pgbench.TPS > 0 {
		b.res.Pgbench.Ratio = l.AchievedRate / b.res.Pgbench.TPS
	}
	b.chart = b.loadChart(t, p)
}

func (b *bench) summariseStorm(t *tracker, p *poster, postTook, took time.Duration) {
	s := &StormResult{Missed: b.opt.missed, Posted: int64(p.n), Accepted: p.accepted.Load(), PostS: postTook.Seconds(),
		Reconnected: t.ready.Load(), CaughtUp: t.caughtUp.Load(), AllCaughtUpS: -1, FirstError: p.firstErr}
	var times, ready []int64
	for _, st := range b.streams {
		if st.caughtUpAt != 0 {
			times = append(times, st.caughtUpAt-t.start)
		}
		if st.readyAt != 0 {
			ready = append(ready, st.readyAt-t.start)
		}
	}
	s.Ready = quantiles(ready)
	s.CatchUp = quantiles(slices.Clone(times))
	if s.CaughtUp == int64(len(b.streams)) && s.CatchUp != nil {
		s.AllCaughtUpS = s.CatchUp.Max / 1000
	}
	b.res.Storm = s
	b.res.Delivery = checkDeliveries(t, p.ok)
	b.chart = b.stormChart(times, took)
}

func (b *bench) summariseServer(base, open, end, cpuFrom, cpuTo serverSample) {
	r := &b.res.Server
	for _, s := range []serverSample{base, open, end, cpuFrom, cpuTo} {
		if s.err != nil {
			r.Error = s.err.Error()
			return
		}
	}
	const mib = 1 << 20
	n := float64(len(b.streams))
	r.RSSBaselineMiB = base.rss / mib
	r.RSSOpenMiB = open.rss / mib
	r.RSSEndMiB = end.rss / mib
	r.RSSPerStreamKiB = (open.rss - base.rss) / n / 1024
	r.RSSPerStreamEndKiB = (end.rss - base.rss) / n / 1024
	r.StreamsOpen = open.streams
	if wall := cpuTo.at.Sub(cpuFrom.at).Seconds(); wall > 0 {
		r.CPUPercent = 100 * (cpuTo.cpu - cpuFrom.cpu) / wall
	}
}

// summariseDB copies the connection counts (nil without -db).
func (b *bench) summariseDB() {
	if b.db == nil {
		b.res.DB = nil
		return
	}
	d := b.res.DB
	b.db.mu.Lock()
	d.PoolMax, d.BusyMax, d.ListenerMax, d.Samples = b.db.max.pool, b.db.max.busy, b.db.max.listener, b.db.n
	d.OldestWriteXactS, d.OldestWriteXactWho = b.db.oldestXact, b.db.oldestXactWho
	if b.db.err != nil {
		d.Error = b.db.err.Error()
	}
	b.db.mu.Unlock()
}

// judge lists what makes the run fail (loss, duplicates and their kin) and the budgets.
func (r *Result) judge(opt options) {
	fail := func(cond bool, format string, args ...any) {
		if cond {
			r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
		}
	}
	if d := r.Delivery; d != nil {
		fail(d.Lost > 0, "%d deliveries lost (of %d expected)", d.Lost, d.Expected)
		fail(d.Duplicates > 0, "%d duplicate deliveries", d.Duplicates)
		fail(d.Misrouted > 0, "%d messages delivered to a stream of another conversation", d.Misrouted)
		fail(d.SeqErrors > 0, "%d messages out of seq order or after a gap", d.SeqErrors)
		fail(d.Unparsed > 0, "%d message events not from this run", d.Unparsed)
	}
	fail(r.StreamOpenErrors > 0, "%d streams failed to open", r.StreamOpenErrors)
	fail(r.StreamDrops > 0, "%d streams ended by the server during the run", r.StreamDrops)
	fail(r.Resets > 0, "%d reset events", r.Resets)
	if s := r.Storm; s != nil {
		fail(s.CaughtUp < int64(r.Streams), "%d of %d streams caught up within %s", s.CaughtUp, r.Streams, stormWait)
	}

	budget := func(name, value string, ok bool) {
		r.Budgets = append(r.Budgets, Budget{Name: name, Value: value, OK: ok})
	}
	if l := r.Load; l != nil {
		if p := r.Pgbench; p != nil && p.TPS > 0 {
			budget("throughput >= 1.0x pgbench INSERT tps", fmt.Sprintf("%.2fx", p.Ratio), p.Ratio >= 1.0)
		}
		if q := l.DeliveryLatency; q != nil {
			budget("delivery p50 <= 5 ms (at half the max rate)", fmt.Sprintf("%.2f ms", q.P50), q.P50 <= 5)
			budget("delivery p99 <= 50 ms (at half the max rate)", fmt.Sprintf("%.2f ms", q.P99), q.P99 <= 50)
		}
	}
	if r.Mode == "idle" && r.Server.Error == "" {
		budget("RSS per idle stream <= 16 KiB", fmt.Sprintf("%.1f KiB", r.Server.RSSPerStreamKiB), r.Server.RSSPerStreamKiB <= 16)
		name := "idle CPU <= 10 % of one core"
		if opt.heartbeat < 15*time.Second {
			name += fmt.Sprintf(" (the budget assumes the 15s heartbeat; this run: %s)", opt.heartbeat)
		}
		budget(name, fmt.Sprintf("%.1f %%", r.Server.CPUPercent), r.Server.CPUPercent <= 10)
	}
	if h := r.Heartbeat; h != nil && r.Mode == "idle" {
		budget(fmt.Sprintf("heartbeats on time (max gap <= %gs)", h.ExpectedS+2), fmt.Sprintf("max %.2fs, %d late", h.MaxGapS, h.Late), h.OnTime)
	}
	if s := r.Storm; s != nil {
		budget("storm: all caught up within 10 s", fmt.Sprintf("%.2f s", s.AllCaughtUpS), s.AllCaughtUpS >= 0 && s.AllCaughtUpS <= 10)
	}
	if d := r.DB; d != nil && d.Samples > 0 {
		limit := opt.poolCap * len(r.Instances)
		budget(fmt.Sprintf("DB pool connections <= cap (%d x %d instances)", opt.poolCap, len(r.Instances)),
			fmt.Sprintf("max %d", d.PoolMax), d.PoolMax <= limit)
	}
}

// printTable writes the human-readable report.
func printTable(w io.Writer, r *Result, opt options) {
	var rows [][2]string
	row := func(k, format string, args ...any) { rows = append(rows, [2]string{k, fmt.Sprintf(format, args...)}) }
	row("chatbench", "%s, run %s, %s", r.Mode, r.RunID, strings.Join(r.Instances, " "))
	row("setup", "%d conversations; the server's log reader fanned out their events %.2fs after setup began",
		r.Streams/2, r.SetupReaderS)
	row("streams", "%d ready of %d (%d failed to open, %d dropped, %d resets), opened in %.1fs; %d source addrs; file limit %d",
		r.StreamsReady, r.Streams, r.StreamOpenErrors, r.StreamDrops, r.Resets, r.OpenSeconds, r.Sources, r.FileLimit)
	if r.StreamError != "" {
		row("stream error", "%s", r.StreamError)
	}
	if l := r.Load; l != nil {
		row("rate", "target %.0f msgs/s, achieved %.1f msgs/s accepted (%.0fs, %d clients max in flight)",
			l.TargetRate, l.AchievedRate, l.DurationS, r.Clients)
		row("posts", "scheduled %d, sent %d, accepted %d, rejected %d%s, errors %d, client overload %d",
			l.Scheduled, l.Sent, l.Accepted, l.Rejected, statusList(l.RejectedByStatus), l.Errors, l.Overload)
		if l.FirstError != "" {
			row("first error", "%s", l.FirstError)
		}
		row("POST latency", "%s", qstr(l.PostLatency))
		row("delivery latency", "%s", qstr(l.DeliveryLatency))
		if l.DeliverySameInstance != nil || l.DeliveryOtherInstance != nil {
			row("  same instance", "%s", qstr(l.DeliverySameInstance))
			row("  other instance", "%s", qstr(l.DeliveryOtherInstance))
		}
		row("scheduler", "worst launch lag %.2f ms; drain after last reply %.3fs", l.SchedulerLagMaxMs, l.DrainS)
	}
	if s := r.Storm; s != nil {
		row("storm posts", "%d missed x %d conversations: %d of %d accepted in %.1fs (%.0f/s)",
			s.Missed, r.Streams/2, s.Accepted, s.Posted, s.PostS, float64(s.Accepted)/max(s.PostS, 1e-9))
		if s.FirstError != "" {
			row("first error", "%s", s.FirstError)
		}
		all := "NOT all"
		if s.AllCaughtUpS >= 0 {
			all = fmt.Sprintf("all in %.3fs", s.AllCaughtUpS)
		}
		row("storm catch-up", "%d reconnected, %d caught up, %s", s.Reconnected, s.CaughtUp, all)
		row("  server reader", "%.0f missed events not yet read from the log at the reconnection; all read at +%.2fs (-1: not seen)",
			s.ReaderBehind, s.ReaderDoneS)
		row("  to ready", "%s", qstr(s.Ready))
		row("  to caught up", "%s", qstr(s.CatchUp))
	}
	if d := r.Delivery; d != nil {
		row("deliveries", "%d of %d expected; lost %d, duplicates %d, misrouted %d, seq errors %d, unparsed %d, unacknowledged %d",
			d.Delivered, d.Expected, d.Lost, d.Duplicates, d.Misrouted, d.SeqErrors, d.Unparsed, d.Unacknowledged)
	}
	if sv := r.Server; sv.Error != "" {
		row("server", "metrics unavailable: %s", sv.Error)
	} else {
		window := map[string]string{"load": "load phase", "idle": "idle window", "storm": "storm"}[r.Mode]
		row("server RSS", "%.1f MiB before streams, %.1f MiB open (%.0f streams): %.2f KiB/stream; %.1f MiB at end (%.2f KiB/stream)",
			sv.RSSBaselineMiB, sv.RSSOpenMiB, sv.StreamsOpen, sv.RSSPerStreamKiB, sv.RSSEndMiB, sv.RSSPerStreamEndKiB)
		row("CPU", "server %.1f %% of one core over the %s; chatbench %.1f %% (chatbench peak RSS %.0f MiB)",
			sv.CPUPercent, window, sv.ToolCPUPercent, sv.ToolMaxRSSMiB)
	}
	if h := r.Heartbeat; h != nil {
		row("heartbeats", "expected every %gs: per-stream max gap p50 %.2fs, p99 %.2fs, max %.2fs; %d late (> %gs); %d pings",
			h.ExpectedS, h.P50GapS, h.P99GapS, h.MaxGapS, h.Late, h.ExpectedS+2, h.Pings)
	}
	if d := r.DB; d != nil {
		row("DB connections", "chatd pool %d before streams, %d with streams, max %d (max busy %d); listener max %d; %d samples %s",
			d.Before, d.WithStreams, d.PoolMax, d.BusyMax, d.ListenerMax, d.Samples, d.Error)
		row("  oldest write xact", "%.3fs (%s): anything in the cluster that holds a transaction id this long delays every delivery",
			d.OldestWriteXactS, d.OldestWriteXactWho)
	}
	if p := r.Pgbench; p != nil {
		if p.Error != "" {
			row("pgbench", "failed: %s", p.Error)
		} else {
			note := ""
			if l := r.Load; l != nil && l.Overload == 0 && l.AchievedRate >= 0.97*l.TargetRate {
				note = " (the service kept up with -rate: offer more to measure its capacity)"
			}
			row("pgbench", "%.1f tps single-row INSERT (%d clients, %ds, %d-byte body); service/pgbench = %.2fx%s",
				p.TPS, p.Clients, p.Seconds, p.BodyBytes, p.Ratio, note)
		}
	}
	for _, bu := range r.Budgets {
		mark := "PASS"
		if !bu.OK {
			mark = "MISS"
		}
		row("budget", "[%s] %s: %s", mark, bu.Name, bu.Value)
	}
	if len(r.Failures) == 0 {
		row("RESULT", "OK: nothing lost or duplicated")
	} else {
		row("RESULT", "FAILED: %s", strings.Join(r.Failures, "; "))
	}
	width := 0
	for _, rw := range rows {
		width = max(width, len(rw[0]))
	}
	fmt.Fprintln(w, strings.Repeat("-", 100))
	for _, rw := range rows {
		fmt.Fprintf(w, "%-*s  %s\n", width, rw[0], rw[1])
	}
	fmt.Fprintln(w, strings.Repeat("-", 100))
}

func qstr(q *Quantiles) string {
	if q == nil {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  max %s  (n=%d)", msStr(q.P50), msStr(q.P90), msStr(q.P99), msStr(q.Max), q.N)
}

func msStr(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.2fs", v/1000)
	case v >= 10:
		return fmt.Sprintf("%.1fms", v)
	default:
		return fmt.Sprintf("%.2fms", v)
	}
}

func statusList(m map[string]int64) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s:%d", k, m[k]))
	}
	return " (" + strings.Join(parts, " ") + ")"
}

func writeJSON(path string, r any) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

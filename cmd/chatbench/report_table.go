package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// printTable writes the human-readable report: one row per figure, in the order a reader
// checks a run (what ran, what was delivered, what it cost, the verdict).
func printTable(w io.Writer, r *Result, opt options) {
	var t table
	t.row("chatbench", "%s, run %s, %s", r.Mode, r.RunID, strings.Join(r.Instances, " "))
	t.row("setup", "%d conversations; the server's log reader fanned out their events %.2fs after setup began",
		r.Streams/2, r.SetupReaderS)
	t.row("streams", "%d ready of %d (%d failed to open, %d dropped, %d resets), opened in %.1fs; %d source addrs; file limit %d",
		r.StreamsReady, r.Streams, r.StreamOpenErrors, r.StreamDrops, r.Resets, r.OpenSeconds, r.Sources, r.FileLimit)
	if r.StreamError != "" {
		t.row("stream error", "%s", r.StreamError)
	}
	t.loadRows(r)
	t.stormRows(r)
	if d := r.Delivery; d != nil {
		t.row("deliveries", "%d of %d expected; lost %d, duplicates %d, misrouted %d, seq errors %d, unparsed %d, unacknowledged %d",
			d.Delivered, d.Expected, d.Lost, d.Duplicates, d.Misrouted, d.SeqErrors, d.Unparsed, d.Unacknowledged)
	}
	t.serverRows(r)
	t.verdictRows(r)
	t.write(w)
}

// table holds the report's rows: a name and its formatted figures.
type table [][2]string

func (t *table) row(k, format string, args ...any) {
	*t = append(*t, [2]string{k, fmt.Sprintf(format, args...)})
}

// loadRows reports -mode load: the offered and accepted rate and the latencies.
func (t *table) loadRows(r *Result) {
	if l := r.Load; l != nil {
		t.row("rate", "target %.0f msgs/s, achieved %.1f msgs/s accepted (%.0fs, %d clients max in flight)",
			l.TargetRate, l.AchievedRate, l.DurationS, r.Clients)
		t.row("posts", "scheduled %d, sent %d, accepted %d, rejected %d%s, errors %d, client overload %d",
			l.Scheduled, l.Sent, l.Accepted, l.Rejected, statusList(l.RejectedByStatus), l.Errors, l.Overload)
		if l.FirstError != "" {
			t.row("first error", "%s", l.FirstError)
		}
		t.row("POST latency", "%s", qstr(l.PostLatency))
		t.row("delivery latency", "%s", qstr(l.DeliveryLatency))
		if l.DeliverySameInstance != nil || l.DeliveryOtherInstance != nil {
			t.row("  same instance", "%s (the sender's own stream)", qstr(l.DeliverySameInstance))
			t.row("  other instance", "%s (the recipient's stream)", qstr(l.DeliveryOtherInstance))
		}
		t.row("  to the recipient", "%s", qstr(l.DeliveryRecipient))
		held := "NOT held"
		if l.Held {
			held = "held"
		}
		t.row("rate held", "%s: %s (held = >= %.0f %% of scheduled messages reach their recipient, recipient p99 <= %s)",
			held, l.HeldWhy, 100*heldDelivered, heldP99)
		t.row("scheduler", "worst launch lag %.2f ms; drain after last reply %.3fs", l.SchedulerLagMaxMs, l.DrainS)
	}
}

// stormRows reports -mode storm: the missed posts and how fast the reconnected streams caught up.
func (t *table) stormRows(r *Result) {
	if s := r.Storm; s != nil {
		t.row("storm posts", "%d missed x %d conversations: %d of %d accepted in %.1fs (%.0f/s)",
			s.Missed, r.Streams/2, s.Accepted, s.Posted, s.PostS, float64(s.Accepted)/max(s.PostS, 1e-9))
		if s.FirstError != "" {
			t.row("first error", "%s", s.FirstError)
		}
		all := "NOT all"
		if s.AllCaughtUpS >= 0 {
			all = fmt.Sprintf("all in %.3fs", s.AllCaughtUpS)
		}
		t.row("storm catch-up", "%d reconnected, %d caught up, %s", s.Reconnected, s.CaughtUp, all)
		t.row("  server reader", "%.0f missed events not yet read from the log at the reconnection; all read at +%.2fs (-1: not seen)",
			s.ReaderBehind, s.ReaderDoneS)
		t.row("  to ready", "%s", qstr(s.Ready))
		t.row("  to caught up", "%s", qstr(s.CatchUp))
	}
}

// serverRows reports what the run cost the server and its database, and pgbench's baseline.
func (t *table) serverRows(r *Result) {
	if sv := r.Server; sv.Error != "" {
		t.row("server", "metrics unavailable: %s", sv.Error)
	} else {
		window := map[string]string{"load": "load phase", "idle": "idle window", "storm": "storm"}[r.Mode]
		t.row("server RSS", "%.1f MiB before streams, %.1f MiB open (%.0f streams): %.2f KiB/stream; %.1f MiB at end (%.2f KiB/stream)",
			sv.RSSBaselineMiB, sv.RSSOpenMiB, sv.StreamsOpen, sv.RSSPerStreamKiB, sv.RSSEndMiB, sv.RSSPerStreamEndKiB)
		t.row("CPU", "server %.1f %% of one core over the %s; chatbench %.1f %% (chatbench peak RSS %.0f MiB)",
			sv.CPUPercent, window, sv.ToolCPUPercent, sv.ToolMaxRSSMiB)
	}
	if h := r.Heartbeat; h != nil {
		t.row("heartbeats", "expected every %gs: per-stream max gap p50 %.2fs, p99 %.2fs, max %.2fs; %d late (> %gs); %d pings",
			h.ExpectedS, h.P50GapS, h.P99GapS, h.MaxGapS, h.Late, h.ExpectedS+2, h.Pings)
	}
	if d := r.DB; d != nil {
		t.row("DB connections", "chatd pool %d before streams, %d with streams, max %d (max busy %d); listener max %d; %d samples %s",
			d.Before, d.WithStreams, d.PoolMax, d.BusyMax, d.ListenerMax, d.Samples, d.Error)
		t.row("  oldest write xact", "%.3fs (%s): anything in the cluster that holds a transaction id this long delays every delivery",
			d.OldestWriteXactS, d.OldestWriteXactWho)
	}
	t.pgbenchRow(r)
	t.costRows(r.Cost)
}

// pgbenchRow reports the reference and the service's ratio to it.
func (t *table) pgbenchRow(r *Result) {
	p := r.Pgbench
	switch {
	case p == nil:
	case p.Error != "":
		t.row("pgbench", "failed: %s", p.Error)
	default:
		note := ""
		if l := r.Load; l != nil && l.Overload == 0 && l.AchievedRate >= 0.97*l.TargetRate {
			note = " (the service kept up with -rate: offer more to measure its capacity)"
		}
		ratio := ""
		if r.Load != nil {
			ratio = fmt.Sprintf("; service/pgbench = %.2fx%s", p.Ratio, note)
		}
		t.row("pgbench", "%.1f tps single-row INSERT (-M %s -c %d -j %d -T %d, %d-byte body)%s",
			p.TPS, p.Protocol, p.Clients, p.Jobs, p.Seconds, p.BodyBytes, ratio)
	}
}

// verdictRows reports the budgets and whether anything was lost or duplicated.
func (t *table) verdictRows(r *Result) {
	for _, bu := range r.Budgets {
		mark := "PASS"
		if !bu.OK {
			mark = "MISS"
		}
		t.row("budget", "[%s] %s: %s", mark, bu.Name, bu.Value)
	}
	if len(r.Failures) == 0 {
		t.row("RESULT", "OK: nothing lost or duplicated")
	} else {
		t.row("RESULT", "FAILED: %s", strings.Join(r.Failures, "; "))
	}
}

// write prints the rows with their names in one aligned column.
func (t table) write(w io.Writer) {
	width := 0
	for _, rw := range t {
		width = max(width, len(rw[0]))
	}
	fmt.Fprintln(w, strings.Repeat("-", 100))
	for _, rw := range t {
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

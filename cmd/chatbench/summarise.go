package main

import (
	"fmt"
	"slices"
	"time"
)

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

// secondsP99 is the delivery p99 (ms) of each second's messages, perSecond messages a
// second in index order (the open loop schedules message i at i/rate); 0 for a second
// none of whose messages arrived.
func secondsP99(t *tracker, perSecond int) []float64 {
	var out []float64
	for from := 0; perSecond > 0 && from < len(t.deliveries); from += perSecond {
		var lat []int64
		for i := from; i < min(from+perSecond, len(t.deliveries)); i++ {
			lat = append(lat, t.latency[2*i:2*i+min(int(t.deliveries[i].Load()), 2)]...)
		}
		p99 := 0.0
		if q := quantiles(lat); q != nil {
			p99 = q.P99
		}
		out = append(out, p99)
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
	split := splitDeliveries(t, len(opt.urls))
	l.DeliveryRecipient, l.RecipientDelivered = quantiles(split.recipient), int64(len(split.recipient))
	if len(opt.urls) > 1 {
		l.DeliverySameInstance, l.DeliveryOtherInstance = quantiles(split.same), quantiles(split.other)
	}
	l.RecipientFraction, l.Held, l.HeldWhy = judgeHeld(l.Scheduled, l.RecipientDelivered, l.DeliveryRecipient)
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

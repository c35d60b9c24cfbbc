package main

import (
	"errors"
	"fmt"
	"image/color"
	"image/png"
	"math"
	"os"
	"slices"
	"time"
)

// A chart is a title, an x axis, a left y axis (linear or log) and an optional right
// linear y axis, and line series drawn against one of them. It renders to a PNG with
// nothing but the standard library and basicfont.
type chart struct {
	title, subtitle string
	xLabel          string
	yLabel, y2Label string // y2Label "": no right axis
	logY            bool
	yMax            float64 // a fixed top for a linear left axis (0: from the data)
	series          []series
}

type series struct {
	name   string
	color  color.RGBA
	right  bool // against the right axis
	dashed bool
	pts    []point // a NaN y breaks the line
}

type point struct{ x, y float64 }

var (
	colBlue   = color.RGBA{31, 119, 180, 255}
	colRed    = color.RGBA{214, 39, 40, 255}
	colOrange = color.RGBA{255, 127, 14, 255}
	colGreen  = color.RGBA{44, 160, 44, 255}
	colGray   = color.RGBA{120, 120, 120, 255}
	colGrid   = color.RGBA{225, 225, 225, 255}
	colGrid2  = color.RGBA{242, 242, 242, 255}
	colText   = color.RGBA{30, 30, 30, 255}
)

// plot writes the mode's chart as a PNG.
func (b *bench) plot(path string) error {
	if b.chart == nil {
		return errors.New("nothing to plot for this run")
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, b.chart.render(1100, 620)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// loadChart: per second of the schedule, delivery p50/p99 and POST p99 (log ms, left)
// and accepted msgs/s by reply time (right), with the target rate for reference.
func (b *bench) loadChart(t *tracker, p *poster) *chart {
	start := p.start.UnixNano()
	bw := bucketWidth(b.opt.duration)
	bucket := func(ns int64) int { return max(int((ns-start)/int64(bw)), 0) }
	nb := 1
	for i := 0; i < p.n; i++ {
		nb = max(nb, bucket(p.sched[i])+1, bucket(p.doneAt[i])+1)
	}
	deliv := make([][]int64, nb)
	posts := make([][]int64, nb)
	acc := make([]float64, nb)
	for i := 0; i < p.n; i++ {
		k := bucket(p.sched[i])
		n := min(int(t.deliveries[i].Load()), 2)
		deliv[k] = append(deliv[k], t.latency[2*i:2*i+n]...)
		if p.ok[i] {
			posts[k] = append(posts[k], p.postLat[i])
			acc[bucket(p.doneAt[i])]++
		}
	}
	mid := func(k int) float64 { return (float64(k) + 0.5) * bw.Seconds() }
	q := func(buckets [][]int64, f float64) []point {
		pts := make([]point, nb)
		for k, v := range buckets {
			pts[k] = point{mid(k), math.NaN()}
			if len(v) > 0 {
				slices.Sort(v)
				pts[k].y = ms(rank(v, f))
			}
		}
		return pts
	}
	rate := make([]point, nb)
	for k := range acc {
		rate[k] = point{mid(k), acc[k] / bw.Seconds()}
	}
	end := float64(nb) * bw.Seconds()
	c := &chart{
		title:   fmt.Sprintf("chatbench load: %d streams on %d instance(s), target %.0f msgs/s, %d clients", len(b.streams), len(b.opt.urls), b.opt.rate, b.opt.clients),
		xLabel:  fmt.Sprintf("seconds since the first scheduled send (%s buckets: latency by scheduled time, msgs/s by reply time)", bw),
		yLabel:  "latency, ms (log scale)",
		y2Label: "messages per second",
		logY:    true,
		series: []series{
			{name: "delivery p50", color: colBlue, pts: q(deliv, 0.50)},
			{name: "delivery p99", color: colRed, pts: q(deliv, 0.99)},
			{name: "POST p99", color: colOrange, pts: q(posts, 0.99)},
			{name: "accepted msgs/s", color: colGreen, right: true, pts: rate},
			{name: "target msgs/s", color: colGray, right: true, dashed: true, pts: []point{{0, b.opt.rate}, {end, b.opt.rate}}},
		},
	}
	if l, d := b.res.Load, b.res.Delivery; l != nil && d != nil && l.DeliveryLatency != nil && l.PostLatency != nil {
		c.subtitle = fmt.Sprintf("achieved %.0f msgs/s; delivered %d/%d, lost %d, dup %d; delivery p50 %s p99 %s; POST p50 %s p99 %s",
			l.AchievedRate, d.Delivered, d.Expected, d.Lost, d.Duplicates, msStr(l.DeliveryLatency.P50), msStr(l.DeliveryLatency.P99),
			msStr(l.PostLatency.P50), msStr(l.PostLatency.P99))
	}
	return c
}

// bucketWidth is one second, unless that gives fewer than 20 buckets (shorter runs) or
// more than 120 (longer runs).
func bucketWidth(d time.Duration) time.Duration {
	if d < 20*time.Second {
		for _, w := range []time.Duration{500 * time.Millisecond, 250 * time.Millisecond} {
			if d/w >= 20 {
				return w
			}
		}
		return 100 * time.Millisecond
	}
	for _, w := range []time.Duration{time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second} {
		if d/w <= 120 {
			return w
		}
	}
	return time.Minute
}

// stormChart: streams caught up over time since the reconnection.
func (b *bench) stormChart(times []int64, took time.Duration) *chart {
	slices.Sort(times)
	end := max(took.Seconds(), 0.1)
	if len(times) > 0 {
		end = max(end, time.Duration(times[len(times)-1]).Seconds()*1.05)
	}
	const steps = 300
	pts := make([]point, 0, steps+1)
	for i := 0; i <= steps; i++ {
		x := end * float64(i) / steps
		n, _ := slices.BinarySearch(times, int64(x*1e9)+1)
		pts = append(pts, point{x, float64(n)})
	}
	all := float64(len(b.streams))
	c := &chart{
		title:  fmt.Sprintf("chatbench storm: %d streams reconnect at once, each having missed %d messages", len(b.streams), b.opt.missed),
		xLabel: "seconds since the reconnection",
		yLabel: "streams caught up",
		series: []series{
			{name: "streams caught up", color: colBlue, pts: pts},
			{name: "all streams", color: colGray, dashed: true, pts: []point{{0, all}, {end, all}}},
			{name: "10 s budget", color: colRed, dashed: true, pts: []point{{10, 0}, {10, all}}},
		},
	}
	if end < 10 {
		c.series = c.series[:2]
	}
	if s := b.res.Storm; s != nil && s.CatchUp != nil {
		c.subtitle = fmt.Sprintf("caught up %d/%d; per stream p50 %s p99 %s max %s", s.CaughtUp, len(b.streams),
			msStr(s.CatchUp.P50), msStr(s.CatchUp.P99), msStr(s.CatchUp.Max))
	}
	return c
}

// heartbeatChart: share of streams whose longest heartbeat gap is at most x seconds.
func (b *bench) heartbeatChart() *chart {
	var gaps []float64
	for _, s := range b.streams {
		if s.readyAt != 0 {
			gaps = append(gaps, time.Duration(s.maxGap).Seconds())
		}
	}
	if len(gaps) == 0 {
		return nil
	}
	slices.Sort(gaps)
	limit := (b.opt.heartbeat + 2*time.Second).Seconds()
	end := max(gaps[len(gaps)-1], limit) * 1.1
	const steps = 400
	pts := make([]point, 0, steps+1)
	for i := 0; i <= steps; i++ {
		x := end * float64(i) / steps
		n, _ := slices.BinarySearchFunc(gaps, x, func(g, x float64) int {
			if g <= x {
				return -1
			}
			return 1
		})
		pts = append(pts, point{x, 100 * float64(n) / float64(len(gaps))})
	}
	c := &chart{
		title:  fmt.Sprintf("chatbench idle: %d streams, heartbeat every %s", len(b.streams), b.opt.heartbeat),
		xLabel: "longest gap between heartbeats of a stream, seconds",
		yLabel: "% of streams with that gap or less",
		yMax:   100,
		series: []series{
			{name: "streams (cumulative %)", color: colBlue, pts: pts},
			{name: "on-time limit (heartbeat + 2 s)", color: colRed, dashed: true, pts: []point{{limit, 0}, {limit, 100}}},
		},
	}
	if sv := b.res.Server; sv.Error == "" {
		c.subtitle = fmt.Sprintf("server RSS %.2f KiB/stream, idle CPU %.1f %% of one core", sv.RSSPerStreamKiB, sv.CPUPercent)
	}
	return c
}

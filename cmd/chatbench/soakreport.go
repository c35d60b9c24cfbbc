package main

import (
	"encoding/csv"
	"fmt"
	"image/color"
	"math"
	"os"
	"strconv"
	"time"
)

// soakSegment is one process's samples (an instance restarted is a new segment): the first
// sample after the warm-up, the last, and the largest, of each count.
type soakSegment struct {
	name        string
	pid         int
	from, to    float64 // s since the start
	first, last procSample
	maxRSS      int64
	maxG        float64
	maxFDs      int
}

// soakWarmUp is skipped before a segment's first figure: the streams, pools and caches fill.
const soakWarmUp = time.Minute

func soakSegments(samples []procSample, start time.Time, names []string) []*soakSegment {
	var segs []*soakSegment
	cur := map[int]*soakSegment{}
	for _, p := range samples {
		g := cur[p.inst]
		if g == nil || g.pid != p.pid {
			g = &soakSegment{name: names[p.inst], pid: p.pid, from: p.at.Sub(start).Seconds(), first: p}
			cur[p.inst] = g
			segs = append(segs, g)
		}
		if p.at.Sub(start).Seconds()-g.from < soakWarmUp.Seconds() {
			g.first = p // the last sample within the warm-up
		}
		g.last, g.to = p, p.at.Sub(start).Seconds()
		g.maxRSS, g.maxG, g.maxFDs = max(g.maxRSS, p.rss), max(g.maxG, p.goroutines), max(g.maxFDs, p.fds)
	}
	return segs
}

// report prints the soak's figures; it returns false when something failed.
func (s *soakRun) report(opt options, d *DeliveryResult, samples []procSample, start time.Time, restartAt time.Duration, restartErr error) bool {
	ok := restartErr == nil && d.Lost == 0 && d.Duplicates == 0 && d.SeqErrors == 0 && d.Misrouted == 0
	fmt.Printf("soak: %s on 2 instances, %.0f sends/s, %d held streams, %d churning, %d long polls; B restarted at %s\n",
		opt.soakFor, opt.rate, len(s.b.streams), soakChurners, soakPollers, restartAt)
	for k, op := range soakOps {
		fmt.Printf("  %-14s %8d ok %6d failed  %s\n", op, s.ok[k].Load(), s.fail[k].Load(), s.firstErr[op])
	}
	fmt.Printf("  deliveries: expected %d, delivered %d, lost %d, duplicates %d, seq errors %d, misrouted %d\n",
		d.Expected, d.Delivered, d.Lost, d.Duplicates, d.SeqErrors, d.Misrouted)
	if restartErr != nil {
		fmt.Printf("  restart of B failed: %v\n", restartErr)
	}
	names := []string{s.inst[0].name, s.inst[1].name}
	fmt.Printf("  per process (after %s of warm-up -> at its end, max):\n", soakWarmUp)
	for _, g := range soakSegments(samples, start, names) {
		fmt.Printf("    %s pid %d, %.0f-%.0f s: RSS %.1f -> %.1f MiB (max %.1f); goroutines %.0f -> %.0f (max %.0f); fds %d -> %d (max %d)\n",
			g.name, g.pid, g.from, g.to, float64(g.first.rss)/(1<<20), float64(g.last.rss)/(1<<20), float64(g.maxRSS)/(1<<20),
			g.first.goroutines, g.last.goroutines, g.maxG, g.first.fds, g.last.fds, g.maxFDs)
	}
	if ok {
		fmt.Println("  RESULT: OK: nothing lost or duplicated (flatness: see the figures and the plot)")
	} else {
		fmt.Println("  RESULT: FAILED")
	}
	return ok
}

// writeSoakCSV writes one row per sample.
func writeSoakCSV(path string, samples []procSample, start time.Time) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"t_s", "instance", "pid", "rss_mib", "vmhwm_mib", "goroutines", "fds", "streams_open", "metrics_ms"})
	for _, p := range samples {
		_ = w.Write([]string{
			strconv.FormatFloat(p.at.Sub(start).Seconds(), 'f', 1, 64), string(rune('A' + p.inst)), strconv.Itoa(p.pid),
			strconv.FormatFloat(float64(p.rss)/(1<<20), 'f', 2, 64), strconv.FormatFloat(float64(p.hwm)/(1<<20), 'f', 2, 64),
			strconv.FormatFloat(p.goroutines, 'f', 0, 64), strconv.Itoa(p.fds), strconv.FormatFloat(p.streams, 'f', 0, 64),
			strconv.FormatFloat(float64(p.metrics)/1e6, 'f', 2, 64),
		})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// soakChart: RSS (left axis) and goroutines and open files (right axis) of each instance
// over the run; B dashed; a gap where B was down.
func soakChart(samples []procSample, start time.Time, opt options, restartAt time.Duration) *chart {
	type key struct{ inst, metric int }
	pts := map[key][]point{}
	last := map[int]procSample{}
	for _, p := range samples {
		x := p.at.Sub(start).Seconds()
		gap := false
		if l, seen := last[p.inst]; seen && (l.pid != p.pid || p.at.Sub(l.at) > 3*opt.sampleEvery) {
			gap = true
		}
		last[p.inst] = p
		g := p.goroutines
		if p.metrics < 0 {
			g = math.NaN() // /metrics did not answer (an instance starting)
		}
		for m, y := range []float64{float64(p.rss) / (1 << 20), g, float64(p.fds)} {
			k := key{p.inst, m}
			if gap {
				pts[k] = append(pts[k], point{x, math.NaN()})
			}
			pts[k] = append(pts[k], point{x, y})
		}
	}
	c := &chart{
		title:   fmt.Sprintf("chatbench soak: %s of mixed load on two instances, B restarted at %s", opt.soakFor, restartAt),
		xLabel:  fmt.Sprintf("seconds since the start (a sample every %s; B in lighter colours)", opt.sampleEvery),
		yLabel:  "RSS, MiB",
		y2Label: "goroutines, open files",
	}
	// Dashes do not show on lines of many short segments: B gets lighter colours instead.
	cols := [2][3]color.RGBA{{colBlue, colRed, colGreen}, {{140, 190, 230, 255}, {245, 150, 150, 255}, {150, 215, 150, 255}}}
	for m, name := range []string{"RSS MiB", "goroutines", "open files"} {
		for inst, who := range []string{"A", "B"} {
			c.series = append(c.series, series{name: name + " " + who, color: cols[inst][m], right: m > 0, pts: pts[key{inst, m}]})
		}
	}
	return c
}

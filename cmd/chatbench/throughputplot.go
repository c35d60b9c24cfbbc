package main

import (
	"encoding/json"
	"fmt"
	"image/png"
	"math"
	"os"
)

// throughputSummary is what -mode throughput-plot reads of throughput.sh's summary.json.
type throughputSummary struct {
	Mode        string   `json:"mode"` // "ramp" or "instances"
	HighestHeld *float64 `json:"highest_held"`
	Ratio       *float64 `json:"ratio_to_pgbench"`
	Pgbench     *struct {
		TPS float64 `json:"tps"`
	} `json:"pgbench"`
	Runs []struct {
		Instances int     `json:"instances"`
		Offered   float64 `json:"offered"`
		Accepted  float64 `json:"accepted_per_s"`
		// Figures a run may lack (null in the JSON: a gap in the line).
		PostP99      *float64 `json:"post_p99_ms"`
		RecipientP50 *float64 `json:"recipient_p50_ms"`
		RecipientP99 *float64 `json:"recipient_p99_ms"`
		PGCPUMsPer1k *float64 `json:"pg_cpu_ms_per_1k"`
	} `json:"runs"`
}

// runThroughputPlot is -mode throughput-plot: throughput.sh's summary (-summary) drawn as a
// PNG (-plot). A ramp: latencies and the accepted rate against the offered rate; instance
// counts: latencies and PostgreSQL's work per 1,000 messages against the count.
func runThroughputPlot(opt options) int {
	data, err := os.ReadFile(opt.summaryPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatbench:", err)
		return 2
	}
	var s throughputSummary
	if err := json.Unmarshal(data, &s); err != nil {
		fmt.Fprintf(os.Stderr, "chatbench: %s: %v\n", opt.summaryPath, err)
		return 2
	}
	f, err := os.Create(opt.plotPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatbench:", err)
		return 2
	}
	if err := png.Encode(f, s.chart().render(1100, 620)); err != nil {
		f.Close()
		fmt.Fprintln(os.Stderr, "chatbench:", err)
		return 2
	}
	if err := f.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "chatbench:", err)
		return 2
	}
	logf("plot written to %s", opt.plotPath)
	return 0
}

// chart draws the summary; a run without a figure leaves a gap in its line.
func (s *throughputSummary) chart() *chart {
	val := func(p *float64) float64 {
		if p == nil {
			return math.NaN()
		}
		return *p
	}
	c := &chart{yLabel: "ms (log)", logY: true}
	rcpt99 := series{name: "recipient delivery p99", color: colRed}
	rcpt50 := series{name: "recipient delivery p50", color: colBlue}
	post99 := series{name: "POST p99", color: colOrange}
	limit := series{name: "held: p99 <= 1 s", color: colGray, dashed: true}
	right := series{color: colGreen, right: true}
	for _, r := range s.Runs {
		x := r.Offered
		if s.Mode == "instances" {
			x = float64(r.Instances)
		}
		rcpt99.pts = append(rcpt99.pts, point{x, val(r.RecipientP99)})
		rcpt50.pts = append(rcpt50.pts, point{x, val(r.RecipientP50)})
		post99.pts = append(post99.pts, point{x, val(r.PostP99)})
		if s.Mode == "instances" {
			right.pts = append(right.pts, point{x, val(r.PGCPUMsPer1k)})
		} else {
			right.pts = append(right.pts, point{x, r.Accepted})
		}
	}
	if s.Mode == "instances" {
		c.title = "chatd: one rate over 1, 2, 4, 8 instances on one database"
		c.xLabel = "instances"
		c.y2Label = "PostgreSQL CPU ms per 1,000 msgs"
		right.name = "PostgreSQL CPU per 1,000 messages (right)"
	} else {
		c.title = "chatd: open-loop ramp, every recipient on another instance"
		c.xLabel = "offered msgs/s"
		c.y2Label = "accepted msgs/s"
		right.name = "accepted msgs/s (right)"
	}
	if s.Pgbench != nil && s.Pgbench.TPS > 0 {
		c.subtitle = fmt.Sprintf("pgbench single-row INSERT, same run: %.0f tps", s.Pgbench.TPS)
		if s.HighestHeld != nil && s.Ratio != nil {
			c.subtitle += fmt.Sprintf("; highest rate held %.0f msgs/s = %.2fx", *s.HighestHeld, *s.Ratio)
		}
	}
	// The limit spans the axis, a little past the last run so that its points are not
	// drawn on the frame.
	xmax := 0.0
	for _, p := range rcpt99.pts {
		xmax = max(xmax, p.x)
	}
	if s.Mode == "instances" {
		xmax++
	} else {
		xmax *= 1.1
	}
	limit.pts = []point{{0, 1000}, {xmax, 1000}}
	c.series = []series{rcpt99, rcpt50, post99, limit, right}
	return c
}

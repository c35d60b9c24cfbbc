package main

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"slices"
	"strconv"
	"time"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
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

// axis maps values to pixels.
type axis struct {
	lo, hi   float64
	log      bool
	p0, p1   int // pixel of lo, of hi
	ticks    []float64
	minor    []float64
	decimals int
}

func (a *axis) pix(v float64) float64 {
	lo, hi := a.lo, a.hi
	if a.log {
		v = math.Log10(math.Max(v, lo))
		lo, hi = math.Log10(lo), math.Log10(hi)
	}
	f := (v - lo) / (hi - lo)
	return float64(a.p0) + f*float64(a.p1-a.p0)
}

func (a *axis) label(v float64) string {
	if a.log {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'f', a.decimals, 64)
}

// linearAxis picks a range from 0 (or lo) to a round number above hi, with about 6 ticks.
func linearAxis(lo, hi float64) axis {
	if hi <= lo {
		hi = lo + 1
	}
	raw := (hi - lo) / 6
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	a := axis{lo: math.Floor(lo/step) * step, hi: math.Ceil(hi/step) * step}
	for v := a.lo; v <= a.hi+step/2; v += step {
		a.ticks = append(a.ticks, v)
	}
	if step < 1 {
		a.decimals = int(math.Ceil(-math.Log10(step)))
	}
	return a
}

// logAxis spans whole decades around [lo, hi].
func logAxis(lo, hi float64) axis {
	lo = math.Pow(10, math.Floor(math.Log10(lo)))
	hi = math.Pow(10, math.Ceil(math.Log10(hi)))
	if hi <= lo {
		hi = lo * 10
	}
	a := axis{lo: lo, hi: hi, log: true}
	for d := lo; d <= hi*1.001; d *= 10 {
		a.ticks = append(a.ticks, d)
		for m := 2.0; m < 10 && d*m < hi; m++ {
			a.minor = append(a.minor, d*m)
		}
	}
	return a
}

// render draws the chart.
func (c *chart) render(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	left, right, top, bottom := 90, 30, 84, 60
	if c.y2Label != "" {
		right = 90
	}
	pr := image.Rect(left, top, w-right, h-bottom)

	// Ranges.
	xmax, ymin, ymax, y2max := 0.0, math.Inf(1), 0.0, 0.0
	for _, s := range c.series {
		for _, p := range s.pts {
			xmax = math.Max(xmax, p.x)
			if math.IsNaN(p.y) {
				continue
			}
			if s.right {
				y2max = math.Max(y2max, p.y)
			} else {
				ymax = math.Max(ymax, p.y)
				if p.y > 0 {
					ymin = math.Min(ymin, p.y)
				}
			}
		}
	}
	xa := linearAxis(0, xmax)
	xa.p0, xa.p1 = pr.Min.X, pr.Max.X-1
	var ya axis
	if c.logY {
		if math.IsInf(ymin, 1) {
			ymin, ymax = 1, 10
		}
		ya = logAxis(math.Max(ymin, 0.01), math.Max(ymax, 0.01))
	} else if c.yMax > 0 {
		ya = linearAxis(0, c.yMax)
	} else {
		ya = linearAxis(0, ymax*1.05)
	}
	ya.p0, ya.p1 = pr.Max.Y-1, pr.Min.Y
	y2a := linearAxis(0, y2max*1.15)
	y2a.p0, y2a.p1 = pr.Max.Y-1, pr.Min.Y

	// Grid, frame, ticks.
	for _, v := range ya.minor {
		y := int(ya.pix(v))
		hline(img, pr.Min.X, pr.Max.X, y, colGrid2)
		if m := v / math.Pow(10, math.Floor(math.Log10(v)+1e-9)); len(ya.ticks) <= 4 && (math.Abs(m-2) < 1e-6 || math.Abs(m-5) < 1e-6) {
			l := strconv.FormatFloat(v, 'g', 3, 64)
			text(img, pr.Min.X-8-7*len(l), y+4, l, colGray)
		}
	}
	for _, v := range ya.ticks {
		y := int(ya.pix(v))
		hline(img, pr.Min.X, pr.Max.X, y, colGrid)
		text(img, pr.Min.X-8-7*len(ya.label(v)), y+4, ya.label(v), colText)
	}
	for _, v := range xa.ticks {
		x := int(xa.pix(v))
		vline(img, x, pr.Min.Y, pr.Max.Y, colGrid)
		l := xa.label(v)
		text(img, x-7*len(l)/2, pr.Max.Y+16, l, colText)
	}
	if c.y2Label != "" {
		for _, v := range y2a.ticks {
			y := int(y2a.pix(v))
			hline(img, pr.Max.X, pr.Max.X+5, y, colGreen)
			text(img, pr.Max.X+8, y+4, y2a.label(v), colGreen)
		}
		vtext(img, w-18, pr.Min.Y+pr.Dy()/2, c.y2Label, colGreen)
	}
	rect(img, pr, colText)
	text(img, pr.Min.X+pr.Dx()/2-7*len(c.xLabel)/2, h-18, c.xLabel, colText)
	vtext(img, 14, pr.Min.Y+pr.Dy()/2, c.yLabel, colText)

	// Title, subtitle, legend.
	text(img, left, 20, c.title, colText)
	text(img, left, 38, c.subtitle, colGray)
	x := left
	for _, s := range c.series {
		thickLine(img, float64(x), 62, float64(x+24), 62, s.color, s.dashed, image.Rect(0, 0, w, h))
		text(img, x+30, 66, s.name, colText)
		x += 30 + 7*len(s.name) + 24
	}

	// Series.
	clip := pr.Inset(1)
	for _, s := range c.series {
		ax := &ya
		if s.right {
			ax = &y2a
		}
		var prev *point
		few := len(s.pts) <= 60 && !s.dashed
		for i := range s.pts {
			p := s.pts[i]
			if math.IsNaN(p.y) {
				prev = nil
				continue
			}
			px, py := xa.pix(p.x), ax.pix(p.y)
			if prev != nil {
				thickLine(img, xa.pix(prev.x), ax.pix(prev.y), px, py, s.color, s.dashed, clip)
			}
			if few {
				fillRect(img, image.Rect(int(px)-2, int(py)-2, int(px)+3, int(py)+3).Intersect(clip), s.color)
			}
			prev = &s.pts[i]
		}
	}
	return img
}

func hline(img *image.RGBA, x0, x1, y int, c color.RGBA) {
	for x := x0; x < x1; x++ {
		img.SetRGBA(x, y, c)
	}
}

func vline(img *image.RGBA, x, y0, y1 int, c color.RGBA) {
	for y := y0; y < y1; y++ {
		img.SetRGBA(x, y, c)
	}
}

func rect(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	hline(img, r.Min.X, r.Max.X, r.Min.Y, c)
	hline(img, r.Min.X, r.Max.X, r.Max.Y-1, c)
	vline(img, r.Min.X, r.Min.Y, r.Max.Y, c)
	vline(img, r.Max.X-1, r.Min.Y, r.Max.Y, c)
}

func fillRect(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	draw.Draw(img, r, image.NewUniform(c), image.Point{}, draw.Src)
}

// thickLine draws a 2-pixel line, dashed if asked, inside clip.
func thickLine(img *image.RGBA, x0, y0, x1, y1 float64, c color.RGBA, dashed bool, clip image.Rectangle) {
	n := int(math.Max(math.Abs(x1-x0), math.Abs(y1-y0))) + 1
	for i := 0; i <= n; i++ {
		if dashed && (i/6)%2 == 1 {
			continue
		}
		f := float64(i) / float64(n)
		x, y := int(x0+f*(x1-x0)), int(y0+f*(y1-y0))
		for _, d := range [4][2]int{{0, 0}, {1, 0}, {0, 1}, {1, 1}} {
			if p := (image.Point{X: x + d[0], Y: y + d[1]}); p.In(clip) {
				img.SetRGBA(p.X, p.Y, c)
			}
		}
	}
}

// text draws s with its baseline at y.
func text(img draw.Image, x, y int, s string, c color.Color) {
	d := &font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

// vtext draws s rotated to read bottom to top, centred on (cx, cy).
func vtext(img *image.RGBA, cx, cy int, s string, c color.Color) {
	tw, th := 7*len(s), 13
	tmp := image.NewRGBA(image.Rect(0, 0, tw, th))
	text(tmp, 0, 11, s, c)
	x0, y0 := cx-th/2, cy-tw/2
	for y := 0; y < th; y++ {
		for x := 0; x < tw; x++ {
			if p := tmp.RGBAAt(x, y); p.A > 0 {
				img.Set(x0+y, y0+tw-1-x, p)
			}
		}
	}
}

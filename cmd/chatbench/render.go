package main

import (
	"image"
	"image/color"
	"image/draw"
	"math"
	"strconv"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// render draws the chart: axes fitted to the series, then the frame, the legend and the lines.
func (c *chart) render(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	left, right, top, bottom := 90, 30, 84, 60
	if c.y2Label != "" {
		right = 90
	}
	pr := image.Rect(left, top, w-right, h-bottom)

	xa, ya, y2a := c.axes(pr)
	c.drawFrame(img, pr, xa, ya, y2a)
	c.drawLegend(img, left)
	c.drawSeries(img, pr, xa, ya, y2a)
	return img
}

// axes fits the x axis, the left y axis (log, fixed or fitted) and the right one to the
// series, spanning the plot rectangle pr.
func (c *chart) axes(pr image.Rectangle) (xa, ya, y2a axis) {
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
	xa = linearAxis(0, xmax)
	xa.p0, xa.p1 = pr.Min.X, pr.Max.X-1
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
	y2a = linearAxis(0, y2max*1.15)
	y2a.p0, y2a.p1 = pr.Max.Y-1, pr.Min.Y
	return xa, ya, y2a
}

// drawFrame draws the grid, the frame, the tick labels and the axis titles.
func (c *chart) drawFrame(img *image.RGBA, pr image.Rectangle, xa, ya, y2a axis) {
	w, h := img.Bounds().Dx(), img.Bounds().Dy()
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
}

// drawLegend draws the title, the subtitle and one legend entry per series from x = left.
func (c *chart) drawLegend(img *image.RGBA, left int) {
	w, h := img.Bounds().Dx(), img.Bounds().Dy()
	text(img, left, 20, c.title, colText)
	text(img, left, 38, c.subtitle, colGray)
	x := left
	for _, s := range c.series {
		thickLine(img, float64(x), 62, float64(x+24), 62, s.color, s.dashed, image.Rect(0, 0, w, h))
		text(img, x+30, 66, s.name, colText)
		x += 30 + 7*len(s.name) + 24
	}
}

// drawSeries draws each series as a line against its axis, with a dot per point when
// there are few; NaN points break the line.
func (c *chart) drawSeries(img *image.RGBA, pr image.Rectangle, xa, ya, y2a axis) {
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

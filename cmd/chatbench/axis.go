package main

import (
	"math"
	"strconv"
)

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

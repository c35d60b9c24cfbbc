package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// procSample is one look at one instance: /proc and /metrics.
type procSample struct {
	at         time.Time
	inst       int
	pid        int
	rss, hwm   int64 // VmRSS, VmHWM: bytes
	fds        int   // open files, sockets included
	goroutines float64
	streams    float64       // chatd_streams_open
	metrics    time.Duration // how long /metrics took to answer; -1: it did not
	tcpMem     int64         // bytes of socket buffers the kernel holds for TCP, all processes
	cpu        float64       // process_cpu_seconds_total
	selfCPU    time.Duration // chatbench's own CPU time so far
	busy, all  int64         // the machine's busy and total CPU time so far (/proc/stat)
}

// readProc reads a process's resident memory, its peak, and its open files.
func readProc(pid int) (rss, hwm int64, fds int) {
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			name, v, _ := strings.Cut(l, ":")
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			switch name {
			case "VmRSS":
				rss = kb << 10
			case "VmHWM":
				hwm = kb << 10
			}
		}
	}
	if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		fds = len(ents)
	}
	return rss, hwm, fds
}

// tcpMemory is the kernel's TCP buffer memory (/proc/net/sockstat counts it in pages): the
// machine-wide cost of data written to sockets that nobody reads.
func tcpMemory() int64 {
	data, _ := os.ReadFile("/proc/net/sockstat")
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "TCP:" && f[len(f)-2] == "mem" {
			pages, _ := strconv.ParseInt(f[len(f)-1], 10, 64)
			return pages * int64(os.Getpagesize())
		}
	}
	return 0
}

// machineCPU is the machine's busy and total CPU time (clock ticks) since boot: every
// process's, other test runs included.
func machineCPU() (busy, all int64) {
	data, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(data), "\n")
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseInt(f, 10, 64)
		all += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, all
}

// sampler looks at every running instance every interval until stopped.
type sampler struct {
	mu      sync.Mutex
	samples []procSample
	stop    func()
}

func (r *hostileRun) startSampler(ctx context.Context, every time.Duration) *sampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &sampler{}
	done := make(chan struct{})
	s.stop = func() { cancel(); <-done }
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			for k := range r.inst {
				if p, ok := r.sample(ctx, k); ok {
					s.mu.Lock()
					s.samples = append(s.samples, p)
					s.mu.Unlock()
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// sample looks at instance k once; ok is false when it is not running.
func (r *hostileRun) sample(ctx context.Context, k int) (procSample, bool) {
	in := r.inst[k]
	if !in.alive() {
		return procSample{}, false
	}
	p := procSample{at: time.Now(), inst: k, pid: in.cmd.Process.Pid}
	p.rss, p.hwm, p.fds = readProc(p.pid)
	p.tcpMem = tcpMemory()
	p.busy, p.all = machineCPU()
	var m serverSample
	err := r.b.scrapeOne(ctx, "http://"+r.mets[k]+"/metrics", &m)
	if err != nil {
		err = r.b.scrapeOne(ctx, in.url+"/metrics", &m)
	}
	if err != nil {
		p.metrics = -1
	} else {
		p.metrics = time.Since(p.at)
	}
	p.goroutines, p.streams, p.cpu, p.selfCPU = m.goroutines, m.streams, m.cpu, selfCPU()
	return p, true
}

// between returns the samples taken in [from, to).
func (s *sampler) between(from, to time.Time) []procSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []procSample
	for _, p := range s.samples {
		if !p.at.Before(from) && p.at.Before(to) {
			out = append(out, p)
		}
	}
	return out
}

// serverWindow is what the samples of a window say about the server.
type serverWindow struct {
	Samples       int        `json:"samples"`
	RSSMaxMiB     float64    `json:"rss_max_mib"` // the largest VmRSS sampled
	HWMMiB        float64    `json:"vmhwm_mib"`   // the process's peak so far, at the window's end
	FDsMax        int        `json:"fds_max"`
	GoroutinesMax float64    `json:"goroutines_max"`
	TCPMemMaxMiB  float64    `json:"kernel_tcp_mem_max_mib"` // machine-wide
	CPUPercent    float64    `json:"cpu_percent"`            // chatd (the first instance), of one core
	ToolCPU       float64    `json:"chatbench_cpu_percent"`
	MachineCPU    float64    `json:"machine_cpu_percent"` // of all cores, every process
	Metrics       *Quantiles `json:"metrics_answer"`      // /metrics answer time
	MetricsFailed int        `json:"metrics_failed"`      // scrapes that got no answer within 10 s
}

func window(ps []procSample) serverWindow {
	var w serverWindow
	var lat []int64
	for _, p := range ps {
		w.Samples++
		w.RSSMaxMiB = max(w.RSSMaxMiB, float64(p.rss)/(1<<20))
		w.HWMMiB = max(w.HWMMiB, float64(p.hwm)/(1<<20))
		w.FDsMax = max(w.FDsMax, p.fds)
		w.GoroutinesMax = max(w.GoroutinesMax, p.goroutines)
		w.TCPMemMaxMiB = max(w.TCPMemMaxMiB, float64(p.tcpMem)/(1<<20))
		if p.metrics < 0 {
			w.MetricsFailed++
		} else {
			lat = append(lat, int64(p.metrics))
		}
	}
	w.Metrics = quantiles(lat)
	// CPU is the first sampled process's, from its first sample to its last in the window.
	last := -1
	for i, p := range ps {
		if i > 0 && p.inst == ps[0].inst && p.pid == ps[0].pid {
			last = i
		}
	}
	if last > 0 {
		f, l := ps[0], ps[last]
		wall := l.at.Sub(f.at)
		w.CPUPercent = 100 * (l.cpu - f.cpu) / wall.Seconds()
		w.ToolCPU = pct(l.selfCPU-f.selfCPU, wall)
		if d := l.all - f.all; d > 0 {
			w.MachineCPU = 100 * float64(l.busy-f.busy) / float64(d)
		}
	}
	return w
}

func (w serverWindow) String() string {
	return fmt.Sprintf("RSS max %.0f MiB (VmHWM %.0f MiB), fds max %d, goroutines max %.0f, CPU %.0f %% (chatbench %.0f %%, machine %.0f %% of all cores); /metrics %s, %d unanswered; kernel TCP buffers (machine) max %.0f MiB",
		w.RSSMaxMiB, w.HWMMiB, w.FDsMax, w.GoroutinesMax, w.CPUPercent, w.ToolCPU, w.MachineCPU, qstr(w.Metrics), w.MetricsFailed, w.TCPMemMaxMiB)
}

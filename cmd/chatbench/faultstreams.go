package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// faultStreams keeps every participant's stream open through the faults, as a client
// would: a stream that ends or cannot open is opened again on the other instance with
// Last-Event-ID (after a short backoff when it did not open).
type faultStreams struct {
	b       *bench
	t       *tracker
	targets []streamTarget
	ctl     []streamCtl
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closed  atomic.Bool

	connects, drops                  atomic.Int64 // connections that got `ready`; that ended unasked
	s503, s503Bare, bad5xx, refusals atomic.Int64 // refused opens: 503, 503 without Retry-After, other 5xx, others

	mu       sync.Mutex
	problems []string
}

// streamTarget is where a stream connects to reach one instance.
type streamTarget struct{ addr, host string }

// streamCtl is the main goroutine's handle on one stream's loop.
type streamCtl struct {
	home   int          // the instance it starts on
	cur    atomic.Int32 // the instance of its current (or next) connection
	up     atomic.Bool  // connected and past `ready`
	goHome atomic.Bool  // reconnect to home, not to the other instance

	mu     sync.Mutex
	cancel context.CancelFunc // ends the current connection
}

// startFaultStreams starts one loop per stream of b; stream k starts on instance k%2 (as
// setup assigned), so each conversation has a participant on each instance.
func startFaultStreams(ctx context.Context, b *bench, t *tracker) *faultStreams {
	ctx, cancel := context.WithCancel(ctx)
	fs := &faultStreams{b: b, t: t, cancel: cancel, ctl: make([]streamCtl, len(b.streams))}
	for _, u := range b.opt.urls {
		pu, _ := url.Parse(u)
		fs.targets = append(fs.targets, streamTarget{addr: hostPort(pu), host: pu.Host})
	}
	for k, s := range b.streams {
		c := &fs.ctl[k]
		c.home = int(s.inst)
		c.cur.Store(int32(s.inst))
		fs.wg.Add(1)
		go func() {
			defer fs.wg.Done()
			fs.loop(ctx, s, c)
		}()
	}
	return fs
}

func (fs *faultStreams) problem(format string, args ...any) {
	fs.mu.Lock()
	if len(fs.problems) < 10 {
		fs.problems = append(fs.problems, fmt.Sprintf(format, args...))
	}
	fs.mu.Unlock()
}

// loop connects s again and again until ctx ends.
func (fs *faultStreams) loop(ctx context.Context, s *stream, c *streamCtl) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		inst := int(c.cur.Load())
		s.addr, s.host, s.inst = fs.targets[inst].addr, fs.targets[inst].host, uint8(inst)
		cctx, cancel := context.WithCancel(ctx)
		c.mu.Lock()
		c.cancel = cancel
		c.mu.Unlock()
		wasUp := false
		err := s.run(cctx, fs.t, true, func() {
			wasUp = true
			c.up.Store(true)
			fs.connects.Add(1)
		})
		c.up.Store(false)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if c.goHome.Swap(false) {
			c.cur.Store(int32(c.home))
			continue
		}
		var oe *openError
		if errors.As(err, &oe) {
			switch {
			case oe.status == 503:
				fs.s503.Add(1)
				if _, ok := retryAfter(oe.retryAfter); !ok {
					fs.s503Bare.Add(1)
					fs.problem("user %s: stream refused with 503 without a valid Retry-After (%q)", s.user.id, oe.retryAfter)
				}
			case oe.status >= 500:
				fs.bad5xx.Add(1)
				fs.problem("user %s: stream on instance %d: %v", s.user.id, inst, oe)
			default:
				fs.refusals.Add(1)
				fs.problem("user %s: stream on instance %d: %v", s.user.id, inst, oe)
			}
		}
		if wasUp {
			fs.drops.Add(1)
			backoff = 50 * time.Millisecond
		} else {
			sleepCtx(ctx, backoff)
			backoff = min(2*backoff, time.Second)
		}
		c.cur.Store(int32(1 - inst))
	}
}

// goHome ends the connection of every stream that is not on its home instance; each
// resumes at home by Last-Event-ID.
func (fs *faultStreams) goHome() {
	for k := range fs.ctl {
		c := &fs.ctl[k]
		if int(c.cur.Load()) == c.home {
			continue
		}
		c.goHome.Store(true)
		c.mu.Lock()
		if c.cancel != nil {
			c.cancel()
		}
		c.mu.Unlock()
	}
}

// on counts the streams connected to instance inst.
func (fs *faultStreams) on(inst int) int {
	n := 0
	for k := range fs.ctl {
		if fs.ctl[k].up.Load() && int(fs.ctl[k].cur.Load()) == inst {
			n++
		}
	}
	return n
}

// waitFor polls cond until it holds (returning the time it first did) or timeout.
func (fs *faultStreams) waitFor(ctx context.Context, timeout time.Duration, cond func(c *streamCtl) bool) (time.Time, bool) {
	deadline := time.Now().Add(timeout)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		all := true
		for k := range fs.ctl {
			if !fs.ctl[k].up.Load() || !cond(&fs.ctl[k]) {
				all = false
				break
			}
		}
		if all {
			return time.Now(), true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Time{}, false
}

// waitUp waits until every stream is connected.
func (fs *faultStreams) waitUp(ctx context.Context, timeout time.Duration) error {
	if _, ok := fs.waitFor(ctx, timeout, func(*streamCtl) bool { return true }); !ok {
		return fmt.Errorf("streams not all ready within %s (%d failed opens: %s)", timeout, fs.t.failed.Load(), fs.t.firstErr)
	}
	return nil
}

// waitAllOn waits until every stream is connected to instance inst; it returns how long
// after since that was, or -1.
func (fs *faultStreams) waitAllOn(ctx context.Context, inst int, since time.Time, timeout time.Duration) time.Duration {
	at, ok := fs.waitFor(ctx, timeout, func(c *streamCtl) bool { return int(c.cur.Load()) == inst })
	if !ok {
		return -1
	}
	return at.Sub(since)
}

// waitHome waits until every stream is connected to its home instance.
func (fs *faultStreams) waitHome(ctx context.Context, timeout time.Duration) bool {
	_, ok := fs.waitFor(ctx, timeout, func(c *streamCtl) bool { return int(c.cur.Load()) == c.home })
	return ok
}

// close ends every stream and waits for the loops; the streams' fields are then the main
// goroutine's to read.
func (fs *faultStreams) close() {
	if fs.closed.Swap(true) {
		return
	}
	fs.cancel()
	fs.wg.Wait()
}

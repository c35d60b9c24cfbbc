package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The hostile clients of -mode slowread and slowclients. Each attacker connection is one of
// these kinds; when the server closes it, its goroutine opens another until the attack ends.
const (
	atkStream      = iota // opens a stream, reads the response head, never reads again
	atkBodyNone           // POST with Content-Length: 1000, then sends no byte of the body
	atkBodyTrickle        // the same, then one byte of the body every trickleEvery
	atkKinds
)

var atkNames = [atkKinds]string{"non-reading stream", "body never sent", "body trickled"}

const (
	// trickleEvery is how often a trickling client sends one more byte of its body.
	trickleEvery = 3 * time.Second
	// attackRcvBuf is the receive buffer of an attacker's socket: small, so that what the
	// server sends fills it (and then the server's send buffer) soon.
	attackRcvBuf = 4096
	// closeScan is how often the server's side of the non-reading streams is looked at.
	closeScan = 250 * time.Millisecond
)

// attack runs the attacker connections against one instance and times each one from its
// start (request head sent, or stream head received) until the server closed it.
type attack struct {
	r       *hostileRun
	once    bool   // each attacker connects once (no reconnection once closed)
	addr    string // host:port of the instance
	host    string
	dialers []*net.Dialer
	mon     *closeMonitor

	made   [atkKinds]atomic.Int64 // connections started
	open   [atkKinds]atomic.Int64 // connections open now (past their start)
	peak   atomic.Int64           // the most attacker connections open at once
	refuse atomic.Int64           // connections the server refused (503, 429) or failed to open

	mu       sync.Mutex
	lives    [atkKinds][]int64 // start .. closed by the server, ns
	lags     [atkKinds][]int64 // behind (see closeMonitor) .. closed by the server, ns
	statuses map[int]int       // body kinds: the server's answers
	stillUp  [atkKinds][]int64 // open when the attack ended: how long they had been behind, ns
	idle     [atkKinds]int     // open when the attack ended, never behind
	firstErr string
}

func newAttack(ctx context.Context, r *hostileRun) *attack {
	pu, _ := url.Parse(r.opt.urls[0])
	a := &attack{r: r, addr: hostPort(pu), host: pu.Host, statuses: map[int]int{}}
	for _, d := range r.b.dialers {
		small := *d
		small.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, attackRcvBuf)
			})
			return errors.Join(err, serr)
		}
		a.dialers = append(a.dialers, &small)
	}
	a.mon = startCloseMonitor(ctx, a.addr)
	return a
}

// start runs n connections of kind, each reconnecting until ctx ends, as users (round
// robin); at most gate of all kinds are connecting at once. wg is done when all have ended.
func (a *attack) start(ctx context.Context, wg *sync.WaitGroup, kind, n int, users []*user, gate chan struct{}) {
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u, d := users[i%len(users)], a.dialers[i%len(a.dialers)]
			for ctx.Err() == nil {
				select {
				case gate <- struct{}{}:
				case <-ctx.Done():
					return
				}
				var err error
				if kind == atkStream {
					err = a.stream(ctx, u, d, gate)
				} else {
					err = a.body(ctx, u, d, kind, gate)
				}
				if err != nil && ctx.Err() == nil {
					a.refuse.Add(1)
					a.note(err)
					sleepCtx(ctx, 200*time.Millisecond)
				} else if a.once {
					return
				}
			}
		}()
	}
}

// opened counts a connection of kind past its start and returns what records its end: when
// it started, when it fell behind (zero: never; for a body, its start), and when the server
// closed it (zero: it was still open when the attack ended).
func (a *attack) opened(kind int) func(start, behind, closedAt time.Time) {
	a.made[kind].Add(1)
	n := a.open[kind].Add(1)
	total := n
	for k := range a.open {
		if k != kind {
			total += a.open[k].Load()
		}
	}
	for p := a.peak.Load(); total > p && !a.peak.CompareAndSwap(p, total); p = a.peak.Load() {
	}
	return func(start, behind, closedAt time.Time) {
		a.open[kind].Add(-1)
		a.mu.Lock()
		defer a.mu.Unlock()
		switch {
		case closedAt.IsZero() && behind.IsZero():
			a.idle[kind]++
		case closedAt.IsZero():
			a.stillUp[kind] = append(a.stillUp[kind], int64(time.Since(behind)))
		default:
			a.lives[kind] = append(a.lives[kind], int64(closedAt.Sub(start)))
			if !behind.IsZero() {
				a.lags[kind] = append(a.lags[kind], int64(closedAt.Sub(behind)))
			}
		}
	}
}

// dial connects through d; the caller holds a place in gate (taken by start) until it calls
// release, once its connection is past its start.
func (a *attack) dial(ctx context.Context, d *net.Dialer, gate chan struct{}) (net.Conn, func(), error) {
	release := sync.OnceFunc(func() { <-gate })
	conn, err := d.DialContext(ctx, "tcp", a.addr)
	if err != nil {
		release()
		return nil, nil, err
	}
	return conn, release, nil
}

// stream opens a stream as u, reads its head and then nothing: the server must close it
// once it falls behind. The close monitor watches the server's side of the connection.
func (a *attack) stream(ctx context.Context, u *user, d *net.Dialer, gate chan struct{}) error {
	conn, release, err := a.dial(ctx, d, gate)
	if err != nil {
		return err
	}
	defer release()
	// Closing with unread data resets the connection, which frees the server's side at once.
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(streamRequest(a.host, u.token, nil)); err != nil {
		return err
	}
	if _, err := readHead(bufio.NewReaderSize(conn, 1024)); err != nil {
		return err
	}
	_ = conn.SetDeadline(time.Time{})
	start := time.Now()
	closed := a.mon.watch(conn.LocalAddr())
	done := a.opened(atkStream)
	release()
	select {
	case w := <-closed:
		done(start, w.behind, w.closed)
	case <-ctx.Done():
		done(start, a.mon.forget(conn.LocalAddr()), time.Time{})
	}
	return nil
}

// body sends a request head announcing a 1,000-byte body and then none of it, or one byte
// every trickleEvery; it reads until the server closes the connection.
func (a *attack) body(ctx context.Context, u *user, d *net.Dialer, kind int, gate chan struct{}) error {
	conn, release, err := a.dial(ctx, d, gate)
	if err != nil {
		return err
	}
	defer release()
	defer conn.Close()
	head := "POST /v1/conversations HTTP/1.1\r\nHost: " + a.host + "\r\nAuthorization: Bearer " + u.token +
		"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
	_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte(head)); err != nil {
		return err
	}
	start := time.Now()
	done := a.opened(kind)
	release()
	var got []byte
	buf := make([]byte, 512)
	last := start
	for ctx.Err() == nil {
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		n, err := conn.Read(buf)
		if len(got) < 12 {
			got = append(got, buf[:min(n, 12-len(got))]...)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			if kind == atkBodyTrickle && time.Since(last) >= trickleEvery {
				last = time.Now()
				_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
				_, _ = conn.Write([]byte{' '})
			}
			continue
		}
		if err != nil { // EOF or reset: the server closed it
			at := time.Now()
			status := -1
			if bytes.HasPrefix(got, []byte("HTTP/1.")) && len(got) >= 12 {
				status, _ = strconv.Atoi(string(got[9:12]))
			}
			a.mu.Lock()
			a.statuses[status]++
			a.mu.Unlock()
			done(start, start, at)
			return nil
		}
	}
	done(start, start, time.Time{})
	return nil
}

func (a *attack) note(err error) {
	a.mu.Lock()
	if a.firstErr == "" {
		a.firstErr = err.Error()
	}
	a.mu.Unlock()
}

// flood posts n messages of bigBody from the senders into their groups (sender k into
// groups[k]), rate per second in all (0: as fast as the server answers), until ctx ends.
func (a *attack) flood(ctx context.Context, senders []*user, groups []string, n int, rate float64) (accepted int64) {
	var wg sync.WaitGroup
	var next atomic.Int64
	var ok atomic.Int64
	body, _ := json.Marshal(map[string]string{"body": strings.Repeat("<", 4096)})
	for k := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := a.r.opt.urls[0] + "/v1/conversations/" + groups[k] + "/messages"
			for i := 0; ctx.Err() == nil; i++ {
				j := next.Add(1) - 1
				if j >= int64(n) {
					return
				}
				if err := a.r.b.callJSON(ctx, http.MethodPost, u, senders[k].token, body, nil); err != nil {
					if ctx.Err() == nil {
						a.note(fmt.Errorf("flood: %w", err))
					}
				} else {
					ok.Add(1)
				}
				if rate > 0 {
					sleepCtx(ctx, time.Duration(float64(len(senders))/rate*float64(time.Second)))
				}
			}
		}()
	}
	wg.Wait()
	return ok.Load()
}

// AttackResult is what the attacker connections saw.
type AttackResult struct {
	Kind      string     `json:"kind"`
	Started   int64      `json:"connections"`
	Closed    *Quantiles `json:"closed_after"`    // start .. closed by the server
	Lag       *Quantiles `json:"closed_behind"`   // streams: behind .. closed by the server
	Idle      int        `json:"idle_at_end"`     // streams open at the end that were never behind
	StillOpen int        `json:"open_at_end"`     // open when the attack ended
	OldestEnd float64    `json:"oldest_at_end_s"` // the oldest of those, s
	BoundS    float64    `json:"bound_s"`         // the documented time it may take
	OK        bool       `json:"within_bound"`
}

// results summarises each kind that ran against bounds (seconds, per kind).
func (a *attack) results(bounds [atkKinds]float64) []AttackResult {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []AttackResult
	for k := range atkKinds {
		if a.made[k].Load() == 0 {
			continue
		}
		r := AttackResult{Kind: atkNames[k], Started: a.made[k].Load(), Closed: quantiles(a.lives[k]),
			StillOpen: len(a.stillUp[k]), Idle: a.idle[k], BoundS: bounds[k]}
		for _, age := range a.stillUp[k] {
			r.OldestEnd = max(r.OldestEnd, time.Duration(age).Seconds())
		}
		// Judged from the start of a body, from falling behind for a stream; a bound of 0:
		// not judged. Streams none of which was closed after falling behind fail: the bound
		// was never put to the test (or the close monitor missed them all).
		worst := r.Closed
		if k == atkStream {
			r.Lag = quantiles(a.lags[k])
			worst = r.Lag
		}
		r.OK = bounds[k] == 0 || !r.unjudged() && r.OldestEnd <= bounds[k] && (worst == nil || worst.Max <= bounds[k]*1000)
		out = append(out, r)
	}
	return out
}

func (r AttackResult) String() string {
	verdict := fmt.Sprintf("within the bound %.0fs", r.BoundS)
	switch {
	case r.BoundS == 0:
		verdict = "not judged"
	case r.unjudged() && r.OldestEnd <= r.BoundS:
		verdict = "NOT judged: no stream was closed after falling behind"
	case !r.OK:
		verdict = "NOT " + verdict
	}
	lag := ""
	if r.Kind == atkNames[atkStream] {
		lag = fmt.Sprintf("; after falling behind %s; %d idle at the end", qstr(r.Lag), r.Idle)
	}
	return fmt.Sprintf("%d connections; closed by the server after %s%s; %d open at the end (longest %.1fs); %s",
		r.Started, qstr(r.Closed), lag, r.StillOpen, r.OldestEnd, verdict)
}

// unjudged: r is the non-reading streams and none of them was closed after falling behind.
func (r AttackResult) unjudged() bool { return r.Kind == atkNames[atkStream] && r.Lag == nil }

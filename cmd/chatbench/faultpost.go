package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// faultMsg is what became of one message of -mode faults. Only its sender's goroutine
// writes it; the main goroutine reads it after faultPoster.stop.
type faultMsg struct {
	first   int64 // first attempt, unix nanos
	ackAt   int64 // the 2xx answer, unix nanos; 0 when never acknowledged
	status  int   // of the acknowledgement: 201, or 200 for the original of a retry
	seq     int64
	id      string
	tries   int
	connErr bool // an attempt ended in a connection error (the message may have committed)
	saw503  bool
}

// faultPoster is the senders of -mode faults: -clients goroutines, each posting at
// -rate/-clients messages a second to the instance it prefers, retrying every message
// with the same client_id until it is acknowledged, as a real client would: on a
// connection error at once on the other instance, on a 503 after Retry-After.
type faultPoster struct {
	b      *bench
	urls   []string
	period time.Duration // between two messages of one sender
	msgs   []faultMsg
	next   atomic.Int64   // next message index
	pref   []atomic.Int32 // per sender: the instance it posts to
	wg     sync.WaitGroup

	stopping atomic.Bool
	pgDown   atomic.Bool // the database is being restarted

	acked, replays, connErrs, connErrsPG atomic.Int64
	s503, s503Bare, bad5xx, refused      atomic.Int64 // s503Bare: no valid Retry-After
	gaveUp, firstTry200, full            atomic.Int64
	first503, last503                    atomic.Int64 // unix nanos

	mu       sync.Mutex
	problems []string // the first few unexpected answers, for the report
}

func newFaultPoster(b *bench, opt options, t *tracker) *faultPoster {
	return &faultPoster{b: b, urls: opt.urls, msgs: make([]faultMsg, len(t.deliveries)),
		period: time.Duration(float64(time.Second) * float64(opt.clients) / opt.rate),
		pref:   make([]atomic.Int32, opt.clients)}
}

// start starts the senders; sender w prefers instance w%2.
func (p *faultPoster) start(ctx context.Context) {
	for w := range p.pref {
		p.pref[w].Store(int32(w % len(p.urls)))
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.sender(ctx, w)
		}()
	}
}

// goHome points every sender at its own instance again (after a restart).
func (p *faultPoster) goHome() {
	for w := range p.pref {
		p.pref[w].Store(int32(w % len(p.urls)))
	}
}

// stop waits until every sender has finished the message it is on.
func (p *faultPoster) stop() {
	p.stopping.Store(true)
	p.wg.Wait()
}

func (p *faultPoster) started() int64 { return min(p.next.Load(), int64(len(p.msgs))) }

func (p *faultPoster) ackedCount() int64 { return p.acked.Load() }

func (p *faultPoster) problem(format string, args ...any) {
	p.mu.Lock()
	if len(p.problems) < 10 {
		p.problems = append(p.problems, fmt.Sprintf(format, args...))
	}
	p.mu.Unlock()
}

// sender posts one message after another, paced at period, without catching up on time
// spent retrying.
func (p *faultPoster) sender(ctx context.Context, w int) {
	next := time.Now().Add(time.Duration(w) * p.period / time.Duration(len(p.pref)))
	for !p.stopping.Load() && ctx.Err() == nil {
		if !sleepCtx(ctx, time.Until(next)) {
			return
		}
		next = next.Add(p.period)
		if now := time.Now(); next.Before(now) {
			next = now
		}
		i := int(p.next.Add(1) - 1)
		if i >= len(p.msgs) {
			p.full.Add(1)
			return
		}
		p.send(ctx, w, i)
	}
}

// send posts message i until it is acknowledged, refused for good, or faultMsgTimeout.
func (p *faultPoster) send(ctx context.Context, w, i int) {
	m := &p.msgs[i]
	c, from := conversationOf(p.b.convs, i)
	m.first = time.Now().UnixNano()
	body := messageBody(m.first, i, p.b.opt.runID, 0)
	deadline := time.Unix(0, m.first).Add(faultMsgTimeout)
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		inst := int(p.pref[w].Load())
		m.tries++
		status, retry, reply, err := p.post(ctx, inst, c.id, from.token, body)
		wait := backoff
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			// The instance is gone, or the answer was lost: the message may have been
			// stored. Try the other instance, with the same client_id.
			m.connErr = true
			p.connErrs.Add(1)
			if p.pgDown.Load() {
				p.connErrsPG.Add(1)
				p.problem("message %d: connection error from instance %d while PostgreSQL was down: %v", i, inst, err)
			}
			p.pref[w].CompareAndSwap(int32(inst), int32(1-inst))
			backoff = min(2*backoff, time.Second)
		case status == http.StatusCreated || status == http.StatusOK:
			var msg struct {
				ID  string `json:"id"`
				Seq int64  `json:"seq"`
			}
			if err := json.Unmarshal(reply, &msg); err != nil || msg.ID == "" || msg.Seq < 1 {
				p.refused.Add(1)
				p.problem("message %d: HTTP %d with an unreadable message: %.200s", i, status, reply)
				return
			}
			if status == http.StatusOK && m.tries == 1 {
				// 200 means "the original of a client_id sent before": never on a first try.
				p.firstTry200.Add(1)
				p.problem("message %d: HTTP 200 (a replay) on its first attempt", i)
			}
			if status == http.StatusOK {
				p.replays.Add(1)
			}
			m.ackAt, m.status, m.seq, m.id = time.Now().UnixNano(), status, msg.Seq, msg.ID
			p.acked.Add(1)
			return
		case status == http.StatusServiceUnavailable:
			now := time.Now().UnixNano()
			m.saw503 = true
			p.s503.Add(1)
			p.first503.CompareAndSwap(0, now)
			p.last503.Store(now)
			d, ok := retryAfter(retry)
			if !ok {
				p.s503Bare.Add(1)
				p.problem("message %d: HTTP 503 without a valid Retry-After (%q): %.200s", i, retry, reply)
				d = time.Second
			}
			wait = d
		case status >= 500:
			p.bad5xx.Add(1)
			p.problem("message %d: HTTP %d from instance %d (pg down: %v): %.300s", i, status, inst, p.pgDown.Load(), reply)
			wait = 500 * time.Millisecond
		default:
			p.refused.Add(1)
			p.problem("message %d: HTTP %d from instance %d: %.300s", i, status, inst, reply)
			return
		}
		if time.Now().Add(wait).After(deadline) {
			p.gaveUp.Add(1)
			p.problem("message %d: not acknowledged after %d attempts in %s", i, m.tries, faultMsgTimeout)
			return
		}
		sleepCtx(ctx, wait)
	}
}

// post sends one attempt; err is a connection error (or no answer within 10 s).
func (p *faultPoster) post(ctx context.Context, inst int, conv, token string, body []byte) (status int, retryAfter string, reply []byte, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	u := p.urls[inst] + "/v1/conversations/" + conv + "/messages"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return 0, "", nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := p.b.client.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	reply, err = io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	if err != nil {
		return 0, "", nil, err
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), reply, nil
}

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// poster sends messages and records, per message index, what became of each.
type poster struct {
	b     *bench
	start time.Time // the schedule's origin
	n     int       // messages scheduled

	sched   []int64 // scheduled send time, unix nanos
	postLat []int64 // reply time - scheduled time, ns; 0 when not accepted
	doneAt  []int64 // reply time, unix nanos, accepted messages only
	ok      []bool  // accepted (201)

	accepted, rejected, errs, overload atomic.Int64
	byStatus                           sync.Map // status code -> *atomic.Int64
	rateLimited                        atomic.Bool
	lagMax                             time.Duration // scheduler: how late a send was launched at worst

	errMu    sync.Mutex
	firstErr string
}

func newPoster(b *bench, n int) *poster {
	return &poster{b: b, n: n, sched: make([]int64, n), postLat: make([]int64, n),
		doneAt: make([]int64, n), ok: make([]bool, n)}
}

// conversationOf is the conversation and the sender of message i: conversation
// i % len(convs), its two participants taking turns.
func conversationOf(convs []conversation, i int) (*conversation, *user) {
	nc := len(convs)
	c := &convs[i%nc]
	return c, c.users[senderSide(nc, i)]
}

// senderSide is which participant of its conversation sends message i (0 or 1): the
// conversation's two participants take turns, one round of all conversations each.
func senderSide(nconv, i int) int { return (i / nconv) % 2 }

// senderStream is the index in bench.streams of the stream of message i's sender: stream
// 2*c+side is participant side of conversation c (planStreams).
func senderStream(nconv, i int) int { return 2*(i%nconv) + senderSide(nconv, i) }

// streamInstance is the instance (index in -url) that stream k is opened on. A
// conversation's two streams are k and k+1 with k even, so with two or more instances they
// are never on the same one.
func streamInstance(k, ninst int) int { return k % ninst }

// postInstance is the instance message i is posted to: the one its sender's stream is on,
// as a client posts where it is connected. Its recipient's stream is then on another
// instance whenever there are two or more, so every delivery to a recipient measures the
// cross-instance path.
func postInstance(nconv, ninst, i int) int { return streamInstance(senderStream(nconv, i), ninst) }

// openLoop sends message i at start + i/rate, whatever the earlier replies do; at most
// -clients are in flight and a message due while all are busy is counted as client
// overload, not queued.
func (p *poster) openLoop(ctx context.Context, rate float64) {
	sem := make(chan struct{}, p.b.opt.clients)
	var wg sync.WaitGroup
	period := float64(time.Second) / rate
	p.start = time.Now().Add(50 * time.Millisecond)
	sent := 0
	for i := 0; i < p.n; i++ {
		at := p.start.Add(time.Duration(float64(i) * period))
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		} else if -d > p.lagMax {
			p.lagMax = -d
		}
		if ctx.Err() != nil {
			p.n = i
			break
		}
		p.sched[i] = at.UnixNano()
		select {
		case sem <- struct{}{}:
			sent++
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				p.post(ctx, i)
				<-sem
			}(i)
		default:
			p.overload.Add(1)
		}
	}
	wg.Wait()
}

// closedLoop sends messages 0..n-1 as fast as -clients concurrent senders allow.
func (p *poster) closedLoop(ctx context.Context) {
	var next atomic.Int64
	var wg sync.WaitGroup
	p.start = time.Now()
	for w := 0; w < p.b.opt.clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && !p.rateLimited.Load() {
				i := int(next.Add(1) - 1)
				if i >= p.n {
					return
				}
				p.sched[i] = time.Now().UnixNano()
				p.post(ctx, i)
			}
		}()
	}
	wg.Wait()
}

// post sends message i, whose body is "<scheduled unix nanos> <i>" padded to -body-bytes,
// to its sender's instance.
func (p *poster) post(ctx context.Context, i int) {
	opt := &p.b.opt
	c, from := conversationOf(p.b.convs, i)
	body := messageBody(p.sched[i], i, opt.runID, opt.bodyBytes)
	inst := postInstance(len(p.b.convs), len(opt.urls), i)
	u := opt.urls[inst] + "/v1/conversations/" + c.id + "/messages"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		p.fail(err)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+from.token)
	resp, err := p.b.client.Do(req)
	now := time.Now().UnixNano()
	if err != nil {
		p.fail(err)
		return
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusCreated:
		p.accepted.Add(1)
		p.ok[i] = true
		p.postLat[i] = now - p.sched[i]
		p.doneAt[i] = now
		return
	case http.StatusTooManyRequests:
		if !p.rateLimited.Swap(true) {
			p.note(errRateLimited.Error())
		}
	default:
		p.note(fmt.Sprintf("HTTP %d: %s", resp.StatusCode, msg))
	}
	p.rejected.Add(1)
	v, _ := p.byStatus.LoadOrStore(resp.StatusCode, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// messageBody is the JSON of message i: body "<sched unix nanos> <i>", client_id
// "<runID>-<i>". With size > 0 the body is padded to size bytes with dots, which
// parseMessage skips; a body already that long is left as it is.
func messageBody(sched int64, i int, runID string, size int) []byte {
	body := make([]byte, 0, 96+size)
	body = append(body, `{"body":"`...)
	start := len(body)
	body = strconv.AppendInt(body, sched, 10)
	body = append(body, ' ')
	body = strconv.AppendInt(body, int64(i), 10)
	for range size - (len(body) - start) {
		body = append(body, '.')
	}
	body = append(body, `","client_id":"`...)
	body = append(body, runID...)
	body = append(body, '-')
	body = strconv.AppendInt(body, int64(i), 10)
	body = append(body, `"}`...)
	return body
}

func (p *poster) fail(err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	p.errs.Add(1)
	p.note(err.Error())
}

func (p *poster) note(s string) {
	p.errMu.Lock()
	if p.firstErr == "" {
		p.firstErr = s
	}
	p.errMu.Unlock()
}

func (p *poster) statuses() map[string]int64 {
	out := map[string]int64{}
	p.byStatus.Range(func(k, v any) bool {
		out[strconv.Itoa(k.(int))] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

// acceptedPerConv counts accepted messages per conversation.
func (p *poster) acceptedPerConv() []int32 {
	out := make([]int32, len(p.b.convs))
	for i := 0; i < p.n; i++ {
		if p.ok[i] {
			out[i%len(p.b.convs)]++
		}
	}
	return out
}

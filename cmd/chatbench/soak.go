package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// -mode soak: -soak-for (10 minutes) of mixed load against two instances: -rate sends per
// second (one in five edited afterwards), as many reads (history, conversation list, one
// conversation, unread counts) and typing notices, every participant's stream held open
// (resuming on the other instance when its own goes away), soakChurners streams opening
// and closing every few seconds, soakPollers long polls, and instance B restarted
// (SIGTERM, then started again) halfway. Every -sample-every it records each instance's
// RSS, goroutines, open files (sockets included) and streams in a CSV (-csv) and plots them
// (-plot): they should stay flat. At the end every accepted message must have reached both
// of its participants' streams exactly once.
const (
	soakChurners = 20
	soakPollers  = 10
	soakPollWait = 5 // seconds, the long polls' timeout
)

// soakOps are the operations the soak counts.
var soakOps = []string{"send", "edit", "history", "conversations", "conversation", "unread", "typing", "poll", "churn stream"}

type soakRun struct {
	*hostileRun
	t        *tracker
	targets  []streamTarget // each instance's address, for the churning streams
	accepted []atomic.Bool  // per message index
	ok, fail []atomic.Int64
	mu       sync.Mutex
	firstErr map[string]string
}

func runSoak(ctx context.Context, opt options) int {
	ctx, cancel := context.WithTimeout(ctx, opt.soakFor+5*time.Minute)
	defer cancel()
	r, err := startHostile(ctx, opt, 2, map[string]string{})
	defer r.cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatbench: soak setup:", err)
		return 2
	}
	n := int(opt.rate*opt.soakFor.Seconds()) + 1
	s := &soakRun{hostileRun: r, t: newTracker(len(r.b.convs), n), accepted: make([]atomic.Bool, n),
		ok: make([]atomic.Int64, len(soakOps)), fail: make([]atomic.Int64, len(soakOps)), firstErr: map[string]string{}}
	fs := startFaultStreams(ctx, r.b, s.t)
	defer fs.close()
	s.targets = fs.targets
	if err := fs.waitUp(ctx, faultReady); err != nil {
		fmt.Fprintln(os.Stderr, "chatbench: soak streams:", err)
		return 2
	}
	smp := r.startSampler(ctx, opt.sampleEvery)
	start := time.Now()
	logf("soak: %s of mixed load on 2 instances, %.0f sends/s, %d streams, B restarted at %s",
		opt.soakFor, opt.rate, len(r.b.streams), opt.soakFor/2)

	restartAt := opt.soakFor / 2
	restartErr := s.mix(ctx, fs, start, restartAt)
	s.awaitDeliveries()
	time.Sleep(300 * time.Millisecond)
	smp.stop()
	fs.close()

	acc := make([]bool, n)
	for i := range acc {
		acc[i] = s.accepted[i].Load()
	}
	d := checkDeliveries(s.t, acc)
	samples := smp.between(start, time.Now().Add(time.Second))
	ok := s.report(opt, d, samples, start, restartAt, restartErr)
	if opt.csvPath != "" {
		if err := writeSoakCSV(opt.csvPath, samples, start); err != nil {
			logf("csv: %v", err)
		}
	}
	if opt.plotPath != "" {
		r.b.chart = soakChart(samples, start, opt, restartAt)
		if err := r.b.plot(opt.plotPath); err != nil {
			logf("plot: %v", err)
		}
	}
	if !ok {
		return 1
	}
	return 0
}

// mix runs the mixed load (sends, reads, churners and pollers) from start until -soak-for
// is over, restarting instance B with SIGTERM at restartAt; it returns why B did not come
// back, if it did not.
func (s *soakRun) mix(ctx context.Context, fs *faultStreams, start time.Time, restartAt time.Duration) error {
	opt, r := s.opt, s.hostileRun
	wctx, stopWork := context.WithDeadline(ctx, start.Add(opt.soakFor))
	var wg sync.WaitGroup
	work := func(f func(context.Context, int), k int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(wctx, k)
		}()
	}
	work(s.send, 0)
	work(s.read, 0)
	for k := range soakChurners {
		work(s.churn, k)
	}
	for k := range soakPollers {
		work(s.poll, k)
	}
	var restartErr error
	if sleepCtx(wctx, restartAt) {
		logf("soak: restarting chatd B (SIGTERM)")
		r.inst[1].stop(5 * time.Second)
		sleepCtx(wctx, 2*time.Second)
		if restartErr = r.inst[1].start(wctx, faultReady); restartErr == nil {
			logf("soak: chatd B is back, pid %d", r.inst[1].cmd.Process.Pid)
			fs.goHome()
		} else {
			logf("soak: restarting B: %v", restartErr)
		}
	}
	<-wctx.Done()
	stopWork()
	wg.Wait()
	return restartErr
}

// awaitDeliveries waits (up to 15 s) for the deliveries still on their way: two for every
// accepted message.
func (s *soakRun) awaitDeliveries() {
	want := int64(0)
	for i := range s.accepted {
		if s.accepted[i].Load() {
			want += 2
		}
	}
	for deadline := time.Now().Add(15 * time.Second); s.t.delivered.Load() < want && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
}

// do runs one operation against instance inst, and once more against the other when the
// first got no answer or a 503 (an instance being restarted: a send is retried with its
// client_id, so it cannot be stored twice); it counts the outcome.
func (s *soakRun) do(ctx context.Context, op, inst int, method, path, token string, body []byte, out any) bool {
	err := s.b.callJSON(ctx, method, s.opt.urls[inst%2]+path, token, body, out)
	var ae *apiError
	if err != nil && ctx.Err() == nil && (!errors.As(err, &ae) || ae.status == http.StatusServiceUnavailable) {
		err = s.b.callJSON(ctx, method, s.opt.urls[(inst+1)%2]+path, token, body, out)
	}
	if err == nil {
		s.ok[op].Add(1)
		return true
	}
	if ctx.Err() != nil {
		return false
	}
	s.fail[op].Add(1)
	s.mu.Lock()
	if s.firstErr[soakOps[op]] == "" {
		s.firstErr[soakOps[op]] = err.Error()
	}
	s.mu.Unlock()
	return false
}

// send posts message i at -rate per second (at most -clients in flight; a message due
// while all are busy is skipped) and edits one in five.
func (s *soakRun) send(ctx context.Context, _ int) {
	sem := make(chan struct{}, s.opt.clients)
	var wg sync.WaitGroup
	defer wg.Wait()
	every := time.Duration(float64(time.Second) / s.opt.rate)
	next := time.Now()
	for i := 0; i < len(s.accepted) && sleepCtx(ctx, time.Until(next)); i++ {
		next = next.Add(every)
		select {
		case sem <- struct{}{}:
		default:
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, from := conversationOf(s.b.convs, i)
			var m struct {
				ID string `json:"id"`
			}
			path := "/v1/conversations/" + c.id + "/messages"
			if !s.do(ctx, 0, i, http.MethodPost, path, from.token, messageBody(time.Now().UnixNano(), i, s.opt.runID, 0), &m) {
				return
			}
			s.accepted[i].Store(true)
			if i%5 == 0 {
				// The edit keeps the body chatbench parses, so the stream checks still hold.
				body, _ := json.Marshal(map[string]string{"body": fmt.Sprintf("%d %d", time.Now().UnixNano(), i)})
				s.do(ctx, 1, i, http.MethodPatch, path+"/"+m.ID, from.token, body, nil)
			}
		}()
	}
}

// read makes -rate reads and typing notices per second, one at a time, as random users.
func (s *soakRun) read(ctx context.Context, _ int) {
	every := time.Duration(float64(time.Second) / s.opt.rate)
	for i := 0; sleepCtx(ctx, every); i++ {
		c := &s.b.convs[rand.IntN(len(s.b.convs))]
		u := c.users[i%2]
		switch op := 2 + i%5; soakOps[op] {
		case "history":
			s.do(ctx, op, i, http.MethodGet, "/v1/conversations/"+c.id+"/messages?limit=50", u.token, nil, nil)
		case "conversations":
			s.do(ctx, op, i, http.MethodGet, "/v1/conversations?limit=20", u.token, nil, nil)
		case "conversation":
			s.do(ctx, op, i, http.MethodGet, "/v1/conversations/"+c.id, u.token, nil, nil)
		case "unread":
			s.do(ctx, op, i, http.MethodGet, "/v1/unread", u.token, nil, nil)
		case "typing":
			s.do(ctx, op, i, http.MethodPost, "/v1/conversations/"+c.id+"/typing", u.token, []byte(`{"typing":true}`), nil)
		}
	}
}

// poll long-polls as one user, cursor to cursor.
func (s *soakRun) poll(ctx context.Context, k int) {
	u := s.b.convs[k%len(s.b.convs)].users[1]
	cursor := ""
	for i := 0; ctx.Err() == nil; i++ {
		var out struct {
			Cursor string `json:"cursor"`
		}
		path := "/v1/events/poll?timeout=" + strconv.Itoa(soakPollWait)
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		if s.do(ctx, 7, k+i, http.MethodGet, path, u.token, nil, &out) {
			cursor = out.Cursor
		} else {
			sleepCtx(ctx, time.Second)
		}
	}
}

// churn opens a stream as one user for 1 to 5 s, closes it, and opens another.
func (s *soakRun) churn(ctx context.Context, k int) {
	t := newTracker(len(s.b.convs), 0) // its deliveries are not checked
	for i := 0; ctx.Err() == nil; i++ {
		held := s.b.streams[(k*7+i)%len(s.b.streams)]
		inst := (k + i) % 2
		st := &stream{conv: held.conv, user: held.user, side: held.side, dialer: held.dialer, inst: uint8(inst),
			addr: s.targets[inst].addr, host: s.targets[inst].host}
		cctx, cancel := context.WithTimeout(ctx, time.Second+time.Duration(rand.IntN(4000))*time.Millisecond)
		ready := false
		err := st.run(cctx, t, false, func() { ready = true })
		cancel()
		if ready {
			s.ok[8].Add(1)
		} else if ctx.Err() == nil {
			s.fail[8].Add(1)
			s.mu.Lock()
			if s.firstErr["churn stream"] == "" && err != nil {
				s.firstErr["churn stream"] = err.Error()
			}
			s.mu.Unlock()
			sleepCtx(ctx, 500*time.Millisecond)
		}
	}
}

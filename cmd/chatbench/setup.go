package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// setupWorkers is how many conversations are created concurrently.
const setupWorkers = 32

// user is one participant: its id (the JWT sub) and a token for it.
type user struct {
	id    string
	token string
}

// conversation is one direct conversation and its two participants.
type conversation struct {
	id    string
	users [2]*user
}

// bench holds what every mode shares: the conversations, the streams, the HTTP client,
// the server and database observers, and the chart the mode leaves behind.
type bench struct {
	opt     options
	res     *Result
	convs   []conversation
	streams []*stream
	client  *http.Client  // REST calls and message POSTs (keep-alive)
	dialers []*net.Dialer // stream sockets, one per source address
	db      *dbWatch      // nil without -db
	chart   *chart        // what -plot draws; set by the mode
}

func newBench(ctx context.Context, opt options, res *Result) (*bench, error) {
	b := &bench{opt: opt, res: res}
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        0, // no global cap
		MaxIdleConnsPerHost: opt.clients + setupWorkers,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
	}
	b.client = &http.Client{Transport: tr, Timeout: 30 * time.Second}

	// Loopback targets can be reached from any 127.0.0.x: spreading the streams over several
	// source addresses multiplies the ephemeral ports available.
	loopback := true
	for _, u := range opt.urls {
		pu, _ := url.Parse(u)
		host := pu.Hostname()
		ip := net.ParseIP(host)
		if host != "localhost" && (ip == nil || !ip.IsLoopback() || ip.To4() == nil) {
			loopback = false
		}
	}
	if opt.sources == 0 || !loopback {
		if opt.sources > 0 {
			logf("-sources ignored: not every -url is an IPv4 loopback address")
		}
		b.dialers = []*net.Dialer{{Timeout: 10 * time.Second}}
		res.Sources = 0
	} else {
		for i := 0; i < opt.sources; i++ {
			ip := net.IPv4(127, 0, 0, byte(2+i))
			b.dialers = append(b.dialers, &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: ip}})
		}
	}

	if opt.dbURL != "" {
		w, err := openDBWatch(ctx, opt.dbURL)
		if err != nil {
			return nil, fmt.Errorf("-db: %w", err)
		}
		b.db = w
	}
	return b, nil
}

func (b *bench) close() {
	if b.db != nil {
		b.db.close()
	}
	b.client.CloseIdleConnections()
}

// setup mints the users' tokens and creates one direct conversation per pair of streams.
func (b *bench) setup(ctx context.Context) error {
	if err := b.signUsers(); err != nil {
		return err
	}
	n := b.opt.streams / 2
	before := b.scrape(ctx)
	start := time.Now()
	if err := b.createConversations(ctx); err != nil {
		return err
	}
	logf("setup: %d conversations in %.1fs", n, time.Since(start).Seconds())
	b.waitReader(ctx, before, start, float64(n*len(b.opt.urls)))
	b.planStreams()
	return nil
}

// signUsers makes the two users of every conversation, with tokens that outlive the run.
func (b *bench) signUsers() error {
	opt := b.opt
	// Streams end when their token expires: cover the whole run with room to spare.
	ttl := 2*time.Hour + opt.duration + opt.idleFor + 2*opt.drain
	now := time.Now()
	b.convs = make([]conversation, opt.streams/2)
	for i := range b.convs {
		for k, side := range []string{"a", "b"} {
			id := fmt.Sprintf("%s-%d-%s", opt.runID, i, side)
			tok, err := signToken(opt.secret, id, id, ttl, now)
			if err != nil {
				return err
			}
			b.convs[i].users[k] = &user{id: id, token: tok}
		}
	}
	return nil
}

// createConversations creates the conversations, setupWorkers at a time, each through
// the instance its index picks; the first failure stops them all.
func (b *bench) createConversations(ctx context.Context) error {
	n := b.opt.streams / 2
	var next atomic.Int64
	var done atomic.Int64
	errc := make(chan error, setupWorkers)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < setupWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				c := &b.convs[i]
				body, _ := json.Marshal(map[string]string{"participant_id": c.users[1].id})
				var out struct {
					ID string `json:"id"`
				}
				u := b.opt.urls[i%len(b.opt.urls)] + "/v1/conversations"
				if err := b.callJSON(ctx, http.MethodPost, u, c.users[0].token, body, &out); err != nil {
					errc <- fmt.Errorf("create conversation %d: %w", i, err)
					cancel()
					return
				}
				if out.ID == "" {
					errc <- fmt.Errorf("create conversation %d: no id in the response", i)
					cancel()
					return
				}
				c.id = out.ID
				if d := done.Add(1); d%2000 == 0 {
					logf("setup: %d/%d conversations", d, n)
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
	}
	return ctx.Err()
}

// planStreams lays out the streams, two per conversation, over the instances and the
// source addresses.
func (b *bench) planStreams() {
	opt := b.opt
	b.streams = make([]*stream, opt.streams)
	for k := range b.streams {
		inst := streamInstance(k, len(opt.urls))
		pu, _ := url.Parse(opt.urls[inst])
		b.streams[k] = &stream{
			conv:   k / 2,
			user:   b.convs[k/2].users[k%2],
			addr:   hostPort(pu),
			host:   pu.Host,
			inst:   uint8(inst),
			side:   uint8(k % 2),
			dialer: b.dialers[k%len(b.dialers)],
		}
	}
}

func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// apiError is a non-2xx answer of the service.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("HTTP %d %s: %s", e.status, e.code, e.message)
	if e.status == http.StatusTooManyRequests {
		s += " (the server rate-limits writes: run chatd with CHAT_RATE_LIMIT=0)"
	}
	if e.status == http.StatusUnauthorized {
		s += " (does -secret match the server's CHAT_JWT_SECRET?)"
	}
	return s
}

// errRateLimited tells the user how to run the server for a benchmark.
var errRateLimited = errors.New("the server answered 429: run chatd with CHAT_RATE_LIMIT=0 for benchmarks")

// callJSON sends one REST request and decodes a 2xx answer into out (when not nil).
func (b *bench) callJSON(ctx context.Context, method, u, token string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.Unmarshal(data, &e)
		if e.Error.Code == "" {
			e.Error.Message = strings.TrimSpace(string(data))
		}
		return &apiError{status: resp.StatusCode, code: e.Error.Code, message: e.Error.Message}
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// waitReader waits until the instances' log readers have fanned out the setup's
// conversation events (one per conversation, read by every instance), so that they do not
// hold up the messages measured next; it records how long they took.
func (b *bench) waitReader(ctx context.Context, before serverSample, start time.Time, want float64) {
	if before.err != nil {
		return
	}
	deadline := time.Now().Add(2 * time.Minute)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		s := b.scrape(ctx)
		if s.err != nil {
			return
		}
		if s.read-before.read >= want {
			b.res.SetupReaderS = time.Since(start).Seconds()
			logf("setup: the server fanned out the %.0f conversation events %.1fs after setup began", want, b.res.SetupReaderS)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.res.SetupReaderS = -1
	logf("setup: the server's log reader has not read the conversation events after 2 minutes")
}

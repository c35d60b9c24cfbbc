package main

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseMessage(t *testing.T) {
	data := []byte(`{"id":"m1","conversation_id":"c","seq":42,"sender_id":"r-1-a","body":"1700000000123456789 17","client_id":"r-17"}`)
	sent, idx, seq, ok := parseMessage(data)
	if !ok || sent != 1700000000123456789 || idx != 17 || seq != 42 {
		t.Fatalf("parseMessage = %d %d %d %v", sent, idx, seq, ok)
	}
	for _, bad := range []string{`{"seq":1,"body":"hello"}`, `{"seq":1,"body":"12 x"}`, `{"body":"12 3"}`, `{}`} {
		if _, _, _, ok := parseMessage([]byte(bad)); ok {
			t.Errorf("parseMessage(%s) ok", bad)
		}
	}
}

// sseServer answers GET /v1/events like chatd, with the given message events (index, seq)
// for conversation 0, then holds the stream open.
func sseServer(t *testing.T, msgs [][2]int) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, `{"error":{"code":"unauthorized"}}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		var b strings.Builder
		b.WriteString("retry: 2000\n\n: chatd stream\n\nevent: ready\ndata: {\"cursor\":\"1_1\"}\n\nid: 1_1\n\n")
		for i, m := range msgs {
			fmt.Fprintf(&b, "id: 9_%d\nevent: message\ndata: {\"seq\":%d,\"sender_id\":\"x\",\"body\":\"%d %d\"}\n\n",
				i, m[1], time.Now().UnixNano(), m[0])
			if i == 0 {
				b.WriteString(": ping\n\n")
			}
		}
		_, _ = w.Write([]byte(b.String()))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
}

func runFake(t *testing.T, srv *httptest.Server, token string, t0 *tracker) (*stream, error) {
	u, _ := url.Parse(srv.URL)
	s := &stream{conv: 0, user: &user{id: "u", token: token}, addr: u.Host, host: u.Host, dialer: &net.Dialer{}}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.run(ctx, t0, false, nil) }()
	deadline := time.Now().Add(5 * time.Second)
	for t0.ready.Load()+t0.failed.Load() == 0 || (t0.ready.Load() == 1 && t0.delivered.Load() < 3) {
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	return s, <-errc
}

func TestStreamCountsDuplicatesAndGaps(t *testing.T) {
	// Message 0 twice, message 1 missing from this stream, message 2: seq 1, 1, 3.
	srv := sseServer(t, [][2]int{{0, 1}, {0, 1}, {2, 3}})
	defer srv.Close()
	tr := newTracker(1, 3)
	s, err := runFake(t, srv, "tok", tr)
	if err != nil {
		t.Fatal(err)
	}
	if tr.ready.Load() != 1 || tr.delivered.Load() != 3 || tr.pings.Load() != 1 {
		t.Fatalf("ready %d delivered %d pings %d", tr.ready.Load(), tr.delivered.Load(), tr.pings.Load())
	}
	if got := string(s.lastID); got != "9_2" {
		t.Errorf("last id %q", got)
	}
	if tr.seqErrs.Load() != 2 { // the repeated seq 1 and the gap to 3
		t.Errorf("seq errors %d, want 2", tr.seqErrs.Load())
	}
	// As if the peer stream had received each message once.
	tr.deliveries[0].Add(1)
	tr.deliveries[1].Add(1)
	tr.deliveries[2].Add(1)
	d := checkDeliveries(tr, []bool{true, true, true})
	if d.Expected != 6 || d.Lost != 1 || d.Duplicates != 1 || d.Delivered != 5 {
		t.Errorf("check = %+v", d)
	}
}

func TestStreamOpenError(t *testing.T) {
	srv := sseServer(t, nil)
	defer srv.Close()
	tr := newTracker(1, 0)
	_, err := runFake(t, srv, "wrong", tr)
	if err == nil || !strings.Contains(err.Error(), "HTTP 401") || tr.failed.Load() != 1 {
		t.Fatalf("err %v, failed %d", err, tr.failed.Load())
	}
}

func TestQuantilesAndBuckets(t *testing.T) {
	var ns []int64
	for i := 1; i <= 100; i++ {
		ns = append(ns, int64(i)*int64(time.Millisecond))
	}
	q := quantiles(ns)
	if q.P50 != 50 || q.P90 != 90 || q.P99 != 99 || q.Max != 100 {
		t.Errorf("quantiles = %+v", q)
	}
	for d, want := range map[time.Duration]time.Duration{5 * time.Second: 250 * time.Millisecond,
		10 * time.Second: 500 * time.Millisecond, 60 * time.Second: time.Second, 10 * time.Minute: 5 * time.Second} {
		if got := bucketWidth(d); got != want {
			t.Errorf("bucketWidth(%s) = %s, want %s", d, got, want)
		}
	}
}

func TestRenderEdgeCases(t *testing.T) {
	nan := math.NaN()
	for _, c := range []*chart{
		{title: "empty", logY: true, y2Label: "r"},
		{title: "gaps", logY: true, series: []series{{name: "a", pts: []point{{0.5, nan}, {1.5, 3}, {2.5, nan}}}}},
		{title: "flat", series: []series{{name: "a", pts: []point{{0, 0}, {1, 0}}}}},
	} {
		img := c.render(400, 300)
		if img.Bounds().Dx() != 400 {
			t.Fatal(c.title)
		}
	}
}

// secondsP99 groups messages by the second they were scheduled in (rate per second, in
// index order) and counts only the deliveries that happened (at most two per message).
func TestSecondsP99(t *testing.T) {
	tr := newTracker(1, 250) // 100 a second: two full seconds and half of a third
	for i := range 250 {
		tr.deliveries[i].Store(2)
		tr.latency[2*i], tr.latency[2*i+1] = int64(time.Millisecond), int64(time.Millisecond)
	}
	// The second second's first three messages are slow: its p99 is the 198th of 200.
	for i, ms := range []int64{80, 85, 90} {
		tr.latency[2*(100+i)] = ms * int64(time.Millisecond)
	}
	// In the third second, one copy each of two messages never came: the slots they would
	// have filled do not count.
	for _, i := range []int{220, 221} {
		tr.deliveries[i].Store(1)
		tr.latency[2*i+1] = int64(time.Hour)
	}
	got := secondsP99(tr, 100)
	if want := []float64{1, 80, 1}; !slices.Equal(got, want) {
		t.Errorf("secondsP99 = %v, want %v", got, want)
	}
}

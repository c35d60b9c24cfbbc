package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// planned lays out streams for nconv conversations over ninst instances, as a load run does.
func planned(nconv, ninst int) *bench {
	b := &bench{opt: options{streams: 2 * nconv}, dialers: []*net.Dialer{{}}, convs: make([]conversation, nconv)}
	for i := range ninst {
		b.opt.urls = append(b.opt.urls, fmt.Sprintf("http://127.0.0.1:%d", 18000+i))
	}
	for c := range b.convs {
		b.convs[c].users = [2]*user{{id: fmt.Sprintf("%d-a", c)}, {id: fmt.Sprintf("%d-b", c)}}
	}
	b.planStreams()
	return b
}

func TestMessagesArePostedToTheSendersInstance(t *testing.T) {
	for _, tc := range [][2]int{{100, 2}, {100, 4}, {100, 8}, {7, 3}, {1, 2}, {5, 1}} {
		nconv, ninst := tc[0], tc[1]
		b := planned(nconv, ninst)
		byUser := map[*user]*stream{}
		for _, s := range b.streams {
			byUser[s.user] = s
		}
		perInst := make([]int, ninst)
		for i := range 4 * nconv {
			c, from := conversationOf(b.convs, i)
			to := c.users[0]
			if to == from {
				to = c.users[1]
			}
			posted := postInstance(nconv, ninst, i)
			perInst[posted]++
			if got := int(byUser[from].inst); got != posted {
				t.Fatalf("%d conversations, %d instances: message %d posted to instance %d, its sender's stream is on %d", nconv, ninst, i, posted, got)
			}
			if rcpt := int(byUser[to].inst); ninst > 1 && rcpt == posted {
				t.Fatalf("%d conversations, %d instances: message %d's recipient is on the instance it was posted to (%d)", nconv, ninst, i, posted)
			}
			if s := senderSide(nconv, i); byUser[from].side != uint8(s) || c.users[s] != from {
				t.Fatalf("message %d: sender side %d, stream side %d", i, s, byUser[from].side)
			}
		}
		if ninst > 1 && nconv%ninst == 0 {
			for k, n := range perInst { // the load is spread evenly over the instances
				if n != 4*nconv/ninst {
					t.Errorf("%d conversations, %d instances: instance %d got %d of %d posts", nconv, ninst, k, n, 4*nconv)
				}
			}
		}
	}
}

func TestSplitDeliveriesFindsTheRecipients(t *testing.T) {
	const nconv, ninst = 3, 2
	b := planned(nconv, ninst)
	tr := newTracker(nconv, 6)
	deliver := func(i int, s *stream, lat time.Duration) {
		n := tr.deliveries[i].Add(1)
		tr.latency[2*i+int(n)-1], tr.slotInst[2*i+int(n)-1], tr.slotSide[2*i+int(n)-1] = int64(lat), s.inst, s.side
	}
	for i := range 6 {
		sender := b.streams[senderStream(nconv, i)]
		rcpt := b.streams[senderStream(nconv, i)^1]
		switch i {
		case 0: // the recipient's copy first
			deliver(i, rcpt, 10*time.Millisecond)
			deliver(i, sender, time.Millisecond)
		case 4: // only the sender's own copy arrived
			deliver(i, sender, time.Millisecond)
		case 5: // the recipient twice (a duplicate), never the sender
			deliver(i, rcpt, 10*time.Millisecond)
			deliver(i, rcpt, 10*time.Millisecond)
		default:
			deliver(i, sender, time.Millisecond)
			deliver(i, rcpt, 10*time.Millisecond)
		}
	}
	d := splitDeliveries(tr, ninst)
	if len(d.recipient) != 5 {
		t.Fatalf("recipient deliveries %d, want 5 (message 4 never reached its recipient, message 5 counts once)", len(d.recipient))
	}
	for _, v := range d.recipient {
		if v != int64(10*time.Millisecond) {
			t.Fatalf("a sender's copy counted as the recipient's: %v", d.recipient)
		}
	}
	if len(d.other) != 6 || len(d.same) != 5 {
		t.Fatalf("other instance %d (want the 6 recipient slots), same %d (want the 5 senders' copies)", len(d.other), len(d.same))
	}
	for _, v := range d.same {
		if v != int64(time.Millisecond) {
			t.Fatalf("a recipient's copy on the posting instance: %v", d.same)
		}
	}
}

func TestJudgeHeld(t *testing.T) {
	q := func(p99 float64) *Quantiles { return &Quantiles{N: 1, P99: p99} }
	for _, tc := range []struct {
		scheduled, delivered int64
		p99                  *Quantiles
		held                 bool
		why                  string
	}{
		{1000, 1000, q(5), true, "100.00 %"},
		{1000, 990, q(1000), true, "99.00 %"}, // both limits are inclusive
		{1000, 989, q(5), false, "98.90 %"},
		{1000, 1000, q(1000.5), false, "p99 1.00s > 1.00s"},
		{1000, 1000, nil, false, "no recipient delivery"},
		{0, 0, q(1), false, "no message scheduled"},
	} {
		frac, held, why := judgeHeld(tc.scheduled, tc.delivered, tc.p99)
		if held != tc.held || !strings.Contains(why, tc.why) {
			t.Errorf("judgeHeld(%d, %d, %+v) = %v %q, want %v and %q", tc.scheduled, tc.delivered, tc.p99, held, why, tc.held, tc.why)
		}
		if tc.scheduled > 0 && frac != float64(tc.delivered)/float64(tc.scheduled) {
			t.Errorf("fraction %v", frac)
		}
	}
}

// event is the data line chatd would send for a message posted with body json.
func event(t testing.TB, posted []byte, seq int) []byte {
	var m struct {
		Body     string `json:"body"`
		ClientID string `json:"client_id"`
	}
	if err := json.Unmarshal(posted, &m); err != nil {
		t.Fatalf("%s: %v", posted, err)
	}
	out, _ := json.Marshal(map[string]any{"id": "m", "seq": seq, "sender_id": "s", "body": m.Body, "client_id": m.ClientID})
	return out
}

func TestMessageBodyIsPaddedAndStillParsed(t *testing.T) {
	for _, size := range []int{0, 10, 24, 100, 4096} {
		posted := messageBody(1700000000123456789, 17, "run", size)
		var m struct{ Body string }
		if err := json.Unmarshal(posted, &m); err != nil {
			t.Fatal(err)
		}
		if want := max(size, len("1700000000123456789 17")); len(m.Body) != want {
			t.Errorf("size %d: body of %d bytes, want %d", size, len(m.Body), want)
		}
		sent, idx, seq, ok := parseMessage(event(t, posted, 3))
		if !ok || sent != 1700000000123456789 || idx != 17 || seq != 3 {
			t.Errorf("size %d: parseMessage = %d %d %d %v", size, sent, idx, seq, ok)
		}
	}
	if _, _, _, ok := parseMessage([]byte(`{"seq":1,"body":"12 3.x"}`)); ok {
		t.Error("a body with more than dots after the index parsed")
	}
}

func FuzzParseMessage(f *testing.F) {
	f.Add(int64(1700000000123456789), 17, 100, []byte(`{"seq":1,"body":"1 2..."}`))
	f.Add(int64(0), 0, 0, []byte(`{"body":"1 2","seq":`))
	f.Fuzz(func(t *testing.T, sched int64, i, size int, raw []byte) {
		parseMessage(raw) // any bytes: no panic
		if sched < 0 || i < 0 || size < 0 || size > 4096 {
			return
		}
		sent, idx, seq, ok := parseMessage(event(t, messageBody(sched, i, "r", size), 9))
		if !ok || sent != sched || idx != i || seq != 9 {
			t.Fatalf("messageBody(%d, %d, %d) parsed as %d %d %d %v", sched, i, size, sent, idx, seq, ok)
		}
	})
}

func TestParseProcStat(t *testing.T) {
	line := []byte("4242 (postgres: a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 99 0 0")
	comm, ticks, ok := parseProcStat(line)
	if !ok || comm != "postgres: a (b) c" || ticks != 325 {
		t.Fatalf("parseProcStat = %q %d %v", comm, ticks, ok)
	}
	for _, bad := range []string{"", "1 (x", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 -1 2"} {
		if _, _, ok := parseProcStat([]byte(bad)); ok {
			t.Errorf("parseProcStat(%q) ok", bad)
		}
	}
	self := postgresCPU() // whatever runs here: every entry is a postgres process
	for pid := range self {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if got := string(bytes.TrimSpace(data)); got != "" && got != "postgres" {
			t.Errorf("pid %d is %q", pid, got)
		}
	}
}

func TestStatementDeltas(t *testing.T) {
	before := map[string]stmtCount{"1": {query: "INSERT", calls: 10, rows: 10, execMs: 5}, "2": {query: "SELECT a", calls: 3}}
	after := map[string]stmtCount{"1": {query: "INSERT", calls: 2010, rows: 2010, execMs: 1005},
		"2": {query: "SELECT a", calls: 3}, "3": {query: "SELECT b", calls: 4000, rows: 6000, execMs: 400},
		"4": {query: "SELECT * FROM pg_stat_statements", calls: 50}, "5": {query: "rare", calls: 1}}
	per1k := func(v float64) float64 { return 1000 * v / 2000 }
	got := statementDeltas(before, after, per1k)
	want := []StatementCost{{Query: "SELECT b", Calls: 4000, CallsPer1k: 2000, RowsPer1k: 3000, MeanExecMs: 0.1, TotalExecMs: 400},
		{Query: "INSERT", Calls: 2000, CallsPer1k: 1000, RowsPer1k: 1000, MeanExecMs: 0.5, TotalExecMs: 1000}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("statementDeltas = %+v, want %+v", got, want)
	}
}

func FuzzParseProcStat(f *testing.F) {
	f.Add([]byte("4242 (postgres: a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 99 0 0"))
	f.Add([]byte("1 ()) R 0 0 0 0 0 0 0 0 0 0 1 2"))
	f.Fuzz(func(t *testing.T, data []byte) {
		comm, ticks, ok := parseProcStat(data)
		if ok && (ticks < 0 || !bytes.Contains(data, []byte("("+comm+")"))) {
			t.Fatalf("parseProcStat(%q) = %q %d", data, comm, ticks)
		}
	})
}

func TestThroughputChartReadsTheSummary(t *testing.T) {
	var s throughputSummary
	err := json.Unmarshal([]byte(`{"mode":"instances","pgbench":{"tps":2000},"runs":[
		{"instances":1,"offered":600,"accepted_per_s":600,"recipient_p99_ms":20,"pg_cpu_ms_per_1k":900},
		{"instances":2,"offered":600,"accepted_per_s":590,"recipient_p99_ms":null,"pg_cpu_ms_per_1k":1200}]}`), &s)
	if err != nil {
		t.Fatal(err)
	}
	c := s.chart()
	p99, right := c.series[0].pts, c.series[len(c.series)-1].pts
	if len(p99) != 2 || p99[0] != (point{1, 20}) || p99[1].x != 2 || !math.IsNaN(p99[1].y) {
		t.Errorf("recipient p99 series %v: want x = instances and a gap for the missing figure", p99)
	}
	if right[1] != (point{2, 1200}) || !strings.Contains(c.subtitle, "2000 tps") {
		t.Errorf("right axis %v, subtitle %q", right, c.subtitle)
	}
	if img := c.render(600, 400); img.Bounds().Dx() != 600 {
		t.Error("render")
	}
}

func TestReferenceDefaultsAreIssue9s(t *testing.T) {
	o, err := parseFlags([]string{"-mode", "pgbench", "-db", "postgres://127.0.0.1/x"})
	if err != nil {
		t.Fatal(err)
	}
	if o.pgbenchClients != 8 || o.pgbenchJobs != 2 || o.pgbenchTime != 10*time.Second || o.bodyBytes != 100 {
		t.Errorf("reference -c %d -j %d -T %s, body %d bytes; want -c 8 -j 2 -T 10s, 100 bytes",
			o.pgbenchClients, o.pgbenchJobs, o.pgbenchTime, o.bodyBytes)
	}
	for _, args := range [][]string{
		{"-mode", "pgbench"}, // no -db
		{"-mode", "pgbench", "-db", "postgres://x/y", "-pgbench-jobs", "9"},
		{"-mode", "pgbench", "-db", "postgres://x/y", "-pgbench-time", "500ms"},
		{"-secret", "s", "-body-bytes", "5000"},
		{"-secret", "s", "-pg-cost"}, // no -db
	} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
}

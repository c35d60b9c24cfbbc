package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// faultCounts is what the checks after the run found.
type faultCounts struct {
	acked, replays               int64
	streamLost, streamDups       int // acknowledged messages missing from / repeated in a recipient's stream
	streamShort                  int // streams that got fewer messages than the history holds
	histMessages                 int
	histLost, histDups, histGaps int
	histMismatch, histUnacked    int // seq or id differing from the acknowledgement; stored but never acknowledged
	deliveries                   int64
	kill, term                   stopCounts
	pgWait                       time.Duration // longest first attempt -> acknowledgement of a message the fault hit
	pgStreams                    time.Duration // until every stream delivered a message again after the fault
	pgFirstAck                   time.Duration // first acknowledgement after PostgreSQL was back
	pg503Msgs                    int           // messages that got at least one 503
	historyErr                   error
	logErrors                    map[string]int // chatd's ERROR log lines by message
	logBugs                      []string       // chatd log lines that mean a bug
}

// verify runs the checks; every failure goes to r.failures.
func (r *faultRun) verify(ctx context.Context) {
	if r.fp == nil || r.fs == nil {
		return
	}
	c := &faultCounts{}
	r.counts = c
	r.checkAnswers(c)
	r.checkStreams(c)
	r.checkHistoryAndStreams(ctx, c)
	r.recoveryTimes(c)
	r.checkLogs(c)
}

// checkAnswers checks the answers the senders and the stream opens got.
func (r *faultRun) checkAnswers(c *faultCounts) {
	p, fs := r.fp, r.fs
	c.acked, c.replays = p.acked.Load(), p.replays.Load()
	r.failNonZero("",
		tally{p.bad5xx.Load(), "POST answers were a 5xx other than 503 (a 500 is a bug)"},
		tally{p.s503Bare.Load(), "POST answers were 503 without a valid Retry-After"},
		tally{p.refused.Load(), "POSTs were refused for good (4xx) or answered unreadably"},
		tally{p.firstTry200.Load(), "new messages were answered 200 (a replay) on their first attempt"},
		tally{p.gaveUp.Load(), fmt.Sprintf("messages were never acknowledged within %s of retrying", faultMsgTimeout)},
		tally{p.connErrsPG.Load(), "POSTs ended in a connection error (no answer) while PostgreSQL was restarting: want 503"},
		tally{fs.bad5xx.Load(), "stream opens were refused with a 5xx other than 503"},
		tally{fs.s503Bare.Load(), "stream opens were refused with 503 without a valid Retry-After"},
		tally{fs.refusals.Load(), "stream opens were refused with a 4xx"})
	// Direct, a POST while PostgreSQL is away must get 503. Through PgBouncer it may get
	// 503 (a query in flight when the server went) or simply wait in the pooler's queue
	// until PostgreSQL is back (query_wait_timeout): either is right, so only a wrong
	// answer (counted above) fails the pooled run.
	if r.pgr != nil && p.s503.Load() == 0 && r.opt.pooler == "" {
		r.fail("no POST got 503 while PostgreSQL was down")
	}
	if c.acked == 0 {
		r.fail("no message was acknowledged at all")
	}
	if p.full.Load() > 0 {
		logf("note: the senders used every message slot (%d) and stopped early", len(p.msgs))
	}
}

// checkStreams checks each recipient's stream: every acknowledged message exactly once,
// in seq order, in its own conversation.
func (r *faultRun) checkStreams(c *faultCounts) {
	p, t := r.fp, r.t
	c.deliveries = t.delivered.Load()
	counts := r.deliveryCounts()
	for k := range r.b.streams {
		for i, n := range counts[k] {
			if n > 1 {
				c.streamDups++
				if c.streamDups <= 3 {
					logf("stream of %s: message %d (seq %d) arrived %d times", r.b.streams[k].user.id, i, p.msgs[i].seq, n)
				}
			}
		}
	}
	nc := len(r.b.convs)
	for i := range p.msgs {
		if p.msgs[i].ackAt == 0 {
			continue
		}
		for side := 0; side < 2; side++ {
			k := 2*(i%nc) + side
			if counts[k][i] == 0 {
				c.streamLost++
				if c.streamLost <= 3 {
					logf("stream of %s: acknowledged message %d (seq %d, id %s) never arrived", r.b.streams[k].user.id, i, p.msgs[i].seq, p.msgs[i].id)
				}
			}
		}
	}
	if c.streamLost > 0 {
		r.fail("%d (message, recipient) pairs: an acknowledged message missing from a recipient's stream", c.streamLost)
	}
	if c.streamDups > 0 {
		r.fail("%d (message, recipient) pairs: a message delivered more than once to the same stream", c.streamDups)
	}
	r.failNonZero(" (first: "+t.firstErr+")",
		tally{t.seqErrs.Load(), "message events out of seq order (a gap or a repeat) on a stream"},
		tally{t.misrouted.Load(), "message events of another conversation"},
		tally{t.unparsed.Load(), "message events chatbench could not parse"},
		tally{t.resets.Load(), "`event: reset` on a resume by Last-Event-ID"})
}

// deliveryCounts is, per stream and per message index, how often the message arrived.
func (r *faultRun) deliveryCounts() [][]int32 {
	counts := make([][]int32, len(r.b.streams))
	for k, s := range r.b.streams {
		counts[k] = make([]int32, len(r.fp.msgs))
		for _, idx := range s.got {
			counts[k][idx]++
		}
	}
	return counts
}

// checkHistoryAndStreams reads the history: every acknowledged message exactly once, seqs
// 1..n, and no stream short of its conversation's history.
func (r *faultRun) checkHistoryAndStreams(ctx context.Context, c *faultCounts) {
	hist, err := r.history(ctx)
	if err != nil {
		c.historyErr = err
		r.fail("history: %v", err)
		return
	}
	r.checkHistory(c, hist)
	for k, s := range r.b.streams {
		if len(s.got) < len(hist[k/2]) {
			c.streamShort++
		}
	}
	if c.streamShort > 0 {
		r.fail("%d streams received fewer messages than their conversation's history holds", c.streamShort)
	}
}

// checkLogs fails the run on a panic or an internal error in any chatd's log.
func (r *faultRun) checkLogs(c *faultCounts) {
	c.logErrors = map[string]int{}
	for _, in := range r.inst {
		c.logBugs = append(c.logBugs, in.logProblems(c.logErrors, 5)...)
	}
	if len(c.logBugs) > 0 {
		r.fail("chatd logged a panic or an internal error (see below)")
	}
}

// tally is a count of something that must not happen.
type tally struct {
	n    int64
	what string
}

// failNonZero records a failure for each tally above zero.
func (r *faultRun) failNonZero(suffix string, ts ...tally) {
	for _, t := range ts {
		if t.n > 0 {
			r.fail("%d %s%s", t.n, t.what, suffix)
		}
	}
}

// histMsg is one message of the history, as chatbench reads it.
type histMsg struct {
	ID       string `json:"id"`
	Seq      int64  `json:"seq"`
	Body     string `json:"body"`
	ClientID string `json:"client_id"`
}

// historyPage is the page size of the history read: small, so that every conversation's
// history takes several pages and the pagination is part of what is checked.
const historyPage = 50

// history reads every conversation's messages page by page (after_seq) from instance A.
func (r *faultRun) history(ctx context.Context) ([][]histMsg, error) {
	out := make([][]histMsg, len(r.b.convs))
	for ci := range r.b.convs {
		conv := &r.b.convs[ci]
		var after int64
		for pages := 0; ; pages++ {
			if pages > 1000 {
				return nil, fmt.Errorf("conversation %s: more than 1000 pages", conv.id)
			}
			var page struct {
				Messages []histMsg `json:"messages"`
				HasMore  bool      `json:"has_more"`
			}
			u := fmt.Sprintf("%s/v1/conversations/%s/messages?after_seq=%d&limit=%d", r.inst[0].url, conv.id, after, historyPage)
			var err error
			for try := 0; try < 5; try++ {
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err = r.b.callJSON(cctx, http.MethodGet, u, conv.users[0].token, nil, &page)
				cancel()
				if err == nil {
					break
				}
				time.Sleep(500 * time.Millisecond)
			}
			if err != nil {
				return nil, fmt.Errorf("conversation %s after seq %d: %w", conv.id, after, err)
			}
			out[ci] = append(out[ci], page.Messages...)
			r.historyPages++
			if len(page.Messages) > 0 {
				after = page.Messages[len(page.Messages)-1].Seq
			}
			if !page.HasMore || len(page.Messages) == 0 {
				break
			}
		}
	}
	return out, nil
}

// checkHistory compares the history with the acknowledgements.
func (r *faultRun) checkHistory(c *faultCounts, hist [][]histMsg) {
	p := r.fp
	nc := len(r.b.convs)
	seen := make([]int32, len(p.msgs))
	for ci, msgs := range hist {
		c.histMessages += len(msgs)
		for j, m := range msgs {
			if m.Seq != int64(j+1) {
				c.histGaps++
				if c.histGaps <= 3 {
					logf("history of %s: seq %d at position %d (want %d)", r.b.convs[ci].id, m.Seq, j+1, j+1)
				}
			}
			idx, ok := historyIndex(m, r.opt.runID)
			if !ok || idx >= len(p.msgs) || idx%nc != ci {
				c.histMismatch++
				logf("history of %s: a message chatbench did not send there: %+v", r.b.convs[ci].id, m)
				continue
			}
			seen[idx]++
			a := &p.msgs[idx]
			switch {
			case a.ackAt == 0:
				c.histUnacked++
			case a.seq != m.Seq || a.id != m.ID:
				c.histMismatch++
				logf("history of %s: message %d stored as seq %d id %s, acknowledged as seq %d id %s", r.b.convs[ci].id, idx, m.Seq, m.ID, a.seq, a.id)
			}
		}
	}
	for i := range p.msgs {
		switch {
		case seen[i] > 1:
			c.histDups++
			if c.histDups <= 3 {
				logf("history: message %d stored %d times", i, seen[i])
			}
		case seen[i] == 0 && p.msgs[i].ackAt != 0:
			c.histLost++
			if c.histLost <= 3 {
				logf("history: acknowledged message %d (seq %d, id %s) is not stored", i, p.msgs[i].seq, p.msgs[i].id)
			}
		}
	}
	if c.histLost > 0 {
		r.fail("history: %d acknowledged messages missing", c.histLost)
	}
	if c.histDups > 0 {
		r.fail("history: %d messages stored more than once (one client_id, several messages)", c.histDups)
	}
	if c.histGaps > 0 {
		r.fail("history: %d seqs out of place (a gap or a repeat)", c.histGaps)
	}
	if c.histMismatch > 0 {
		r.fail("history: %d messages differ from their acknowledgement or were never sent", c.histMismatch)
	}
}

// historyIndex is the message index in a stored message: its client_id "<runID>-<i>", which
// must agree with its body "<sched> <i>".
func historyIndex(m histMsg, runID string) (int, bool) {
	s, ok := strings.CutPrefix(m.ClientID, runID+"-")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(s)
	if err != nil || i < 0 {
		return 0, false
	}
	_, b, ok := strings.Cut(m.Body, " ")
	if !ok || b != s {
		return 0, false
	}
	return i, true
}

// stopCounts is how the clients got through a phase that stopped an instance.
type stopCounts struct {
	wait              time.Duration // longest first attempt -> acknowledgement of a message the stop hit
	streams           time.Duration // until every stream delivered a message again after the signal
	connErrs, replays int           // messages hit by a connection error; of those answered 200 (stored before the stop)
}

// recoveryTimes measures how long the clients took to get going again after each fault.
func (r *faultRun) recoveryTimes(c *faultCounts) {
	p := r.fp
	var killAt, termAt, backAt, stopAt int64
	if r.kill != nil {
		killAt = r.kill.at.UnixNano()
	}
	if r.term != nil {
		termAt = r.term.at.UnixNano()
	}
	if r.pgr != nil && !r.pgr.back.IsZero() {
		stopAt, backAt = r.pgr.stopAt.UnixNano(), r.pgr.back.UnixNano()
	}
	// A connection error belongs to the stop phase it came after: kill, then term, then pg.
	within := func(t, from int64, until ...int64) bool {
		if from == 0 || t < from {
			return false
		}
		for _, u := range until {
			if u != 0 && t >= u {
				return false
			}
		}
		return true
	}
	count := func(sc *stopCounts, m *faultMsg, wait time.Duration) {
		sc.connErrs++
		if m.status == http.StatusOK {
			sc.replays++
		}
		sc.wait = max(sc.wait, wait)
	}
	firstAck := int64(0)
	for i := range p.msgs {
		m := &p.msgs[i]
		if m.first == 0 || m.ackAt == 0 {
			continue
		}
		wait := time.Duration(m.ackAt - m.first)
		switch {
		case m.connErr && within(m.first, termAt, stopAt):
			count(&c.term, m, wait)
		case m.connErr && within(m.first, killAt, termAt, stopAt):
			count(&c.kill, m, wait)
		}
		if m.saw503 {
			c.pg503Msgs++
			c.pgWait = max(c.pgWait, wait)
		}
		if backAt != 0 && m.ackAt >= backAt && (firstAck == 0 || m.ackAt < firstAck) {
			firstAck = m.ackAt
		}
	}
	if firstAck != 0 {
		c.pgFirstAck = time.Duration(firstAck - backAt)
	}
	c.kill.streams = r.streamsDeliveringAfter(killAt)
	c.term.streams = r.streamsDeliveringAfter(termAt)
	c.pgStreams = r.streamsDeliveringAfter(backAt)
}

// streamsDeliveringAfter is how long after at every stream had received a message again
// (-1 when one never did; 0 when at is 0).
func (r *faultRun) streamsDeliveringAfter(at int64) time.Duration {
	if at == 0 {
		return 0
	}
	var worst time.Duration
	for _, s := range r.b.streams {
		first := int64(0)
		for _, ts := range s.gotAt {
			if ts > at {
				first = ts
				break
			}
		}
		if first == 0 {
			return -1
		}
		worst = max(worst, time.Duration(first-at))
	}
	return worst
}

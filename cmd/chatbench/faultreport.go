package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// report prints the summary.
func (r *faultRun) report(w io.Writer) {
	c := r.counts
	p := r.fp
	sec := func(d time.Duration) string {
		if d < 0 {
			return "never"
		}
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	fmt.Fprintf(w, "\nchatd faults: run %s, 2 instances, %d conversations, %d streams, %.0f msgs/s from %d senders, %.1fs\n",
		r.opt.runID, len(r.b.convs), len(r.b.streams), r.opt.rate, r.opt.clients, time.Since(r.start).Seconds())
	if r.opt.pooler != "" {
		fmt.Fprintf(w, "pools:    through PgBouncer at %s (transaction mode, default_query_exec_mode=exec), listeners direct\n", r.opt.pooler)
	}
	if c == nil {
		fmt.Fprintln(w, "no checks ran")
		return
	}
	fmt.Fprintf(w, "posts:    %d messages acknowledged (%d answered 200 to a retry: stored before its first answer was lost), %d attempts in all\n",
		c.acked, c.replays, r.attempts())
	fmt.Fprintf(w, "          connection errors %d (retried on the other instance), 503 %d (without Retry-After %d), other 5xx %d, refused %d, given up %d\n",
		p.connErrs.Load(), p.s503.Load(), p.s503Bare.Load(), p.bad5xx.Load(), p.refused.Load(), p.gaveUp.Load())
	for _, ph := range []struct {
		label string
		k     *stopPhase
		c     stopCounts
	}{{"kill -9:", r.kill, c.kill}, {"term:", r.term, c.term}} {
		k := ph.k
		if k == nil {
			continue
		}
		fmt.Fprintf(w, "%-9s chatd %s (pid %d, the log's reader for both) got %s %.1fs into the run with %d streams on it, %d messages started before; it exited %s after\n",
			ph.label, k.victim, k.pid, k.signal, k.at.Sub(r.start).Seconds(), k.displaced, k.postsBefore, sec(k.exited))
		fmt.Fprintf(w, "          %s read the log for both %s after the signal\n", k.other, sec(k.leaderUp))
		fmt.Fprintf(w, "          all streams on %s %s after; every stream delivering again %s after; %d messages hit by a connection error, %d of them stored before it (200), longest wait for an acknowledgement %s\n",
			k.other, sec(k.streamsUp), sec(ph.c.streams), ph.c.connErrs, ph.c.replays, sec(ph.c.wait))
	}
	if g := r.pgr; g != nil {
		fmt.Fprintf(w, "pg:       stop took %s, down %s, accepting again %s after the stop began; /readyz 200 on both %s later\n",
			sec(g.stopped.Sub(g.stopAt)), r.opt.pgDown, sec(g.back.Sub(g.stopAt)), sec(g.readyAfter))
		first, last := p.first503.Load(), p.last503.Load()
		if first != 0 {
			fmt.Fprintf(w, "          503s to POST: %d, from %s to %s after the stop began, on %d messages; streams refused with 503: %d\n",
				p.s503.Load(), sec(time.Duration(first-g.stopAt.UnixNano())), sec(time.Duration(last-g.stopAt.UnixNano())), c.pg503Msgs, r.fs.s503.Load())
		} else {
			fmt.Fprintf(w, "          503s to POST: none\n")
		}
		fmt.Fprintf(w, "          first acknowledgement %s after PostgreSQL was back; every stream delivering again %s after; longest wait for an acknowledgement %s\n",
			sec(c.pgFirstAck), sec(c.pgStreams), sec(c.pgWait))
	}
	fmt.Fprintf(w, "streams:  %d deliveries, %d connections (%d ended by the server or a fault), lost %d, duplicated %d, out of order %d, resets %d\n",
		c.deliveries, r.fs.connects.Load(), r.fs.drops.Load(), c.streamLost, c.streamDups, r.t.seqErrs.Load(), r.t.resets.Load())
	if c.historyErr == nil {
		fmt.Fprintf(w, "history:  %d messages stored (read in %d pages of up to %d), lost %d, duplicated %d, seq gaps %d, mismatched %d, stored but never acknowledged %d\n",
			c.histMessages, r.historyPages, historyPage, c.histLost, c.histDups, c.histGaps, c.histMismatch, c.histUnacked)
	}
	if len(c.logErrors) > 0 {
		var parts []string
		for msg, n := range c.logErrors {
			parts = append(parts, fmt.Sprintf("%q ×%d", msg, n))
		}
		sort.Strings(parts)
		fmt.Fprintf(w, "chatd log: ERROR lines by message: %s\n", strings.Join(parts, ", "))
	}
	for _, l := range c.logBugs {
		fmt.Fprintf(w, "          %.500s\n", l)
	}
	for _, s := range append(append([]string(nil), p.problems...), r.fs.problems...) {
		fmt.Fprintf(w, "          client saw: %s\n", s)
	}
	if len(r.failures) == 0 {
		fmt.Fprintln(w, "result:   PASS")
		return
	}
	fmt.Fprintf(w, "result:   FAIL (%d)\n", len(r.failures))
	for _, f := range r.failures {
		fmt.Fprintf(w, "  - %s\n", f)
	}
}

// attempts is the number of POSTs sent.
func (r *faultRun) attempts() int {
	n := 0
	for i := range r.fp.msgs {
		n += r.fp.msgs[i].tries
	}
	return n
}

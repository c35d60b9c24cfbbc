package main

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckHistoryFindsEachKindOfFault(t *testing.T) {
	// Messages 0..5, message i in conversation i%2, all acknowledged.
	r := &faultRun{opt: options{runID: "r"}, b: &bench{convs: make([]conversation, 2)},
		fp: &faultPoster{msgs: make([]faultMsg, 6)}}
	acks := []int64{1, 1, 2, 3, 3, 2} // the seq each acknowledgement gave
	for i, seq := range acks {
		r.fp.msgs[i] = faultMsg{ackAt: 1, seq: seq, id: fmt.Sprintf("m%d", i)}
	}
	msg := func(i int, seq int64, id string) histMsg {
		return histMsg{ID: id, Seq: seq, Body: fmt.Sprintf("1700000000 %d", i), ClientID: fmt.Sprintf("r-%d", i)}
	}
	hist := [][]histMsg{
		// Message 2 stored twice (the copy with another seq and id), message 4 missing.
		{msg(0, 1, "m0"), msg(2, 2, "m2"), msg(2, 3, "x")},
		// Seqs 3 and 4 out of place (a gap), message 5 missing, one message chatbench never sent.
		{msg(1, 1, "m1"), msg(3, 3, "m3"), {ID: "y", Seq: 4, Body: "hello", ClientID: "other"}},
	}
	c := &faultCounts{}
	r.checkHistory(c, hist)
	want := faultCounts{histMessages: 6, histDups: 1, histLost: 2, histGaps: 2, histMismatch: 2}
	got := faultCounts{histMessages: c.histMessages, histDups: c.histDups, histLost: c.histLost,
		histGaps: c.histGaps, histMismatch: c.histMismatch, histUnacked: c.histUnacked}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("counts %+v, want %+v", got, want)
	}
	if len(r.failures) != 4 {
		t.Errorf("failures %q, want 4 (lost, duplicated, gaps, mismatched)", r.failures)
	}

	// The same history without the faults passes.
	r.failures = nil
	r.fp.msgs[4], r.fp.msgs[5] = faultMsg{ackAt: 1, seq: 3, id: "m4"}, faultMsg{ackAt: 1, seq: 2, id: "m5"}
	r.fp.msgs[3].seq = 3
	clean := [][]histMsg{
		{msg(0, 1, "m0"), msg(2, 2, "m2"), msg(4, 3, "m4")},
		{msg(1, 1, "m1"), msg(5, 2, "m5"), msg(3, 3, "m3")},
	}
	c = &faultCounts{}
	r.checkHistory(c, clean)
	if len(r.failures) != 0 || c.histMessages != 6 {
		t.Errorf("a clean history: failures %q, %d messages", r.failures, c.histMessages)
	}
}

func TestHistoryIndex(t *testing.T) {
	for _, tc := range []struct {
		m    histMsg
		want int
		ok   bool
	}{
		{histMsg{Body: "1700000000 17", ClientID: "run-17"}, 17, true},
		{histMsg{Body: "1700000000 17", ClientID: "run-18"}, 0, false}, // body and client_id disagree
		{histMsg{Body: "1700000000 17", ClientID: "other-17"}, 0, false},
		{histMsg{Body: "17", ClientID: "run-17"}, 0, false},
		{histMsg{Body: "1700000000 -1", ClientID: "run--1"}, 0, false},
	} {
		got, ok := historyIndex(tc.m, "run")
		if got != tc.want || ok != tc.ok {
			t.Errorf("historyIndex(%+v) = %d %v, want %d %v", tc.m, got, ok, tc.want, tc.ok)
		}
	}
}

func TestLeadsReadsTheLeaderGauge(t *testing.T) {
	require.True(t, leads([]byte("# HELP chatd_log_leader x\n# TYPE chatd_log_leader gauge\nchatd_log_leader 1\nchatd_listener_up 1\n")))
	require.False(t, leads([]byte("chatd_log_leader 0\nchatd_listener_up 1\n")))
	require.False(t, leads([]byte("chatd_log_leader_other 1\n")))
	require.False(t, leads(nil))
}

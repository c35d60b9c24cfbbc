package main

import (
	"bytes"
	"fmt"
	"time"
)

// evKind is the event type of the SSE block being read.
type evKind uint8

const (
	evNone evKind = iota
	evMessage
	evReady
	evReset
	evOther
)

// line handles one SSE line (without its terminator); it reports whether the stream has
// just become ready.
func (s *stream) line(line []byte, t *tracker) bool {
	if len(line) == 0 {
		return s.dispatch(t)
	}
	if line[0] == ':' {
		if bytes.Equal(line, []byte(": ping")) {
			now := time.Now().UnixNano()
			if s.readyAt != 0 {
				if gap := now - s.lastPing; gap > s.maxGap {
					s.maxGap = gap
				}
				s.lastPing = now
			}
			t.pings.Add(1)
		}
		return false
	}
	field, value, found := bytes.Cut(line, []byte(":"))
	if found && len(value) > 0 && value[0] == ' ' {
		value = value[1:]
	}
	switch string(field) { // compiled without allocating
	case "id":
		s.lastID = append(s.lastID[:0], value...)
	case "event":
		switch string(value) {
		case "message":
			s.kind = evMessage
		case "ready":
			s.kind = evReady
		case "reset":
			s.kind = evReset
		default:
			s.kind = evOther
		}
	case "data":
		if len(s.data) > 0 {
			s.data = append(s.data, '\n')
		}
		s.data = append(s.data, value...)
	}
	return false
}

// dispatch ends one SSE block.
func (s *stream) dispatch(t *tracker) (becameReady bool) {
	kind, data := s.kind, s.data
	s.kind, s.data = evNone, s.data[:0]
	switch kind {
	case evReady:
		if s.readyAt == 0 {
			s.readyAt = time.Now().UnixNano()
			s.lastPing = s.readyAt
			t.ready.Add(1)
			return true
		}
	case evReset:
		t.resets.Add(1)
		t.noteErr(fmt.Errorf("event: reset %s", data))
	case evMessage:
		s.message(data, t)
	}
	return false
}

// message checks and counts one message event.
func (s *stream) message(data []byte, t *tracker) {
	now := time.Now().UnixNano()
	t.delivered.Add(1)
	sent, idx, seq, ok := parseMessage(data)
	if !ok || idx < 0 || idx >= len(t.deliveries) {
		t.unparsed.Add(1)
		return
	}
	if seq != s.lastSeq+1 {
		t.seqErrs.Add(1)
		t.noteErr(fmt.Errorf("user %s: seq %d after %d", s.user.id, seq, s.lastSeq))
	}
	if seq > s.lastSeq {
		s.lastSeq = seq
	}
	if idx%t.nconv != s.conv {
		t.misrouted.Add(1)
	}
	if t.record {
		s.got = append(s.got, int32(idx))
		s.gotAt = append(s.gotAt, now)
	}
	if n := t.deliveries[idx].Add(1); n <= 2 {
		t.latency[2*idx+int(n)-1] = now - sent
		t.slotInst[2*idx+int(n)-1] = s.inst
		t.slotSide[2*idx+int(n)-1] = s.side
	} else {
		t.dups.Add(1)
	}
	s.msgs++
	if s.expect > 0 && s.msgs == s.expect {
		s.caughtUpAt = now
		t.caughtUp.Add(1)
	}
}

var (
	bodyKey = []byte(`"body":"`)
	seqKey  = []byte(`"seq":`)
)

// parseMessage finds chatbench's body "<sent unix nanos> <index>", perhaps padded with dots
// (-body-bytes), and the seq in a message object, without allocating.
func parseMessage(data []byte) (sent int64, idx int, seq int64, ok bool) {
	i := bytes.Index(data, bodyKey)
	if i < 0 {
		return 0, 0, 0, false
	}
	rest := data[i+len(bodyKey):]
	sent, rest, ok1 := parseUint(rest)
	if !ok1 || len(rest) == 0 || rest[0] != ' ' {
		return 0, 0, 0, false
	}
	n, rest, ok2 := parseUint(rest[1:])
	for len(rest) > 0 && rest[0] == '.' {
		rest = rest[1:]
	}
	if !ok2 || len(rest) == 0 || rest[0] != '"' {
		return 0, 0, 0, false
	}
	j := bytes.Index(data, seqKey)
	if j < 0 {
		return 0, 0, 0, false
	}
	seq, _, ok3 := parseUint(data[j+len(seqKey):])
	return sent, int(n), seq, ok3
}

func parseUint(b []byte) (int64, []byte, bool) {
	var n int64
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		n = n*10 + int64(b[i]-'0')
		i++
	}
	return n, b[i:], i > 0
}

package events

// One reader per cluster: the instance that holds the reader lock (the leader, see
// listener.go) reads the log for everyone and shares what it read as NOTIFY payloads on
// chatd_log; the other instances (followers) publish those events without a query. A
// forward names the range of the log it covers, so a follower that missed one, or that
// receives a range whose events were too large for a notification, sees the gap and reads
// that part of the log itself: a forward is a shortcut, never the only way an event arrives.

import (
	"encoding/json"
	"errors"
	"fmt"
)

// forwardMsg is the NOTIFY payload of a forward: every event of the log range (after, to],
// rendered, in log order; or, with self set, no events: those of the range did not fit in
// a notification, and each follower reads the range itself. Rows that cannot be rendered
// are in the range but not in events, as they are skipped by every reader. packForward
// writes it by hand around events marshalled one by one; parseForward reads it with this.
type forwardMsg struct {
	From   string         `json:"from"`
	After  string         `json:"after"`
	To     string         `json:"to"`
	Self   bool           `json:"self,omitempty"`
	Events []forwardEvent `json:"events,omitempty"`
}

// forwardEvent is one event of a forward: an Event's fields, with short names because
// they repeat for every event of a notification.
type forwardEvent struct {
	Cursor       string          `json:"c"`
	Type         string          `json:"t"`
	Conversation string          `json:"v,omitempty"`
	Member       string          `json:"m,omitempty"`
	Recipients   []string        `json:"r"`
	Data         json.RawMessage `json:"d"`
}

// forwardHeader is room for a forward's fields other than its events: the instance id and
// two cursors of at most 40 digits each, with their names and punctuation.
const forwardHeader = 192

// forward is a decoded forward.
type forward struct {
	from      string
	after, to Cursor
	self      bool
	events    []*Event
}

// packForward makes the NOTIFY payloads that share the range (after, to] of the log, whose
// rendered events are evs, in log order: as many events to a payload as fit, an event too
// large for any payload as a range of its own that followers read themselves, and always
// the whole range, so that a follower's position can move to `to` even past rows that
// rendered to nothing.
func packForward(instance string, after, to Cursor, evs []*Event) []string {
	var payloads []string
	var chunk []byte // the events of the next payload, comma-separated
	var last Cursor  // the last of them
	flush := func(upto Cursor, self bool) {
		if !after.Less(upto) {
			return
		}
		// The instance id is hex and cursors are digits: nothing to escape.
		b := make([]byte, 0, forwardHeader+len(chunk))
		b = append(append(append(b, `{"from":"`...), instance...), `","after":"`...)
		b = append(after.Append(b), `","to":"`...)
		b = append(upto.Append(b), '"')
		if self {
			b = append(b, `,"self":true`...)
		}
		if len(chunk) > 0 {
			b = append(append(append(b, `,"events":[`...), chunk...), ']')
		}
		payloads = append(payloads, string(append(b, '}')))
		after, chunk = upto, chunk[:0]
	}
	for _, e := range evs {
		b, err := json.Marshal(forwardEvent{Cursor: e.Cursor.String(), Type: e.Type, Conversation: e.Conversation,
			Member: e.Member, Recipients: e.Recipients, Data: e.Data})
		if err != nil || forwardHeader+len(b) > maxPayload {
			// Too large for any payload (or, never expected, not JSON): a range of its own
			// that followers read from the log.
			flush(last, false)
			flush(e.Cursor, true)
			continue
		}
		if forwardHeader+len(chunk)+1+len(b) > maxPayload {
			flush(last, false)
		}
		if len(chunk) > 0 {
			chunk = append(chunk, ',')
		}
		chunk = append(chunk, b...)
		last = e.Cursor
	}
	flush(to, false)
	return payloads
}

// errBadForward marks a payload that is not a forward this package made.
var errBadForward = errors.New("bad forward")

// parseForward decodes a forward payload and checks that it describes a range of the log:
// after before to, events in strictly increasing order inside it, each with a type, and no
// events in a range marked self. A follower that gets anything else treats it as lost.
func parseForward(payload string) (*forward, error) {
	var m forwardMsg
	if err := json.Unmarshal([]byte(payload), &m); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadForward, err)
	}
	after, err1 := ParseCursor(m.After)
	to, err2 := ParseCursor(m.To)
	if err1 != nil || err2 != nil || !after.Less(to) || !instanceID(m.From) || (m.Self && len(m.Events) > 0) {
		return nil, fmt.Errorf("%w: range (%q, %q]", errBadForward, m.After, m.To)
	}
	f := &forward{from: m.From, after: after, to: to, self: m.Self, events: make([]*Event, 0, len(m.Events))}
	prev := after
	for _, fe := range m.Events {
		c, err := ParseCursor(fe.Cursor)
		if err != nil || !prev.Less(c) || to.Less(c) || fe.Type == "" || len(fe.Data) == 0 {
			return nil, fmt.Errorf("%w: event %q of type %q in (%v, %v]", errBadForward, fe.Cursor, fe.Type, after, to)
		}
		prev = c
		f.events = append(f.events, &Event{Cursor: c, Type: fe.Type, Conversation: fe.Conversation, Member: fe.Member,
			Recipients: fe.Recipients, Data: fe.Data})
	}
	return f, nil
}

// instanceID reports whether s looks like an instance's id (log.go): 16 lowercase hex
// digits, written into payloads without escaping.
func instanceID(s string) bool {
	if len(s) != 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && (s[i] < 'a' || s[i] > 'f') {
			return false
		}
	}
	return true
}

package events

import (
	"sync"
)

// Event is one event ready for the wire. Durable events have a non-zero Cursor; ephemeral
// ones (typing, presence) have none. Data is the JSON rendered once for all recipients;
// events are shared between subscribers and never modified after publication.
type Event struct {
	Cursor     Cursor
	Type       string
	Data       []byte
	Recipients []string
	// Except, when set, is a recipient who does not get the event (the typist of a typing
	// event).
	Except string
	// Conversation is the id of the conversation the event belongs to ("" for presence).
	Conversation string
	// Member is the user a member_added or member_removed event concerns.
	Member string

	frameOnce sync.Once
	frame     []byte
}

// Frame returns the event as the stream sends it, made by render the first time it is
// asked for and shared by every stream after that: a thousand streams behind on the same
// event hold one copy of it, not a thousand.
func (e *Event) Frame(render func(*Event) []byte) []byte {
	e.frameOnce.Do(func() { e.frame = render(e) })
	return e.frame
}

// size is what a pending event counts against a subscriber's byte bound.
func (e *Event) size() int { return len(e.Data) + len(e.Type) + 64 }

// Durable reports whether the event is stored in the log and carries an id.
func (e *Event) Durable() bool { return !e.Cursor.IsZero() }

// Hub routes published events to the subscribers of their recipients on this instance.
// It keeps no history: a subscriber that needs older events reads them from the log.
type Hub struct {
	mu   sync.Mutex
	head Cursor
	// claimed is how far the reader has read: events up to it are being published now,
	// rendered only for the streams subscribed when the reader looked. A subscriber that
	// arrives later replays up to claimed from the log instead.
	claimed Cursor
	users   map[string]map[*Subscriber]struct{}
	limit   Limit
	closed  bool
}

// Limit is how far a subscriber may fall behind before it is cut off: at most Events
// events and Bytes bytes of event data pending, whichever comes first.
type Limit struct {
	Events int
	Bytes  int
}

// NewHub returns a hub whose subscribers may each fall at most limit behind before they
// are cut off.
func NewHub(limit Limit) *Hub {
	return &Hub{users: make(map[string]map[*Subscriber]struct{}), limit: limit}
}

// Subscriber receives the events of one user's stream. Its mailbox grows only while the
// stream is behind, up to the hub's limit; past that the subscriber is marked overflowed and
// the stream ends, to resume by cursor, rather than hold unbounded memory.
type Subscriber struct {
	User string

	hub        *Hub
	mu         sync.Mutex
	pending    []*Event
	bytes      int           // the size of pending
	ready      chan struct{} // has a value while pending is non-empty or the subscriber is done
	overflowed bool
	done       bool
	// left holds the conversations the user was removed from while this stream was open
	// (see gate).
	left map[string]struct{}
}

// Subscribe registers a stream of user and returns it with the hub's head: every durable
// event after head will reach the subscriber, so the caller replays (from, head] from the
// log and then reads the subscriber, skipping what it already sent (an event the replay
// covered may also arrive live).
func (h *Hub) Subscribe(user string) (*Subscriber, Cursor) {
	s := &Subscriber{User: user, hub: h, ready: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		s.done = true
		s.ready <- struct{}{}
		return s, h.head
	}
	set := h.users[user]
	if set == nil {
		set = make(map[*Subscriber]struct{})
		h.users[user] = set
	}
	set[s] = struct{}{}
	return s, h.upto()
}

// upto is where a new subscriber's replay ends: after it, the hub delivers everything.
func (h *Hub) upto() Cursor {
	if h.head.Less(h.claimed) {
		return h.claimed
	}
	return h.head
}

// Claim records that the reader has read up to c and is about to publish it, before it
// decides which events have local recipients (see claimed).
func (h *Hub) Claim(c Cursor) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.claimed.Less(c) {
		h.claimed = c
	}
}

// Unsubscribe removes s; it is safe to call more than once.
func (h *Hub) Unsubscribe(s *Subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if set := h.users[s.User]; set != nil {
		delete(set, s)
		if len(set) == 0 {
			delete(h.users, s.User)
		}
	}
}

// Head is the position after which the hub delivers every durable event.
func (h *Hub) Head() Cursor {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.upto()
}

// SetHead starts the hub at a position without publishing anything (at startup, the log's
// current head: history is read by streams that ask for it).
func (h *Hub) SetHead(c Cursor) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.head.Less(c) {
		h.head = c
	}
}

// Online reports whether user has a stream open on this instance.
func (h *Hub) Online(user string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.users[user]) > 0
}

// Interested reports whether any of users has a stream on this instance: the reader does
// not render events nobody here will receive.
func (h *Hub) Interested(users []string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, u := range users {
		if len(h.users[u]) > 0 {
			return true
		}
	}
	return false
}

// Streams is the number of subscribers on this instance.
func (h *Hub) Streams() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, set := range h.users {
		n += len(set)
	}
	return n
}

// Publish delivers events, in order, to the subscribers of their recipients. Durable
// events must come in log order; the hub's head moves to the last of them.
func (h *Hub) Publish(evs []*Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range evs {
		if e.Durable() {
			if !h.head.Less(e.Cursor) {
				continue // already published: a reader re-read after a reconnect
			}
			h.head = e.Cursor
		}
		for _, u := range e.Recipients {
			if u == e.Except {
				continue
			}
			for s := range h.users[u] {
				s.push(e, h.limit)
			}
		}
	}
}

// Close ends every subscriber (graceful shutdown: streams end so clients reconnect to
// another instance and resume by cursor) and refuses new ones.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for _, set := range h.users {
		for s := range set {
			s.finish()
		}
	}
	h.users = make(map[string]map[*Subscriber]struct{})
}

func (s *Subscriber) push(e *Event, limit Limit) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done || !s.gate(e) {
		return
	}
	if len(s.pending) >= limit.Events || (limit.Bytes > 0 && s.bytes+e.size() > limit.Bytes) {
		s.overflowed = true
		s.done = true
		s.pending, s.bytes = nil, 0
	} else {
		s.pending = append(s.pending, e)
		s.bytes += e.size()
	}
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// gate keeps a removed member's stream clean of its old conversation; it reports whether
// e may be queued. Durable events need no gate: their recipients come from membership
// ranges in the log's order (schema.sql, member_history), so nothing after a user's
// member_removed is ever addressed to it, and what is queued before it precedes the
// removal in the log (a resume would deliver it too). Ephemeral events (typing) follow
// no such order and may come from a member list cached before the removal: when the
// member_removed reaches this stream, the typing events of that conversation still queued
// are dropped, and later ones refused until a member_added of the user lets them in again.
func (s *Subscriber) gate(e *Event) bool {
	if e.Conversation == "" {
		return true
	}
	if e.Member == s.User {
		switch e.Type {
		case "member_added":
			delete(s.left, e.Conversation)
		case "member_removed":
			s.dropEphemeral(e.Conversation)
			if s.left == nil {
				s.left = make(map[string]struct{})
			}
			s.left[e.Conversation] = struct{}{}
			return true
		}
	}
	_, gone := s.left[e.Conversation]
	return !gone || e.Durable()
}

// dropEphemeral removes the queued ephemeral events of conversation conv.
func (s *Subscriber) dropEphemeral(conv string) {
	kept := s.pending[:0]
	for _, q := range s.pending {
		if !q.Durable() && q.Conversation == conv {
			s.bytes -= q.size()
			continue
		}
		kept = append(kept, q)
	}
	clear(s.pending[len(kept):]) // let the dropped events go
	s.pending = kept
}

func (s *Subscriber) finish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = true
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// Ready is signalled when Take has something to return or the subscriber has ended.
func (s *Subscriber) Ready() <-chan struct{} { return s.ready }

// Take returns the pending events and empties the mailbox. done is true once the hub has
// ended the subscriber; overflowed says it was because the stream fell too far behind.
func (s *Subscriber) Take() (evs []*Event, done, overflowed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	evs, s.pending, s.bytes = s.pending, nil, 0
	return evs, s.done, s.overflowed
}

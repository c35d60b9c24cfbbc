package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/chatd/chatd/events"
)

// The sequence that makes delivery exactly-once, shared by the stream and the long poll:
// take a slot, subscribe to the hub (from then on every event after the hub's head reaches
// the subscriber), decide where to start from the client's cursor, replay the log from
// there up to the head, check that retention did not overtake the replay, then relay live
// events, skipping anything at or before the last one sent.

// subscription is a stream or poll that holds its slot, its hub subscriber and its
// presence, and knows where it starts.
type subscription struct {
	s    *Server
	user string
	sub  *events.Subscriber
	head events.Cursor // the hub's head when it subscribed: the replay's end
}

// subscribe takes the caller's slot, uses up its ticket if a ticket authenticated it,
// subscribes it to the hub and counts it as present. The caller must close it.
func (s *Server) subscribe(c *gin.Context) (*subscription, error) {
	me := user(c)
	if err := s.streams.acquire(me, s.cfg.Retry); err != nil {
		return nil, err
	}
	if err := s.useTicket(c); err != nil {
		s.streams.release(me)
		return nil, err
	}
	// A stream or poll has no body; whatever deadline a body had no longer applies.
	_ = http.NewResponseController(c.Writer).SetReadDeadline(time.Time{})
	sub, head := s.cfg.Hub.Subscribe(me)
	if s.cfg.Presence != nil {
		// A user who can only poll is online too; the grace period spans the gap
		// between two polls.
		s.cfg.Presence.Connect(me)
	}
	return &subscription{s: s, user: me, sub: sub, head: head}, nil
}

// close releases everything the subscription holds; the client reconnects and resumes.
func (sb *subscription) close() {
	sb.s.cfg.Hub.Unsubscribe(sb.sub)
	if sb.s.cfg.Presence != nil {
		sb.s.cfg.Presence.Disconnect(sb.user)
	}
	sb.s.streams.release(sb.user)
}

// start is where a stream or poll begins: after the client's cursor when it may resume
// from it, else after the head, with the reason for the reset.
type start struct {
	from  events.Cursor
	reset *events.Reset
}

// startFrom validates the client's cursor ("" for none) against the log.
func (sb *subscription) startFrom(c *gin.Context, cursor string) (start, error) {
	head := sb.head
	if cursor == "" {
		return start{from: head}, nil
	}
	from, err := events.ParseCursor(cursor)
	if err != nil {
		return start{from: head, reset: &events.Reset{Reason: "malformed", Cursor: head.String()}}, nil
	}
	ok, reason, err := sb.s.cfg.Log.Resumable(c, from)
	if err != nil {
		return start{}, err
	}
	if !ok {
		return start{from: head, reset: &events.Reset{Reason: reason, Cursor: head.String()}}, nil
	}
	return start{from: from}, nil
}

// errEnough stops a replay early on purpose (a full long-poll answer).
var errEnough = errors.New("enough events for one answer")

// replay calls fn with the user's events in (from, head], in log order, in batches, and
// then checks that the pruner did not move the floor past from meanwhile: if it did,
// events were skipped, and the answer is a reset (to the head) instead.
func (sb *subscription) replay(c *gin.Context, from events.Cursor, fn func([]*events.Event) error) (*events.Reset, error) {
	if !from.Less(sb.head) {
		return nil, nil
	}
	if err := sb.s.cfg.Log.Backfill(c, sb.user, from, sb.head, fn); err != nil && !errors.Is(err, errEnough) {
		return nil, err
	}
	ok, reason, err := sb.s.cfg.Log.Resumable(c, from)
	if err != nil || ok {
		return nil, err
	}
	return &events.Reset{Reason: reason, Cursor: sb.head.String()}, nil
}

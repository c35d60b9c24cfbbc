package api

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/chatd/chatd/events"
)

// maxPollEvents bounds one long-poll answer; the client polls again from its cursor.
const maxPollEvents = 500

// acquireStream takes the caller's stream slot, unless authenticating by ticket already
// did (a ticket is only used up once the stream is sure to open).
func (s *Server) acquireStream(c *gin.Context) error {
	if c.GetBool(ctxStreamSlot) {
		return nil
	}
	return s.streams.acquire(user(c), s.cfg.Retry)
}

// start is where a stream or poll begins: after the client's cursor when it may resume
// from it, else after the head, with the reason for the reset.
type start struct {
	from  events.Cursor
	reset *events.Reset
}

// resumeFrom validates the client's cursor ("" for none) against the log.
func (s *Server) resumeFrom(c *gin.Context, cursor string, head events.Cursor) (start, error) {
	if cursor == "" {
		return start{from: head}, nil
	}
	from, err := events.ParseCursor(cursor)
	if err != nil {
		return start{from: head, reset: &events.Reset{Reason: "malformed", Cursor: head.String()}}, nil
	}
	ok, reason, err := s.cfg.Log.Resumable(c, from)
	if err != nil {
		return start{}, err
	}
	if !ok {
		return start{from: head, reset: &events.Reset{Reason: reason, Cursor: head.String()}}, nil
	}
	return start{from: from}, nil
}

// checkNotPruned catches a replay that retention overtook: if the pruner moved the floor
// past the cursor while the replay ran, events were skipped, so the client gets a reset
// (and the head as its last event id) and the stream continues live, as for any expired
// cursor.
func (s *Server) checkNotPruned(c *gin.Context, from, head events.Cursor, out streamWriter) error {
	ok, reason, err := s.cfg.Log.Resumable(c, from)
	if err != nil || ok {
		return err
	}
	data, _ := json.Marshal(events.Reset{Reason: reason, Cursor: head.String()})
	return out.send(appendID(appendEvent(nil, "", "reset", data), head.String()))
}

// stream is GET /v1/events: subscribe to the hub first, then replay the log from the
// client's cursor up to the hub's head, then relay live events, skipping anything already
// sent. That order is what makes delivery exactly-once across the replay/live boundary.
//
// Over HTTP/1.1 the handler takes the connection over from net/http (hijacks it) before
// writing, replays, and returns: the live stream then runs on two small goroutines with no
// net/http buffers, instead of the request's deep goroutine, its buffered reader and
// writer and a background reader, which is what lets one instance hold tens of thousands
// of idle streams. Elsewhere (HTTP/2) the stream stays in the handler.
func (s *Server) stream(c *gin.Context) error {
	me := user(c)
	if err := s.acquireStream(c); err != nil {
		return err
	}
	ls := &liveStream{s: s, user: me, requestID: requestID(c)}
	defer func() {
		if !ls.detached {
			ls.end()
		}
	}()
	cursor := c.GetHeader("Last-Event-ID") // EventSource's automatic reconnect
	if cursor == "" {
		cursor = c.Query("last_event_id") // a new EventSource resuming from a stored cursor
	}

	sub, head := s.cfg.Hub.Subscribe(me)
	ls.sub = sub
	if s.cfg.Presence != nil {
		s.cfg.Presence.Connect(me)
		ls.presence = true
	}
	st, err := s.resumeFrom(c, cursor, head)
	if err != nil {
		return err
	}

	h := c.Writer.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache, no-transform")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer this response
	out, gone, err := s.startResponse(c)
	if err != nil {
		return nil // the client is gone
	}
	ls.out = out

	// The first bytes go out at once: proxies and antivirus gateways that wait for a body
	// before passing anything on see one immediately.
	b := appendRetry(nil, s.cfg.Retry)
	b = appendComment(b, "chatd stream")
	ready, _ := json.Marshal(map[string]string{"cursor": st.from.String()})
	b = appendEvent(b, "", "ready", ready)
	b = appendID(b, st.from.String())
	if st.reset != nil {
		data, _ := json.Marshal(st.reset)
		b = appendEvent(b, "", "reset", data)
	}
	if err := out.send(b); err != nil {
		return nil
	}

	ls.heartbeat = time.NewTicker(s.cfg.Heartbeat)
	ls.last = st.from
	if ls.last.Less(head) {
		err := s.cfg.Log.Backfill(c, me, ls.last, head, func(evs []*events.Event) error {
			var frames [][]byte
			select {
			case <-ls.heartbeat.C: // a long replay still keeps proxies' idle timers at bay
				frames = append(frames, ping)
			default:
			}
			frames, ls.last = appendFrames(frames, evs, ls.last)
			return out.send(frames...)
		})
		if err != nil {
			s.log.Info("stream replay ended", "request_id", ls.requestID, "err", err)
			return nil
		}
		if err := s.checkNotPruned(c, st.from, head, out); err != nil {
			return nil
		}
		ls.last = head
	}

	ls.expiry = time.NewTimer(tokenExpiry(c).Sub(s.now()))
	// Jitter spreads the reconnections of streams opened together (after a deploy).
	ls.lifetime = time.NewTimer(s.cfg.StreamLifetime*9/10 + rand.N(s.cfg.StreamLifetime/5+1))
	if gone == nil {
		ls.run(c.Request.Context().Done())
		return nil
	}
	ls.detached = true
	go func() {
		defer ls.end()
		ls.run(gone)
	}()
	return nil
}

// liveStream is a stream past its replay: what it needs to relay live events and to end.
type liveStream struct {
	s         *Server
	user      string
	requestID string
	sub       *events.Subscriber
	presence  bool
	out       streamWriter
	last      events.Cursor
	heartbeat *time.Ticker
	expiry    *time.Timer
	lifetime  *time.Timer
	detached  bool // run by its own goroutine after the handler returned
}

// run relays live events until the client leaves (gone), the hub ends the subscriber, the
// token expires or the stream's lifetime is over.
func (ls *liveStream) run(gone <-chan struct{}) {
	for {
		select {
		case <-gone:
			return
		case <-ls.sub.Ready():
			evs, done, overflowed := ls.sub.Take()
			// Every event may be one the replay already sent: then there is nothing to write.
			if frames, last := appendFrames(nil, evs, ls.last); len(frames) > 0 {
				ls.last = last
				if err := ls.out.send(frames...); err != nil {
					return
				}
			}
			if overflowed {
				ls.s.log.Info("slow stream closed", "request_id", ls.requestID, "user", ls.user)
				ls.s.metrics.slowStreams.Inc()
			}
			if done {
				return
			}
		case <-ls.heartbeat.C:
			if err := ls.out.send(ping); err != nil {
				return
			}
		case <-ls.expiry.C:
			return // the token has expired: the client must come back with a new one
		case <-ls.lifetime.C:
			return
		}
	}
}

// end releases everything the stream holds; the client reconnects and resumes.
func (ls *liveStream) end() {
	if ls.expiry != nil {
		ls.expiry.Stop()
		ls.lifetime.Stop()
	}
	if ls.heartbeat != nil {
		ls.heartbeat.Stop()
	}
	if ls.out != nil {
		ls.out.close()
	}
	if ls.sub != nil {
		ls.s.cfg.Hub.Unsubscribe(ls.sub)
	}
	if ls.presence {
		ls.s.cfg.Presence.Disconnect(ls.user)
	}
	ls.s.streams.release(ls.user)
}

// ping is the heartbeat comment.
var ping = appendComment(nil, "ping")

// appendFrames appends the frames of evs, skipping durable events at or before last
// (already sent), and returns the new last position. Frames are the events' own (see
// events.Event.Frame): streams share them and never copy them.
func appendFrames(frames [][]byte, evs []*events.Event, last events.Cursor) ([][]byte, events.Cursor) {
	for _, e := range evs {
		if e.Durable() {
			if !last.Less(e.Cursor) {
				continue
			}
			last = e.Cursor
		}
		frames = append(frames, e.Frame(frameEvent))
	}
	return frames, last
}

// frameEvent frames one event for text/event-stream, with its cursor as the id when it is
// durable.
func frameEvent(e *events.Event) []byte {
	if e.Durable() {
		return appendDurable(nil, e.Cursor, e.Type, e.Data)
	}
	return appendEvent(nil, "", e.Type, e.Data)
}

// pollEvent is one event in a long-poll answer.
type pollEvent struct {
	ID   string          `json:"id,omitempty"`
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

// errPollFull stops a replay once a long-poll answer is full.
var errPollFull = errors.New("poll answer full")

// poll is GET /v1/events/poll, the fallback for networks that hold streamed bodies: the
// same cursor, the same replay-then-live order, answered as soon as there is something
// durable to say or after timeout seconds.
func (s *Server) poll(c *gin.Context) error {
	wait, err := queryInt(c, "timeout", 25, 0, int64(s.cfg.MaxPollWait/time.Second))
	if err != nil {
		return err
	}
	me := user(c)
	if err := s.acquireStream(c); err != nil {
		return err
	}
	defer s.streams.release(me)
	sub, head := s.cfg.Hub.Subscribe(me)
	defer s.cfg.Hub.Unsubscribe(sub)
	if s.cfg.Presence != nil {
		// A user who can only poll is online too; the grace period spans the gap
		// between two polls.
		s.cfg.Presence.Connect(me)
		defer s.cfg.Presence.Disconnect(me)
	}

	cursor, given := c.GetQuery("cursor")
	if !given {
		c.JSON(http.StatusOK, gin.H{"events": []pollEvent{}, "cursor": head.String()})
		return nil
	}
	if cursor == "" {
		cursor = "-" // given but empty is malformed, not absent
	}
	st, err := s.resumeFrom(c, cursor, head)
	if err != nil {
		return err
	}
	if st.reset != nil {
		data, _ := json.Marshal(st.reset)
		c.JSON(http.StatusOK, gin.H{"events": []pollEvent{{Type: "reset", Data: data}}, "cursor": head.String()})
		return nil
	}

	out := []pollEvent{}
	last := st.from
	add := func(evs []*events.Event) error {
		for _, e := range evs {
			if e.Durable() && last.Less(e.Cursor) {
				last = e.Cursor
				out = append(out, pollEvent{ID: last.String(), Type: e.Type, Data: e.Data})
				if len(out) >= maxPollEvents {
					return errPollFull
				}
			}
		}
		return nil
	}
	if last.Less(head) {
		err := s.cfg.Log.Backfill(c, me, last, head, add)
		switch {
		case err == nil:
			last = head // nothing else of ours up to the head
		case !errors.Is(err, errPollFull):
			return err
		}
		// Retention may have overtaken the replay (see checkNotPruned).
		if ok, reason, err := s.cfg.Log.Resumable(c, st.from); err != nil {
			return err
		} else if !ok {
			data, _ := json.Marshal(events.Reset{Reason: reason, Cursor: head.String()})
			c.JSON(http.StatusOK, gin.H{"events": []pollEvent{{Type: "reset", Data: data}}, "cursor": head.String()})
			return nil
		}
	}
	if len(out) == 0 {
		timeout := time.NewTimer(time.Duration(wait) * time.Second)
		defer timeout.Stop()
	waitLoop:
		for len(out) == 0 {
			select {
			case <-c.Request.Context().Done():
				return nil
			case <-timeout.C:
				break waitLoop
			case <-sub.Ready():
				evs, done, _ := sub.Take()
				_ = add(evs)
				if done {
					break waitLoop
				}
			}
		}
	}
	c.JSON(http.StatusOK, gin.H{"events": out, "cursor": last.String()})
	return nil
}

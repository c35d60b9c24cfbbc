package api

import (
	"encoding/json"
	"math/rand/v2"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/chatd/chatd/events"
)

// stream is GET /v1/events: subscribe to the hub first, then replay the log from the
// client's cursor up to the hub's head, then relay live events, skipping anything already
// sent (resume.go). That order is what makes delivery exactly-once across the replay/live
// boundary.
//
// Over HTTP/1.1 the handler takes the connection over from net/http (hijacks it) before
// writing, replays, and returns: the live stream then runs on two small goroutines with no
// net/http buffers, instead of the request's deep goroutine, its buffered reader and
// writer and a background reader, which is what lets one instance hold tens of thousands
// of idle streams. Elsewhere (HTTP/2) the stream stays in the handler.
func (s *Server) stream(c *gin.Context) error {
	sb, err := s.subscribe(c)
	if err != nil {
		return err
	}
	ls := &liveStream{subscription: sb, requestID: requestID(c)}
	defer func() {
		if !ls.detached {
			ls.end()
		}
	}()
	cursor := c.GetHeader("Last-Event-ID") // EventSource's automatic reconnect
	if cursor == "" {
		cursor = c.Query("last_event_id") // a new EventSource resuming from a stored cursor
	}
	st, err := sb.startFrom(c, cursor)
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
	if err := out.send(s.opening(st)); err != nil {
		return nil
	}

	ls.heartbeat = time.NewTicker(s.cfg.Heartbeat)
	ls.last = st.from
	reset, err := sb.replay(c, st.from, func(evs []*events.Event) error {
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
	if reset != nil {
		// Retention overtook the replay: the client starts over from the head, live.
		data, _ := json.Marshal(reset)
		if err := out.send(appendID(appendEvent(nil, "", "reset", data), sb.head.String())); err != nil {
			return nil
		}
	}
	if ls.last.Less(sb.head) {
		ls.last = sb.head
	}

	ls.expiry = time.NewTimer(tokenExpiry(c).Sub(s.now()))
	// Jitter spreads the reconnections of streams opened together (after a deploy).
	ls.lifetime = time.NewTimer(s.cfg.StreamLifetime*9/10 + rand.N(s.cfg.StreamLifetime/5+1))
	if gone == nil {
		ls.run(c.Request.Context().Done())
		return nil
	}
	ls.detached = true
	s.detached.Add(1)
	go func() {
		defer s.detached.Done()
		defer ls.end()
		ls.run(gone)
	}()
	return nil
}

// opening is a stream's first chunk: the reconnection delay, a comment, ready (which
// carries no id) with the start cursor, that cursor as the last event id on its own, and
// the reset when the client's cursor could not be resumed.
func (s *Server) opening(st start) []byte {
	b := appendRetry(nil, s.cfg.Retry)
	b = appendComment(b, "chatd stream")
	ready, _ := json.Marshal(map[string]string{"cursor": st.from.String()})
	b = appendEvent(b, "", "ready", ready)
	b = appendID(b, st.from.String())
	if st.reset != nil {
		data, _ := json.Marshal(st.reset)
		b = appendEvent(b, "", "reset", data)
	}
	return b
}

// liveStream is a stream past its replay: what it needs to relay live events and to end.
type liveStream struct {
	*subscription
	requestID string
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
	ls.close()
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

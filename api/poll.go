package api

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/chatd/chatd/events"
)

// maxPollEvents bounds one long-poll answer; the client polls again from its cursor.
const maxPollEvents = 500

// pollEvent is one event in a long-poll answer.
type pollEvent struct {
	ID   string          `json:"id,omitempty"`
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

// poll is GET /v1/events/poll, the fallback for networks that hold streamed bodies: the
// same cursor, the same replay-then-live order (see resume.go), answered as soon as there
// is something durable to say or after timeout seconds.
func (s *Server) poll(c *gin.Context) error {
	wait, err := queryInt(c, "timeout", 25, 0, int64(s.cfg.MaxPollWait/time.Second))
	if err != nil {
		return err
	}
	sb, err := s.subscribe(c)
	if err != nil {
		return err
	}
	defer sb.close()
	resetAnswer := func(r *events.Reset) {
		data, _ := json.Marshal(r)
		c.JSON(http.StatusOK, gin.H{"events": []pollEvent{{Type: "reset", Data: data}}, "cursor": sb.head.String()})
	}

	cursor, given := c.GetQuery("cursor")
	if !given {
		c.JSON(http.StatusOK, gin.H{"events": []pollEvent{}, "cursor": sb.head.String()})
		return nil
	}
	if cursor == "" {
		cursor = "-" // given but empty is malformed, not absent
	}
	st, err := sb.startFrom(c, cursor)
	if err != nil {
		return err
	}
	if st.reset != nil {
		resetAnswer(st.reset)
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
					return errEnough
				}
			}
		}
		return nil
	}
	reset, err := sb.replay(c, st.from, add)
	switch {
	case err != nil:
		return err
	case reset != nil:
		resetAnswer(reset)
		return nil
	case len(out) < maxPollEvents && last.Less(sb.head):
		last = sb.head // nothing else of ours up to the head
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
			case <-sb.sub.Ready():
				evs, done, _ := sb.sub.Take()
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

package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"

	"github.com/chatd/chatd/db"
	"github.com/chatd/chatd/events"
)

type readRequest struct {
	Seq *int64 `json:"seq"`
}

// markRead moves the caller's read position forward to seq (never back, never past the
// last message) and emits a read event when it moved.
func (s *Server) markRead(c *gin.Context) error {
	conv, err := conversationID(c)
	if err != nil {
		return err
	}
	var req readRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	if req.Seq == nil || *req.Seq < 0 {
		return errorf("invalid_seq", "seq must be a message seq (an integer of 0 or more)")
	}
	_, err = s.q.MarkRead(c, db.MarkReadParams{ConversationID: conv, UserID: user(c), Seq: *req.Seq})
	if errors.Is(err, pgx.ErrNoRows) {
		err = s.requireMember(c, conv) // nothing moved: fine, unless the caller is an outsider
	}
	if err != nil {
		return err
	}
	c.Status(http.StatusNoContent)
	return nil
}

type unreadConversation struct {
	ID          string `json:"id"`
	UnreadCount int64  `json:"unread_count"`
}

// unread lists the caller's conversations with unread messages, computed from stored state.
func (s *Server) unread(c *gin.Context) error {
	rows, err := s.q.UnreadCounts(c, user(c))
	if err != nil {
		return err
	}
	out := make([]unreadConversation, len(rows))
	var total int64
	for i, r := range rows {
		out[i] = unreadConversation{ID: events.UUIDString(r.ConversationID), UnreadCount: r.UnreadCount}
		total += r.UnreadCount
	}
	c.JSON(http.StatusOK, gin.H{"total": total, "conversations": out})
	return nil
}

type typingRequest struct {
	Typing *bool `json:"typing"`
}

// typing tells the other participants that the caller is (or stopped) typing. Nothing is
// stored: the event is ephemeral and reaches only streams open now.
func (s *Server) typing(c *gin.Context) error {
	conv, err := conversationID(c)
	if err != nil {
		return err
	}
	var req typingRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	if req.Typing == nil {
		return errorf("invalid_typing", "typing must be true or false")
	}
	me := user(c)
	members, err := s.q.ListMembers(c, db.ListMembersParams{ConversationID: conv, CallerID: me})
	if err != nil {
		return err
	}
	if len(members) == 0 {
		return errNotFound
	}
	data, err := json.Marshal(events.Typing{ConversationID: events.UUIDString(conv), UserID: me, Typing: *req.Typing})
	if err != nil {
		return err
	}
	s.cfg.Log.EphemeralIn(conv, members, &events.Event{Type: "typing", Data: data, Except: me})
	c.Status(http.StatusNoContent)
	return nil
}

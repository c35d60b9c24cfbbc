package api

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/chatd/chatd/db"
	"github.com/chatd/chatd/events"
)

// maxClientID is the longest idempotency key accepted.
const maxClientID = 64

// systemClientIDConstraint is the unique index that makes client_id an idempotency key of
// system messages: concurrent system sends with one client_id meet there.
const systemClientIDConstraint = "messages_system_client_id"

// messageRequest is an edit, and the part of a send an edit shares: an edit changes the
// body only, so attachments there are ignored like any other unknown field.
type messageRequest struct {
	Body     *string `json:"body"`
	ClientID *string `json:"client_id"`
}

type sendRequest struct {
	messageRequest
	Attachments json.RawMessage `json:"attachments"`
}

// decodeMessage reads a send or an edit: JSON, with a valid body.
func (s *Server) decodeMessage(c *gin.Context) (req messageRequest, err error) {
	if err = s.decodeJSON(c, &req); err == nil {
		err = s.validBody(req.Body)
	}
	return req, err
}

// decodeSend reads a send into a conversation, a user's or a system message: the path's
// :id, then JSON with its attachments checked (api/attachments.go), a valid body (empty or
// absent when there are attachments) and a valid client_id (an empty one is none).
func (s *Server) decodeSend(c *gin.Context) (conv pgtype.UUID, req sendRequest, attachments []byte, err error) {
	if conv, err = conversationID(c); err != nil {
		return
	}
	if err = s.decodeJSON(c, &req); err != nil {
		return
	}
	attachments, n, err := checkAttachments(req.Attachments, s.cfg.AttachmentHosts)
	if err != nil {
		return
	}
	if n > 0 && req.Body == nil {
		req.Body = new(string)
	}
	attachmentsOnly := n > 0 && strings.TrimSpace(*req.Body) == "" && len(*req.Body) <= s.cfg.MaxMessageBytes
	if !attachmentsOnly {
		if err = s.validBody(req.Body); err != nil {
			return
		}
	}
	if req.ClientID != nil && *req.ClientID == "" {
		req.ClientID = nil
	}
	if req.ClientID != nil && (len(*req.ClientID) > maxClientID || !validText(*req.ClientID)) {
		err = errorf("invalid_client_id", "client_id must be at most %d characters", maxClientID)
	}
	return conv, req, attachments, err
}

// validBody checks a message body as API.md fixes: at most MaxMessageBytes as sent, not
// empty after trimming whitespace; it is stored exactly as sent.
func (s *Server) validBody(body *string) error {
	switch {
	case body == nil:
		return errorf("empty_body", "body is required")
	case len(*body) > s.cfg.MaxMessageBytes:
		return errorf("body_too_long", "body is longer than %d bytes", s.cfg.MaxMessageBytes)
	case strings.TrimSpace(*body) == "":
		return errorf("empty_body", "body is empty")
	case !validText(*body):
		return errorf("invalid_body", "body contains a NUL character")
	}
	return nil
}

// sendMessage appends a message; with a client_id already used by the caller in this
// conversation it returns the original (200) and emits nothing.
func (s *Server) sendMessage(c *gin.Context) error {
	conv, req, attachments, err := s.decodeSend(c)
	if err != nil {
		return err
	}
	me := user(c)
	send := db.Send{ConversationID: conv, SenderID: me, Body: *req.Body, Attachments: attachments}
	if req.ClientID != nil {
		send.ClientID = *req.ClientID
	}
	out, err := s.sender.Send(c, send)
	switch {
	case err != nil:
		return err
	case out.OK:
		c.JSON(http.StatusCreated, events.MessageFrom(out.Message))
		return nil
	}
	return s.sendRefused(c, conv, &me, req.ClientID)
}

var errClosed = errorf("conversation_closed", "the conversation is closed: nobody can send in it any more")

// sendRefused answers a send (by sender, or by the server when sender is nil) that wrote
// nothing: 404 when the sender cannot see the conversation; the original message (200)
// when the client_id was used before, even once the conversation is closed (a retry of a
// send that succeeded); 409 when the conversation is closed.
func (s *Server) sendRefused(c *gin.Context, conv pgtype.UUID, sender, clientID *string) error {
	why, err := s.q.SendRefusal(c, db.SendRefusalParams{ConversationID: conv, SenderID: sender})
	if err != nil {
		return err
	}
	if !why.Found || !why.Member {
		return errNotFound
	}
	if clientID != nil {
		var m db.Message
		if sender != nil {
			m, err = s.q.GetMessageByClientID(c, db.GetMessageByClientIDParams{ConversationID: conv, SenderID: sender, ClientID: clientID})
		} else {
			m, err = s.q.GetSystemMessageByClientID(c, db.GetSystemMessageByClientIDParams{ConversationID: conv, ClientID: clientID})
		}
		if err == nil {
			c.JSON(http.StatusOK, events.MessageFrom(m))
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
	}
	if why.Closed {
		return errClosed
	}
	return errNotFound
}

// listMessages returns a window of history, ascending by seq (see API.md for the windows).
func (s *Server) listMessages(c *gin.Context) error {
	conv, err := conversationID(c)
	if err != nil {
		return err
	}
	limit, err := queryInt(c, "limit", 50, 1, 200)
	if err != nil {
		return err
	}
	before, err := queryInt(c, "before_seq", 0, 1, math.MaxInt64)
	if err != nil {
		return err
	}
	after, err := queryInt(c, "after_seq", -1, 0, math.MaxInt64)
	if err != nil {
		return err
	}
	if before > 0 && after >= 0 {
		return errorf("invalid_window", "give before_seq or after_seq, not both")
	}
	// A member added with history "joined" sees only the messages after history_seq.
	from, err := s.q.MemberHistorySeq(c, db.MemberHistorySeqParams{ConversationID: conv, UserID: user(c)})
	if errors.Is(err, pgx.ErrNoRows) {
		return errNotFound
	}
	if err != nil {
		return err
	}
	n := int32(limit + 1) // one more than asked tells whether there are more
	var rows []db.Message
	switch {
	case after >= 0:
		rows, err = s.q.ListMessagesAfter(c, db.ListMessagesAfterParams{ConversationID: conv, AfterSeq: after, HistorySeq: from, RowLimit: n})
	case before > 0:
		rows, err = s.q.ListMessagesBefore(c, db.ListMessagesBeforeParams{ConversationID: conv, BeforeSeq: before, HistorySeq: from, RowLimit: n})
	default:
		rows, err = s.q.ListLatestMessages(c, db.ListLatestMessagesParams{ConversationID: conv, HistorySeq: from, RowLimit: n})
	}
	if err != nil {
		return err
	}
	hasMore := len(rows) > int(limit)
	rows = rows[:min(len(rows), int(limit))]
	if after < 0 {
		slices.Reverse(rows) // read newest first, returned ascending
	}
	out := make([]events.Message, len(rows))
	for i, m := range rows {
		out[i] = events.MessageFrom(m)
	}
	c.JSON(http.StatusOK, gin.H{"messages": out, "has_more": hasMore})
	return nil
}

// requireMember is 404 unless the caller participates in conv.
func (s *Server) requireMember(c *gin.Context, conv pgtype.UUID) error {
	ok, err := s.q.IsMember(c, db.IsMemberParams{ConversationID: conv, UserID: user(c)})
	if err != nil {
		return err
	}
	if !ok {
		return errNotFound
	}
	return nil
}

// messagePath is the :id and :message_id of a message route.
func messagePath(c *gin.Context) (conv, id pgtype.UUID, err error) {
	if conv, err = conversationID(c); err != nil {
		return
	}
	var ok bool
	if id, ok = events.ParseUUID(c.Param("message_id")); !ok {
		err = errNotFound
	}
	return
}

// editMessage replaces the body of the caller's own message.
func (s *Server) editMessage(c *gin.Context) error {
	conv, id, err := messagePath(c)
	if err != nil {
		return err
	}
	req, err := s.decodeMessage(c)
	if err != nil {
		return err
	}
	row, err := s.q.ChangeMessage(c, db.ChangeMessageParams{ConversationID: conv, ID: id, SenderID: user(c), Body: *req.Body})
	if errors.Is(err, pgx.ErrNoRows) {
		_, err = s.whyUnchanged(c, conv, id)
		if err == nil {
			err = errorf("message_deleted", "a deleted message cannot be edited")
		}
		return err
	}
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, events.MessageFrom(db.Message(row)))
	return nil
}

// deleteMessage soft-deletes the caller's own message; deleting it again returns it as it is.
func (s *Server) deleteMessage(c *gin.Context) error {
	conv, id, err := messagePath(c)
	if err != nil {
		return err
	}
	row, err := s.q.ChangeMessage(c, db.ChangeMessageParams{ConversationID: conv, ID: id, SenderID: user(c), Erase: true})
	if errors.Is(err, pgx.ErrNoRows) {
		m, err := s.whyUnchanged(c, conv, id)
		if err != nil {
			return err
		}
		c.JSON(http.StatusOK, events.MessageFrom(m))
		return nil
	}
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, events.MessageFrom(db.Message(row)))
	return nil
}

// whyUnchanged explains an edit or delete that matched no row: 404 when the caller cannot
// see the message, 403 when it is someone else's; otherwise it returns the message, which
// is then already deleted.
func (s *Server) whyUnchanged(c *gin.Context, conv, id pgtype.UUID) (db.Message, error) {
	m, err := s.q.GetMessage(c, db.GetMessageParams{ConversationID: conv, ID: id, UserID: user(c)})
	if errors.Is(err, pgx.ErrNoRows) {
		return m, errNotFound
	}
	if err != nil {
		return m, err
	}
	if m.SenderID == nil || *m.SenderID != user(c) {
		return m, errorf("not_sender", "only the sender can change a message")
	}
	return m, nil
}

package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/chatd/chatd/db"
	"github.com/chatd/chatd/events"
)

// The server API (/v1/server): what the application's backend does for its users, with a
// service key (servicekeys.go). It sees every conversation; membership changes are in
// members.go.

// maxExternalID bounds an external_id, the application's own key for a conversation.
const maxExternalID = 255

type serverConversationRequest struct {
	ParticipantIDs []string        `json:"participant_ids"`
	Kind           *string         `json:"kind"`
	Title          *string         `json:"title"`
	ExternalID     *string         `json:"external_id"`
	Metadata       json.RawMessage `json:"metadata"`
	History        *string         `json:"history"`
}

// createServerConversation opens a conversation for the given users: 201, or 200 with the
// existing conversation when external_id is taken (whatever its participants). A direct
// conversation without external_id is the pair's one, as users get it.
func (s *Server) createServerConversation(c *gin.Context) error {
	var req serverConversationRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	members, err := serverParticipants(req.Kind, req.ParticipantIDs)
	if err != nil {
		return err
	}
	title, err := cleanTitle(req.Title)
	if err != nil {
		return err
	}
	if req.ExternalID != nil && (*req.ExternalID == "" || len(*req.ExternalID) > maxExternalID || !validLine(*req.ExternalID)) {
		return errorf("invalid_external_id", "external_id must be 1 to %d bytes of text on one line", maxExternalID)
	}
	meta, err := parseMetadata(req.Metadata)
	if err != nil {
		return err
	}
	if err := validHistory(req.History); err != nil {
		return err
	}
	history := "full"
	if req.History != nil {
		history = *req.History
	}
	var (
		id      pgtype.UUID
		created bool
	)
	err = db.InTx(c, s.cfg.Pool, func(q *db.Queries) error {
		if *req.Kind == "direct" && req.ExternalID == nil {
			id, created, err = getOrCreateDirect(c, q, members[0], members[1], directOptions{title: title, metadata: meta})
			return err
		}
		p := db.CreateServerConversationParams{Kind: *req.Kind, Title: title, ExternalID: req.ExternalID, Metadata: string(meta), History: history}
		id, created, err = createKeyed(c, q, p, members)
		return err
	})
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return s.answerServerConversation(c, status, id)
}

// serverParticipants checks kind and the participants: a direct conversation has exactly
// two users, a group one to maxGroupParticipants (the server may add more later).
func serverParticipants(kind *string, ids []string) ([]string, error) {
	if kind == nil || (*kind != "direct" && *kind != "group") {
		return nil, errorf("invalid_kind", `kind must be "direct" or "group"`)
	}
	members := slices.Clone(ids)
	for _, p := range members {
		if !validUserID(p) {
			return nil, errorf("invalid_participants", "participant_ids has an invalid user id")
		}
	}
	slices.Sort(members) // a fixed order also keeps concurrent inserts of users deadlock-free
	members = slices.Compact(members)
	switch {
	case *kind == "direct" && len(members) != 2:
		return nil, errorf("invalid_participants", "a direct conversation has exactly two different participants")
	case len(members) == 0:
		return nil, errorf("invalid_participants", "participant_ids must name at least one user")
	case len(members) > maxGroupParticipants:
		return nil, errorf("too_many_participants", "a group has at most %d participants", maxGroupParticipants)
	}
	return members, nil
}

// createKeyed creates a conversation that may carry an external_id; when another has that
// external_id already (or gets it concurrently), it returns that one, created false.
func createKeyed(ctx context.Context, q *db.Queries, p db.CreateServerConversationParams, members []string) (pgtype.UUID, bool, error) {
	if err := q.EnsureUsers(ctx, members); err != nil {
		return pgtype.UUID{}, false, err
	}
	if p.Kind == "direct" {
		p.DirectA, p.DirectB = &members[0], &members[1] // sorted
	}
	id, err := q.CreateServerConversation(ctx, p)
	if errors.Is(err, pgx.ErrNoRows) {
		// Taken: ON CONFLICT waited for its creator to commit, so this statement sees it.
		id, err = q.ConversationByExternalID(ctx, p.ExternalID)
		return id, false, err
	}
	if err != nil {
		return id, false, err
	}
	if err := q.AddMembers(ctx, db.AddMembersParams{ConversationID: id, UserIds: members}); err != nil {
		return id, false, err
	}
	return id, true, q.InsertConversationEvent(ctx, id)
}

// answerServerConversation answers with the conversation as the server sees it.
func (s *Server) answerServerConversation(c *gin.Context, status int, id pgtype.UUID) error {
	row, err := s.q.ServerConversation(c, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return errNotFound
	}
	if err != nil {
		return err
	}
	// Presence shows through the conversations a participant took part in, to the server
	// as to anyone ("" is no participant).
	convs, err := s.withParticipants(c, "", []db.MemberConversation{db.MemberConversation(row)})
	if err != nil {
		return err
	}
	c.JSON(status, convs[0])
	return nil
}

// findServerConversation is GET /v1/server/conversations?external_id=.
func (s *Server) findServerConversation(c *gin.Context) error {
	ext := c.Query("external_id")
	if ext == "" || len(ext) > maxExternalID {
		return errorf("bad_request", "give the query parameter external_id, 1 to %d bytes", maxExternalID)
	}
	id, err := s.q.ConversationByExternalID(c, &ext)
	if errors.Is(err, pgx.ErrNoRows) {
		return errNotFound
	}
	if err != nil {
		return err
	}
	return s.answerServerConversation(c, http.StatusOK, id)
}

// sendSystemMessage posts a system message (kind "system", no sender) into any open
// conversation; with a client_id already used there, the original (200).
func (s *Server) sendSystemMessage(c *gin.Context) error {
	conv, req, attachments, err := s.decodeSend(c)
	if err != nil {
		return err
	}
	list := "[]" // text, not bytes: through PgBouncer's exec mode bytes go as bytea, which jsonb refuses
	if len(attachments) > 0 {
		list = string(attachments)
	}
	row, err := s.q.SendSystemMessage(c, db.SendSystemMessageParams{ConversationID: conv, ClientID: req.ClientID, Body: *req.Body, Attachments: list})
	if err == nil {
		c.JSON(http.StatusCreated, events.MessageFrom(db.Message(row)))
		return nil
	}
	if !errors.Is(err, pgx.ErrNoRows) && !db.IsUniqueViolation(err, systemClientIDConstraint) {
		return err
	}
	return s.sendRefused(c, conv, nil, req.ClientID)
}

// closeConversation closes a conversation for good: nobody sends in it any more (409);
// its history stays readable. Closing it again changes nothing.
func (s *Server) closeConversation(c *gin.Context) error {
	conv, err := conversationID(c)
	if err != nil {
		return err
	}
	if _, err := s.q.CloseConversation(c, conv); errors.Is(err, pgx.ErrNoRows) {
		return errNotFound
	} else if err != nil {
		return err
	}
	return s.answerServerConversation(c, http.StatusOK, conv)
}

type notificationsRequest struct {
	Webhook *bool `json:"webhook"`
}

// setNotifications switches the notification webhook on or off for one user.
func (s *Server) setNotifications(c *gin.Context) error {
	id := c.Param("id")
	if !validUserID(id) {
		return errNotFound
	}
	var req notificationsRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	if req.Webhook == nil {
		return errorf("invalid_notifications", "webhook must be true or false")
	}
	if err := s.q.SetNotifyWebhook(c, db.SetNotifyWebhookParams{ID: id, NotifyWebhook: *req.Webhook}); err != nil {
		return err
	}
	c.Status(http.StatusNoContent)
	return nil
}

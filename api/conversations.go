package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/chatd/chatd/db"
	"github.com/chatd/chatd/events"
)

// Limits on conversations; generous for product chat, small enough that one request cannot
// make the server do unbounded work.
const (
	maxGroupParticipants = 256
	maxTitleRunes        = 200
)

type createConversationRequest struct {
	ParticipantID  *string  `json:"participant_id"`
	ParticipantIDs []string `json:"participant_ids"`
	Title          *string  `json:"title"`
}

// createConversation gets or creates the direct conversation with participant_id, or
// creates a group with participant_ids.
func (s *Server) createConversation(c *gin.Context) error {
	var req createConversationRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	me := user(c)
	var (
		id      pgtype.UUID
		created bool
		err     error
	)
	switch {
	case req.ParticipantID != nil && req.ParticipantIDs == nil:
		id, created, err = s.createDirect(c, me, *req.ParticipantID)
	case req.ParticipantIDs != nil && req.ParticipantID == nil:
		id, err = s.createGroup(c, me, req.ParticipantIDs, req.Title)
		created = true
	default:
		return errorf("invalid_participants",
			"give either participant_id (a direct conversation) or participant_ids (a group)")
	}
	if err != nil {
		return err
	}
	conv, err := s.conversation(c, id, me)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	c.JSON(status, conv)
	return nil
}

func (s *Server) createDirect(ctx context.Context, me, other string) (id pgtype.UUID, created bool, err error) {
	if !validUserID(other) {
		return id, false, errorf("invalid_participants", "participant_id is not a valid user id")
	}
	if other == me {
		return id, false, errorf("invalid_participants", "a conversation needs another participant")
	}
	err = db.InTx(ctx, s.cfg.Pool, func(q *db.Queries) error {
		id, created, err = getOrCreateDirect(ctx, q, me, other, directOptions{creator: me})
		return err
	})
	return id, created, err
}

// directOptions are what the server API may set on a direct conversation it creates.
type directOptions struct {
	creator  string // "" when the server API creates it: nobody has taken part yet
	title    *string
	metadata []byte
}

// getOrCreateDirect returns the direct conversation of the pair a, b (without an
// external_id), creating it with its members and conversation event when there is none.
func getOrCreateDirect(ctx context.Context, q *db.Queries, a, b string, o directOptions) (id pgtype.UUID, created bool, err error) {
	a, b = min(a, b), max(a, b)
	if err := q.EnsureUsers(ctx, []string{a, b}); err != nil {
		return id, false, err
	}
	if o.metadata == nil {
		o.metadata = []byte("{}")
	}
	// ON CONFLICT waits for a concurrent creator to commit, then yields no row; the next
	// statement sees that creator's conversation.
	id, err = q.CreateDirectConversation(ctx, db.CreateDirectConversationParams{A: &a, B: &b, Title: o.title, Metadata: string(o.metadata)})
	if errors.Is(err, pgx.ErrNoRows) {
		id, err = q.GetDirectConversation(ctx, db.GetDirectConversationParams{A: &a, B: &b})
		return id, false, err
	}
	if err != nil {
		return id, false, err
	}
	if err := q.AddMembers(ctx, db.AddMembersParams{ConversationID: id, UserIds: []string{a, b}, CreatorID: o.creator}); err != nil {
		return id, false, err
	}
	return id, true, q.InsertConversationEvent(ctx, id)
}

func (s *Server) createGroup(ctx context.Context, me string, ids []string, title *string) (id pgtype.UUID, err error) {
	members := []string{me}
	for _, p := range ids {
		if !validUserID(p) {
			return id, errorf("invalid_participants", "participant_ids has an invalid user id")
		}
		members = append(members, p)
	}
	slices.Sort(members) // a fixed order also keeps concurrent inserts of users deadlock-free
	members = slices.Compact(members)
	if len(members) < 2 {
		return id, errorf("invalid_participants", "a group needs another participant besides you")
	}
	if len(members) > maxGroupParticipants {
		return id, errorf("too_many_participants", "a group has at most %d participants", maxGroupParticipants)
	}
	if title, err = cleanTitle(title); err != nil {
		return id, err
	}
	err = db.InTx(ctx, s.cfg.Pool, func(q *db.Queries) error {
		if err := q.EnsureUsers(ctx, members); err != nil {
			return err
		}
		if id, err = q.CreateGroupConversation(ctx, title); err != nil {
			return err
		}
		if err := q.AddMembers(ctx, db.AddMembersParams{ConversationID: id, UserIds: members, CreatorID: me}); err != nil {
			return err
		}
		return q.InsertConversationEvent(ctx, id)
	})
	return id, err
}

// cleanTitle trims a conversation's title: nil when absent or blank, 422 when it is not
// one line of text of at most maxTitleRunes characters.
func cleanTitle(title *string) (*string, error) {
	if title == nil {
		return nil, nil
	}
	t := strings.TrimSpace(*title)
	switch {
	case t == "":
		return nil, nil
	case !validLine(t) || utf8.RuneCountInString(t) > maxTitleRunes:
		return nil, errorf("invalid_title", "title must be at most %d characters of text on one line, without control characters", maxTitleRunes)
	}
	return &t, nil
}

func (s *Server) getConversation(c *gin.Context) error {
	id, err := conversationID(c)
	if err != nil {
		return err
	}
	conv, err := s.conversation(c, id, user(c))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, conv)
	return nil
}

// conversation loads one conversation as me sees it; 404 when me is not a participant.
func (s *Server) conversation(ctx context.Context, id pgtype.UUID, me string) (events.Conversation, error) {
	row, err := s.q.GetConversation(ctx, db.GetConversationParams{ConversationID: id, UserID: me})
	if errors.Is(err, pgx.ErrNoRows) {
		return events.Conversation{}, errNotFound
	}
	if err != nil {
		return events.Conversation{}, err
	}
	convs, err := s.withParticipants(ctx, me, []db.MemberConversation{row})
	if err != nil {
		return events.Conversation{}, err
	}
	return convs[0], nil
}

// withParticipants renders rows with their participants, in one query for all of them.
func (s *Server) withParticipants(ctx context.Context, me string, rows []db.MemberConversation) ([]events.Conversation, error) {
	out := make([]events.Conversation, len(rows))
	ids := make([]pgtype.UUID, len(rows))
	index := make(map[[16]byte]int, len(rows))
	for i, r := range rows {
		out[i] = events.ConversationFrom(r)
		ids[i] = r.ID
		index[r.ID.Bytes] = i
	}
	if len(rows) == 0 {
		return out, nil
	}
	parts, err := s.q.ListParticipants(ctx, ids)
	if err != nil {
		return nil, err
	}
	users := make([]string, 0, len(parts))
	for _, p := range parts {
		users = append(users, p.ID)
	}
	online := s.online(ctx, users)
	for _, p := range parts {
		i := index[p.ConversationID.Bytes]
		// Presence shows through conversations the participant took part in, and to itself.
		visible := p.TookPart || p.ID == me
		out[i].Participants = append(out[i].Participants, events.Participant{ID: p.ID, Name: p.Name, Online: visible && online[p.ID]})
	}
	return out, nil
}

// listConversations pages through the caller's conversations, most recently active first.
func (s *Server) listConversations(c *gin.Context) error {
	limit, err := queryInt(c, "limit", 20, 1, 100)
	if err != nil {
		return err
	}
	params := db.ListConversationsParams{UserID: user(c), RowLimit: int32(limit + 1)}
	if cur, ok := c.GetQuery("cursor"); ok {
		at, id, err := parseConversationCursor(cur)
		if err != nil {
			return err
		}
		params.BeforeActivity, params.BeforeID = &at, id
	}
	rows, err := s.q.ListConversations(c, params)
	if err != nil {
		return err
	}
	var next *string
	if len(rows) > int(limit) {
		rows = rows[:limit]
		last := rows[len(rows)-1]
		n := conversationCursor(last.ActivityAt, last.ID)
		next = &n
	}
	convs, err := s.withParticipants(c, user(c), rows)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, gin.H{"conversations": convs, "next_cursor": next})
	return nil
}

// conversationCursor is the keyset position after a listed conversation:
// "<activity in unix microseconds>_<id>".
func conversationCursor(at time.Time, id pgtype.UUID) string {
	return strconv.FormatInt(at.UnixMicro(), 10) + "_" + events.UUIDString(id)
}

func parseConversationCursor(s string) (time.Time, pgtype.UUID, error) {
	bad := errorf("invalid_cursor", "cursor is not one this service returned")
	micros, idText, ok := strings.Cut(s, "_")
	if !ok {
		return time.Time{}, pgtype.UUID{}, bad
	}
	us, err := strconv.ParseInt(micros, 10, 64)
	if err != nil || us < 0 || us > 1<<53 {
		return time.Time{}, pgtype.UUID{}, bad
	}
	id, ok := events.ParseUUID(idText)
	if !ok {
		return time.Time{}, pgtype.UUID{}, bad
	}
	return time.UnixMicro(us), id, nil
}

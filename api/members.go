package api

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/chatd/chatd/db"
)

// Membership that changes: the server API adds and removes members of groups, and a
// member may leave a group. Who receives which event across a change is decided in the
// log's order (schema.sql, member_history); here each change is one transaction that takes
// the conversation's send lock first, changes the members and logs the event.

var errNotAGroup = errorf("not_a_group", "members change only in group conversations; a direct conversation has its two for good")

type addMembersRequest struct {
	UserIDs []string `json:"user_ids"`
	History *string  `json:"history"`
}

// validHistory checks a history setting: nil (the default), "full" or "joined".
func validHistory(h *string) error {
	if h != nil && *h != "full" && *h != "joined" {
		return errorf("invalid_history", `history must be "full" (a new member sees every message) or "joined" (only those after it joined)`)
	}
	return nil
}

// changeMembers runs change in a transaction that holds the conversation's send lock (so
// that the change falls between two messages in both seq and log order); 404 for an
// unknown conversation, 422 for a direct one.
func (s *Server) changeMembers(ctx context.Context, conv pgtype.UUID, change func(q *db.Queries) error) error {
	return db.InTx(ctx, s.cfg.Pool, func(q *db.Queries) error {
		if err := q.LockConversations(ctx, []pgtype.UUID{conv}); err != nil {
			return err
		}
		kind, err := q.ConversationKind(ctx, conv)
		if errors.Is(err, pgx.ErrNoRows) {
			return errNotFound
		}
		if err != nil {
			return err
		}
		if kind != "group" {
			return errNotAGroup
		}
		return change(q)
	})
}

// addMembers is POST /v1/server/conversations/{id}/members: the users who are not members
// yet join (member_added each); the answer is the conversation.
func (s *Server) addMembers(c *gin.Context) error {
	conv, err := conversationID(c)
	if err != nil {
		return err
	}
	var req addMembersRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	if err := validHistory(req.History); err != nil {
		return err
	}
	users := slices.Clone(req.UserIDs)
	slices.Sort(users) // a fixed order keeps concurrent inserts of users deadlock-free
	users = slices.Compact(users)
	if len(users) == 0 || len(users) > maxGroupParticipants || slices.ContainsFunc(users, func(u string) bool { return !validUserID(u) }) {
		return errorf("invalid_participants", "user_ids must name 1 to %d valid user ids", maxGroupParticipants)
	}
	err = s.changeMembers(c, conv, func(q *db.Queries) error {
		if err := q.EnsureUsers(c, users); err != nil {
			return err
		}
		if _, err := q.AddConversationMembers(c, db.AddConversationMembersParams{ConversationID: conv, UserIds: users, History: req.History}); err != nil {
			return err
		}
		n, err := q.CountMembers(c, conv)
		if err == nil && n > maxGroupParticipants {
			err = errorf("too_many_participants", "a group has at most %d participants", maxGroupParticipants)
		}
		return err
	})
	if err != nil {
		return err
	}
	return s.answerServerConversation(c, http.StatusOK, conv)
}

// removeMember is DELETE /v1/server/conversations/{id}/members/{user_id}.
func (s *Server) removeMember(c *gin.Context) error {
	conv, err := conversationID(c)
	if err != nil {
		return err
	}
	member := c.Param("user_id")
	if !validUserID(member) {
		return errNotFound
	}
	err = s.changeMembers(c, conv, func(q *db.Queries) error {
		_, err := q.RemoveMember(c, db.RemoveMemberParams{ConversationID: conv, UserID: member})
		if errors.Is(err, pgx.ErrNoRows) {
			return errNotFound // not a member
		}
		return err
	})
	if err != nil {
		return err
	}
	c.Status(http.StatusNoContent)
	return nil
}

// leave is DELETE /v1/conversations/{id}/members/me: the caller leaves a group. 404 when
// it is no member (whatever the conversation), 422 for a direct conversation.
func (s *Server) leave(c *gin.Context) error {
	conv, err := conversationID(c)
	if err != nil {
		return err
	}
	me := user(c)
	if err := s.requireMember(c, conv); err != nil {
		return err
	}
	err = s.changeMembers(c, conv, func(q *db.Queries) error {
		_, err := q.RemoveMember(c, db.RemoveMemberParams{ConversationID: conv, UserID: me, Actor: &me})
		if errors.Is(err, pgx.ErrNoRows) {
			return errNotFound // left meanwhile, from another request
		}
		return err
	})
	if err != nil {
		return err
	}
	c.Status(http.StatusNoContent)
	return nil
}

package api

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"
)

// maxPresenceUsers bounds one presence query.
const maxPresenceUsers = 200

// presence reports, for each user_id asked about who shares a conversation with the caller
// (or is the caller), whether it has a stream open anywhere and when it was last seen.
func (s *Server) presence(c *gin.Context) error {
	ids := c.QueryArray("user_id")
	if len(ids) > maxPresenceUsers {
		return errorf("too_many_users", "ask about at most %d users at once", maxPresenceUsers)
	}
	for _, id := range ids {
		if !validUserID(id) {
			return errorf("invalid_user_id", "user_id is not a valid user id")
		}
	}
	users, err := s.cfg.Presence.Report(c, user(c), ids)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, gin.H{"users": users})
	return nil
}

// online answers the participants' online flags of conversation objects.
func (s *Server) online(ctx context.Context, users []string) map[string]bool {
	return s.cfg.Presence.Online(ctx, users)
}

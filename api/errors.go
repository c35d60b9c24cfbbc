package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/chatd/chatd/db"
)

// Error is an error a client is meant to see: an HTTP status, a stable snake_case code and
// a human-readable message. Every other error is logged and answered with a generic 500
// (a bug) or 503 (the database is unavailable).
type Error struct {
	Status     int
	Code       string
	Message    string
	RetryAfter int // seconds; sent as Retry-After when non-zero
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Errors used in more than one handler.
var (
	errNotFound        = errorf(http.StatusNotFound, "not_found", "not found")
	errUnauthenticated = errorf(http.StatusUnauthorized, "unauthenticated", "missing or invalid credentials")
)

// errorBody is the JSON body of every non-2xx response.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// handler is a gin handler that returns its error instead of rendering it.
type handler func(c *gin.Context) error

// handle adapts a handler: the one place where errors become responses.
func (s *Server) handle(h handler) gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := h(c); err != nil {
			s.renderError(c, err)
		}
	}
}

// renderError writes err as the JSON error body, unless the response has started (a
// stream), in which case the connection simply ends.
func (s *Server) renderError(c *gin.Context, err error) {
	var e *Error
	switch {
	case errors.As(err, &e):
	case c.Request.Context().Err() != nil && errors.Is(err, context.Canceled):
		c.Abort() // the client left; there is no one to answer and nothing went wrong here
		return
	case db.IsUnavailable(err):
		s.log.Warn("database unavailable", "request_id", requestID(c), "err", err)
		e = &Error{Status: http.StatusServiceUnavailable, Code: "unavailable",
			Message: "the database is unavailable; try again shortly", RetryAfter: int(db.RetryAfter.Seconds())}
	default:
		s.log.Error("internal error", "request_id", requestID(c), "method", c.Request.Method,
			"route", c.FullPath(), "err", err)
		e = &Error{Status: http.StatusInternalServerError, Code: "internal",
			Message: "internal error (request id " + requestID(c) + ")"}
	}
	if c.Writer.Written() {
		return
	}
	refuseUnreadBody(c)
	if e.RetryAfter > 0 {
		c.Header("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	var body errorBody
	body.Error.Code, body.Error.Message = e.Code, e.Message
	c.AbortWithStatusJSON(e.Status, body)
}

// logRequest writes the one log line of a request: never its query string (tickets) or headers (tokens).
func (s *Server) logRequest(c *gin.Context, start int64) {
	s.log.LogAttrs(c.Request.Context(), slog.LevelInfo, "request",
		slog.String("request_id", requestID(c)),
		slog.String("method", c.Request.Method),
		slog.String("route", c.FullPath()),
		slog.Int("status", c.Writer.Status()),
		slog.Int64("duration_us", (s.now().UnixNano()-start)/1000),
		slog.String("user", c.GetString(ctxUser)),
	)
}

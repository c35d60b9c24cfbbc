package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/chatd/chatd/db"
)

// Error is an error a client is meant to see: a stable snake_case code (its HTTP status
// comes from the codes table) and a human-readable message. Every other error is logged
// and answered with a generic 500 (a bug) or 503 (the database is unavailable).
type Error struct {
	Code       string
	Message    string
	RetryAfter int // seconds; sent as Retry-After when non-zero
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Status is the HTTP status of e's code.
func (e *Error) Status() int {
	if s, ok := codes[e.Code]; ok {
		return s
	}
	if strings.HasPrefix(e.Code, "invalid_") {
		return http.StatusBadRequest // a query parameter's own code (queryInt)
	}
	return http.StatusInternalServerError // a code missing from the table is a bug
}

// codes is the one table from error code to HTTP status. TestEveryErrorCodeHasAStatus
// finds codes used in the code but missing here.
var codes = map[string]int{
	"bad_request":            http.StatusBadRequest,
	"invalid_json":           http.StatusBadRequest,
	"invalid_utf8":           http.StatusBadRequest,
	"invalid_cursor":         http.StatusBadRequest,
	"invalid_user_id":        http.StatusBadRequest,
	"invalid_window":         http.StatusBadRequest,
	"invalid_query":          http.StatusBadRequest,
	"too_many_users":         http.StatusBadRequest,
	"unauthenticated":        http.StatusUnauthorized,
	"bearer_required":        http.StatusUnauthorized,
	"invalid_ticket":         http.StatusUnauthorized,
	"token_in_url":           http.StatusUnauthorized,
	"not_sender":             http.StatusForbidden,
	"not_found":              http.StatusNotFound,
	"method_not_allowed":     http.StatusMethodNotAllowed,
	"request_timeout":        http.StatusRequestTimeout,
	"message_deleted":        http.StatusConflict,
	"conversation_closed":    http.StatusConflict,
	"request_too_large":      http.StatusRequestEntityTooLarge,
	"unsupported_media_type": http.StatusUnsupportedMediaType,
	"body_too_long":          http.StatusUnprocessableEntity,
	"empty_body":             http.StatusUnprocessableEntity,
	"invalid_body":           http.StatusUnprocessableEntity,
	"invalid_attachment":     http.StatusUnprocessableEntity,
	"invalid_client_id":      http.StatusUnprocessableEntity,
	"invalid_participants":   http.StatusUnprocessableEntity,
	"invalid_kind":           http.StatusUnprocessableEntity,
	"invalid_external_id":    http.StatusUnprocessableEntity,
	"invalid_metadata":       http.StatusUnprocessableEntity,
	"invalid_notifications":  http.StatusUnprocessableEntity,
	"invalid_history":        http.StatusUnprocessableEntity,
	"not_a_group":            http.StatusUnprocessableEntity,
	"invalid_seq":            http.StatusUnprocessableEntity,
	"invalid_sub":            http.StatusUnprocessableEntity,
	"invalid_title":          http.StatusUnprocessableEntity,
	"invalid_typing":         http.StatusUnprocessableEntity,
	"too_many_participants":  http.StatusUnprocessableEntity,
	"rate_limited":           http.StatusTooManyRequests,
	"too_many_streams":       http.StatusTooManyRequests,
	"internal":               http.StatusInternalServerError,
	"unavailable":            http.StatusServiceUnavailable,
	"database_unavailable":   http.StatusServiceUnavailable,
	"listener_down":          http.StatusServiceUnavailable,
	"instance_full":          http.StatusServiceUnavailable,
}

// retryUnavailable is the Retry-After of a 503 for the database or the listener: a
// restarting PostgreSQL is back within seconds, and clients should not hammer it meanwhile.
const retryUnavailable = 2 // seconds

func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Errors used in more than one handler.
var (
	errNotFound        = errorf("not_found", "not found")
	errUnauthenticated = errorf("unauthenticated", "missing or invalid credentials")
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
		e = &Error{Code: "unavailable",
			Message: "the database is unavailable; try again shortly", RetryAfter: retryUnavailable}
	default:
		s.log.Error("internal error", "request_id", requestID(c), "method", c.Request.Method,
			"route", c.FullPath(), "err", err)
		e = &Error{Code: "internal",
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
	c.AbortWithStatusJSON(e.Status(), body)
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
		slog.String("service", service(c)), // the service key's name, never the key
	)
}

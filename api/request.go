package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgtype"
	"golang.org/x/time/rate"

	"github.com/chatd/chatd/events"
)

// decodeJSON reads a request body into v: 415 unless it is JSON, 413 over the request cap,
// 400 for invalid UTF-8, malformed JSON, a wrong type or trailing data.
func (s *Server) decodeJSON(c *gin.Context, v any) error {
	mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if err != nil || mt != "application/json" {
		return errorf("unsupported_media_type",
			"the request body must be JSON: add -H 'Content-Type: application/json'")
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxRequestBytes))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return errorf("request_too_large",
			"the request body is larger than %d bytes", s.cfg.MaxRequestBytes)
	}
	if err != nil {
		return bodyReadError(c)
	}
	return decodeBody(body, v)
}

// decodeBody is the parsing half of decodeJSON, kept apart so it can be fuzzed.
func decodeBody(body []byte, v any) error {
	if !utf8.Valid(body) {
		return errorf("invalid_utf8", "the request body is not valid UTF-8")
	}
	if hasLoneSurrogate(body) {
		// encoding/json would store it as U+FFFD: a silent change of what the client sent.
		return errorf("invalid_utf8", "the request body has an unpaired surrogate escape (\\uD800-\\uDFFF)")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return errorf("invalid_json", "field %q has the wrong type", typeErr.Field)
		}
		return errorf("invalid_json", "the request body is not a valid JSON object")
	}
	if dec.More() {
		return errorf("invalid_json", "unexpected data after the JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errorf("invalid_json", "unexpected data after the JSON object")
	}
	return nil
}

// hasLoneSurrogate reports whether a JSON text escapes half of a UTF-16 surrogate pair
// without the other half ("\ud800"). A backslash can only stand inside a string in valid
// JSON, so the text is scanned without tracking strings; invalid JSON fails later anyway.
func hasLoneSurrogate(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if i+1 < len(b) && b[i+1] != 'u' {
			i++ // a two-character escape, such as \\ or \"
			continue
		}
		r, ok := escapedRune(b[i:])
		switch {
		case !ok:
			return false // malformed: the decoder reports it
		case r >= 0xdc00 && r <= 0xdfff:
			return true // a low half with no high half before it
		case r >= 0xd800 && r <= 0xdbff:
			if low, ok := escapedRune(b[i+6:]); !ok || low < 0xdc00 || low > 0xdfff {
				return true
			}
			i += 11 // the pair
		default:
			i += 5
		}
	}
	return false
}

// escapedRune reads a \uXXXX escape at the start of b.
func escapedRune(b []byte) (rune, bool) {
	if len(b) < 6 || b[0] != '\\' || b[1] != 'u' {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[2:6]), 16, 16)
	return rune(n), err == nil
}

// validText rejects strings PostgreSQL cannot store (NUL) and that no client means to send.
func validText(s string) bool { return !strings.ContainsRune(s, 0) }

// validLine is validText for one-line labels (titles): no control characters at all, so a
// title cannot break a client's layout or a log line.
func validLine(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || (r >= 0x7f && r <= 0x9f) })
}

// validUserID is what a participant id may be: the same rules as a token's sub.
func validUserID(s string) bool {
	if s == "" || len(s) > 255 || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// conversationID is the :id path parameter; anything that is not a UUID is unknown: 404.
func conversationID(c *gin.Context) (pgtype.UUID, error) {
	id, ok := events.ParseUUID(c.Param("id"))
	if !ok {
		return id, errNotFound
	}
	return id, nil
}

// queryInt reads an optional integer query parameter within [lo, hi]; out of range or not
// a number is 400.
func queryInt(c *gin.Context, name string, def, lo, hi int64) (int64, error) {
	v, ok := c.GetQuery(name)
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, errorf("invalid_"+name, "%s must be an integer from %d to %d", name, lo, hi)
	}
	return n, nil
}

// rateLimiter is a token bucket per user.
type rateLimiter struct {
	mu    sync.Mutex
	rate  rate.Limit
	burst int
	users map[string]*rate.Limiter
}

func newRateLimiter(perSecond float64, burst int) *rateLimiter {
	return &rateLimiter{rate: rate.Limit(perSecond), burst: burst, users: make(map[string]*rate.Limiter)}
}

// allow reports whether user may write now, and if not, how long to wait.
func (l *rateLimiter) allow(user string, now time.Time) (bool, time.Duration) {
	if l.rate <= 0 {
		return true, 0
	}
	l.mu.Lock()
	lim := l.users[user]
	if lim == nil {
		if len(l.users) >= maxCachedUsers {
			l.users = make(map[string]*rate.Limiter) // forget idle users rather than grow
		}
		lim = rate.NewLimiter(l.rate, l.burst)
		l.users[user] = lim
	}
	l.mu.Unlock()
	r := lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// limit is the middleware that applies the write rate limit: 429 with Retry-After.
func (s *Server) limit(c *gin.Context) { s.rateLimit(c, s.limits) }

// limitReads applies the read rate limit, a separate and larger budget.
func (s *Server) limitReads(c *gin.Context) { s.rateLimit(c, s.reads) }

func (s *Server) rateLimit(c *gin.Context, l *rateLimiter) {
	ok, wait := l.allow(user(c), s.now())
	if !ok {
		secs := max(1, int(math.Ceil(wait.Seconds())))
		s.renderError(c, &Error{Code: "rate_limited",
			Message: "too many requests; slow down", RetryAfter: secs})
		c.Abort()
		return
	}
	c.Next()
}

// streamCounter caps the concurrent streams (and long polls) of one user and of the whole
// instance.
type streamCounter struct{ slots *slots }

func newStreamCounter(perUser, perInstance int) *streamCounter {
	return &streamCounter{slots: newSlots(perInstance, perUser)}
}

// acquire takes a stream slot for user, or says which cap refuses it.
func (s *streamCounter) acquire(user string, retry time.Duration) error {
	switch s.slots.take(user) {
	case totalFull:
		// 503, not 429: nothing is wrong with this client, and a load balancer retries a
		// 503 on another instance.
		return &Error{Code: "instance_full",
			Message:    "this instance holds as many streams as it may; try again (another instance may answer)",
			RetryAfter: max(1, int(retry.Seconds()))}
	case keyFull:
		return &Error{Code: "too_many_streams",
			Message: "too many open streams for this user", RetryAfter: max(1, int(retry.Seconds()))}
	}
	return nil
}

func (s *streamCounter) release(user string) { s.slots.give(user) }

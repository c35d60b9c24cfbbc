package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/singleflight"

	"github.com/chatd/chatd/db"
)

// Context keys of the authenticated identity.
const (
	ctxUser    = "chatd.user"
	ctxExpires = "chatd.expires"
	ctxToken   = "chatd.token" // the bearer token, for POST /v1/session
	// ctxTicket is the hash of the ticket that authenticated the stream, used up by the
	// stream once it is sure to open (see acceptTicket).
	ctxTicket = "chatd.ticket"
)

// sessionCookie carries the JWT itself, so it expires with the token.
const sessionCookie = "chat_session"

// authenticate accepts, in order: a Bearer token (a JWT or an Auth.js session token) on any
// request; a session cookie (chat_session, or Auth.js's) on safe methods, and on others only
// as cookieMayAuthenticate allows (so a cross-site form can never act with it); a
// single-use ticket on the event stream only. A token in the URL is never accepted.
func (s *Server) authenticate(c *gin.Context) {
	// What an authenticated request answers is one user's: no shared or browser cache
	// keeps it (streams set their own Cache-Control).
	c.Header("Cache-Control", "no-store")
	if err := s.identify(c); err != nil {
		s.renderError(c, err)
		c.Abort()
		return
	}
	c.Next()
}

func (s *Server) identify(c *gin.Context) error {
	q := c.Request.URL.Query()
	for _, k := range []string{"access_token", "token", "jwt", "authorization"} {
		if q.Has(k) {
			return errorf("token_in_url",
				"tokens are not accepted in URLs; send 'Authorization: Bearer <token>'")
		}
	}
	if h := c.GetHeader("Authorization"); h != "" {
		scheme, token, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
			return errorf("unauthenticated", "the Authorization header must be 'Bearer <token>'")
		}
		if err := s.acceptToken(c, strings.TrimSpace(token)); err != nil {
			return err
		}
		c.Set(ctxToken, strings.TrimSpace(token))
		return nil
	}
	if s.cookieMayAuthenticate(c) {
		if ok, err := s.acceptCookie(c); ok {
			return err
		}
	}
	if ticket := q.Get("ticket"); ticket != "" && c.FullPath() == "/v1/events" {
		return s.acceptTicket(c, ticket)
	}
	return errUnauthenticated
}

// acceptToken verifies a Bearer token and records its user.
func (s *Server) acceptToken(c *gin.Context, token string) error {
	id, err := s.cfg.Verifier.Verify(c, token)
	if err != nil {
		s.log.Debug("token rejected", "request_id", requestID(c), "err", err)
		return errUnauthenticated
	}
	return s.acceptIdentity(c, id)
}

// acceptCookie authenticates by the first session cookie that holds a valid token:
// chat_session, then Auth.js's secure cookie, then its plain one (an expired chat_session
// beside a live Auth.js session does not lock the user out). ok is false when none does.
func (s *Server) acceptCookie(c *gin.Context) (ok bool, err error) {
	cookies := c.Request.Cookies()
	for _, ck := range cookies {
		if ck.Name == sessionCookie && ck.Value != "" {
			id, err := s.cfg.Verifier.Verify(c, ck.Value)
			if err == nil {
				return true, s.acceptIdentity(c, id)
			}
			s.log.Debug("session cookie rejected", "request_id", requestID(c), "err", err)
			break // the first of its name counts, as a browser orders them
		}
	}
	for _, name := range []string{authjsSecureCookie, authjsCookie} {
		token, present, err := authjsCookieToken(cookies, name)
		if present && err == nil {
			var id Identity
			if id, err = s.cfg.Verifier.VerifyAuthJS(token, name); err == nil {
				return true, s.acceptIdentity(c, id)
			}
		}
		if present {
			s.log.Debug("Auth.js cookie rejected", "request_id", requestID(c), "cookie", name, "err", err)
		}
	}
	return false, nil
}

// acceptIdentity records the user a verified credential speaks for, creating or renaming
// the user row the first time this instance sees that identity.
func (s *Server) acceptIdentity(c *gin.Context, id Identity) error {
	if err := s.users.ensure(c, s.q, id.Sub, id.Name); err != nil {
		return err
	}
	c.Set(ctxUser, id.Sub)
	c.Set(ctxExpires, id.Expires)
	return nil
}

// acceptTicket authenticates a stream by a single-use ticket without using it up: the
// stream does that (useTicket) once it has passed its caps and rates, so a refused stream
// (429, 503) leaves the ticket for the retry. Using it up deletes the row, so a second use
// fails on every instance.
func (s *Server) acceptTicket(c *gin.Context, ticket string) error {
	sum := sha256.Sum256([]byte(ticket))
	row, err := s.q.PeekTicket(c, sum[:])
	if errors.Is(err, pgx.ErrNoRows) {
		return errInvalidTicket
	}
	if err != nil {
		return err
	}
	if !row.TokenExpires.After(s.now()) {
		return errUnauthenticated
	}
	c.Set(ctxUser, row.UserID)
	c.Set(ctxExpires, row.TokenExpires)
	c.Set(ctxTicket, sum[:])
	return nil
}

var errInvalidTicket = errorf("invalid_ticket", "the ticket is unknown, expired or already used")

// useTicket uses up the ticket that authenticated the request, if one did; a ticket used
// meanwhile (on this instance or another) is refused.
func (s *Server) useTicket(c *gin.Context) error {
	v, ok := c.Get(ctxTicket)
	if !ok {
		return nil
	}
	_, err := s.q.ConsumeTicket(c, v.([]byte))
	if errors.Is(err, pgx.ErrNoRows) {
		return errInvalidTicket
	}
	return err
}

func user(c *gin.Context) string { return c.GetString(ctxUser) }

func tokenExpiry(c *gin.Context) time.Time {
	t, _ := c.Get(ctxExpires)
	e, _ := t.(time.Time)
	return e
}

// createSession sets the session cookie from the Bearer token of the request.
func (s *Server) createSession(c *gin.Context) error {
	token := c.GetString(ctxToken)
	if token == "" {
		return errorf("bearer_required", "POST /v1/session needs 'Authorization: Bearer <token>'")
	}
	maxAge := int(time.Until(tokenExpiry(c)).Seconds())
	http.SetCookie(c.Writer, &http.Cookie{Name: sessionCookie, Value: token, Path: "/", MaxAge: max(maxAge, 1),
		HttpOnly: true, Secure: s.cfg.CookieSecure, SameSite: http.SameSiteLaxMode})
	c.Status(http.StatusNoContent)
	return nil
}

// deleteSession clears the cookie; it needs no authentication, like any sign-out.
func (s *Server) deleteSession(c *gin.Context) error {
	http.SetCookie(c.Writer, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.cfg.CookieSecure, SameSite: http.SameSiteLaxMode})
	c.Status(http.StatusNoContent)
	return nil
}

// createTicket mints a single-use stream ticket for browsers that cannot send the
// cookie. Only its hash is stored; it lives TicketTTL and never outlives the token.
func (s *Server) createTicket(c *gin.Context) error {
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	ticket := base64.RawURLEncoding.EncodeToString(raw)
	sum := sha256.Sum256([]byte(ticket))
	now := s.now() // once: a second reading would make expires_in a second short
	expires := now.Add(s.cfg.TicketTTL)
	if te := tokenExpiry(c); te.Before(expires) {
		expires = te
	}
	err := s.q.CreateTicket(c, db.CreateTicketParams{Hash: sum[:], UserID: user(c), TokenExpires: tokenExpiry(c), ExpiresAt: expires})
	if err != nil {
		return err
	}
	c.JSON(http.StatusCreated, gin.H{"ticket": ticket, "expires_in": int(expires.Sub(now).Seconds())})
	return nil
}

// userCache remembers which (user, name) pairs this instance has already stored, so a
// request costs a database write only the first time an identity is seen. The first
// requests of one identity arriving together (a client opening its streams, or many
// connections of one account) share one upsert, and at most a quarter of the pool's
// connections upsert at once: a burst of new identities (thousands of connections opened
// together) waits for its own turns instead of taking every connection from the sends.
type userCache struct {
	mu      sync.Mutex
	seen    map[string]string
	upsert  singleflight.Group
	writers chan struct{} // a token per upsert that may run at once
}

// upsertTimeout bounds one upsert, which runs on for every request waiting on it even
// when the one that started it goes away.
const upsertTimeout = 10 * time.Second

func newUserCache(poolSize int) *userCache {
	return &userCache{seen: make(map[string]string), writers: make(chan struct{}, max(1, poolSize/4))}
}

// maxCachedUsers bounds the cache; past it the cache starts over (a few extra upserts).
const maxCachedUsers = 100_000

func (u *userCache) ensure(c *gin.Context, q *db.Queries, sub, name string) error {
	u.mu.Lock()
	known, ok := u.seen[sub]
	u.mu.Unlock()
	if ok && known == name {
		return nil
	}
	var n *string
	if name != "" {
		n = &name
	}
	// The key cannot be forged into another's: a user id holds no NUL (claims are checked).
	_, err, _ := u.upsert.Do(sub+"\x00"+name, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(c), upsertTimeout)
		defer cancel()
		select {
		case u.writers <- struct{}{}:
			defer func() { <-u.writers }()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return nil, q.UpsertUser(ctx, db.UpsertUserParams{ID: sub, Name: n})
	})
	if err != nil {
		return err
	}
	u.mu.Lock()
	if len(u.seen) >= maxCachedUsers {
		u.seen = make(map[string]string)
	}
	u.seen[sub] = name
	u.mu.Unlock()
	return nil
}

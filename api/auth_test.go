package api

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

// authCookieCall makes a request authenticated by the session cookie only (none when
// cookie is ""), with a JSON body unless body is nil.
func authCookieCall(t testing.TB, method, url, cookie string, body any) response {
	t.Helper()
	var cookies []*http.Cookie
	if cookie != "" {
		cookies = []*http.Cookie{{Name: sessionCookie, Value: cookie}}
	}
	return cookieRequest(t, method, url, body, cookies, nil)
}

// authSetCookie returns the chat_session cookie a response sets (failing when there is none).
func authSetCookie(t testing.TB, r response) *http.Cookie {
	t.Helper()
	for _, c := range (&http.Response{Header: r.Header}).Cookies() {
		if c.Name == sessionCookie {
			return c
		}
	}
	require.FailNow(t, "no chat_session cookie set", "Set-Cookie: %q", r.Header.Values("Set-Cookie"))
	return nil
}

// authOpenStream opens GET url as EventSource would (with the cookie when not ""), reads the
// status and headers, and disconnects at once.
func authOpenStream(t testing.TB, url, cookie string) response {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "text/event-stream")
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
	}
	res, err := restNoRedirect.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	r := response{Status: res.StatusCode, Header: res.Header}
	if res.StatusCode != http.StatusOK {
		r.Body, err = io.ReadAll(res.Body)
		require.NoError(t, err)
	}
	cancel() // a stream never ends by itself: hang up as soon as the status is known
	return r
}

func TestSessionCookieAuthenticatesSafeMethodsOnly(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)
	m := alice.send(conv.ID, "hello")
	bob.send(conv.ID, "unread for alice")

	r := alice.do("POST", "/v1/session", nil)
	require.Equal(t, http.StatusNoContent, r.Status, "%s", r.Body)
	c := authSetCookie(t, r)
	require.NotEmpty(t, c.Value)
	require.True(t, c.HttpOnly, "HttpOnly")
	require.True(t, c.Secure, "Secure")
	require.Equal(t, http.SameSiteLaxMode, c.SameSite, "SameSite=Lax")
	require.Equal(t, "/", c.Path)
	require.Positive(t, c.MaxAge)
	require.LessOrEqual(t, c.MaxAge, 3600, "the cookie does not outlive the token")

	// The cookie authenticates safe methods as alice.
	r = authCookieCall(t, "GET", in.URL+"/v1/unread", c.Value, nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	var u restUnread
	r.JSON(t, &u)
	require.EqualValues(t, 1, u.Total)
	r = authCookieCall(t, "GET", in.URL+"/v1/conversations/"+conv.ID, c.Value, nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	require.Equal(t, 200, authOpenStream(t, in.URL+"/v1/events", c.Value).Status)

	t.Run("HEAD is a safe method too", func(t *testing.T) {
		// API.md: the cookie authenticates GET/HEAD; RFC 9110 §9.1: servers support HEAD.
		r := authCookieCall(t, "HEAD", in.URL+"/v1/unread", c.Value, nil)
		require.Equal(t, 200, r.Status, "HEAD /v1/unread with the cookie")
	})

	// ... and nothing else: a cross-site form could send it (TestCookieWritesNeedHeaderAndOrigin
	// has the X-Chat-Request header and Origin that let a page of the service write).
	before := restSnapshot(t, in.Pool, conv.ID)
	msg := "/v1/conversations/" + conv.ID + "/messages/" + m.ID
	unsafe := []struct {
		method, path string
		body         any
	}{
		{"POST", "/v1/conversations/" + conv.ID + "/messages", map[string]any{"body": "csrf"}},
		{"PATCH", msg, map[string]any{"body": "csrf"}},
		{"DELETE", msg, nil},
		{"POST", "/v1/conversations/" + conv.ID + "/read", map[string]any{"seq": 2}},
		{"POST", "/v1/conversations/" + conv.ID + "/typing", map[string]any{"typing": true}},
		{"POST", "/v1/conversations", map[string]any{"participant_id": uniq("carol")}},
		{"POST", "/v1/tickets", nil},
		{"POST", "/v1/session", nil},
	}
	for _, tt := range unsafe {
		t.Run("cookie on "+tt.method+" "+tt.path, func(t *testing.T) {
			r := authCookieCall(t, tt.method, in.URL+tt.path, c.Value, tt.body)
			restRequireError(t, r, http.StatusUnauthorized, "")
		})
	}
	require.Equal(t, before, restSnapshot(t, in.Pool, conv.ID))

	// A cookie that is not a valid token is no credential.
	restRequireError(t, authCookieCall(t, "GET", in.URL+"/v1/unread", "not-a-jwt", nil), http.StatusUnauthorized, "")
	restRequireError(t, authCookieCall(t, "GET", in.URL+"/v1/unread", bob.Token+"x", nil), http.StatusUnauthorized, "")

	// Sign-out needs no authentication and clears the cookie.
	r = authCookieCall(t, "DELETE", in.URL+"/v1/session", "", nil)
	require.Equal(t, http.StatusNoContent, r.Status, "%s", r.Body)
	cleared := authSetCookie(t, r)
	require.Empty(t, cleared.Value)
	require.Negative(t, cleared.MaxAge, "Max-Age<=0 removes the cookie")
	require.Equal(t, "/", cleared.Path)
}

// TestSessionCookieSecureIsOffOnlyWhenDisabled: CookieSecure=false (plain-http development)
// drops Secure and nothing else.
func TestSessionCookieSecureIsOffOnlyWhenDisabled(t *testing.T) {
	t.Parallel()
	dev := newInstance(t, func(c *Config, _ *events.Config) { c.CookieSecure = false })
	r := newUser(t, dev, "dev").do("POST", "/v1/session", nil)
	require.Equal(t, http.StatusNoContent, r.Status, "%s", r.Body)
	c := authSetCookie(t, r)
	require.False(t, c.Secure)
	require.True(t, c.HttpOnly)
	require.Equal(t, http.SameSiteLaxMode, c.SameSite)
}

func TestTicketsAreSingleUseAndOnlyForTheStream(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	alice := newUser(t, in, "alice")
	mint := func(u *testUser) string {
		t.Helper()
		r := u.do("POST", "/v1/tickets", nil)
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
		restRequireKeys(t, r.Body, "ticket", "expires_in")
		var tk struct {
			Ticket    string  `json:"ticket"`
			ExpiresIn float64 `json:"expires_in"`
		}
		r.JSON(t, &tk)
		require.NotEmpty(t, tk.Ticket)
		require.Positive(t, tk.ExpiresIn)
		require.LessOrEqual(t, tk.ExpiresIn, 60.0)
		require.Equal(t, float64(int64(tk.ExpiresIn)), tk.ExpiresIn, "expires_in is whole seconds")
		return tk.Ticket
	}

	restRequireError(t, call(t, "POST", in.URL+"/v1/tickets", "", nil), http.StatusUnauthorized, "")

	tk := mint(alice)
	q := "?ticket=" + url.QueryEscape(tk)
	// A ticket is no credential anywhere but the stream (and trying does not use it up).
	for _, p := range []string{"/v1/unread", "/v1/conversations", "/v1/presence?user_id=x&ticket=" + url.QueryEscape(tk)} {
		path := p
		if !strings.Contains(p, "ticket=") {
			path += q
		}
		restRequireError(t, restCall(t, "GET", in.URL+path, "", "", nil), http.StatusUnauthorized, "")
	}
	restRequireError(t, restCall(t, "POST", in.URL+"/v1/conversations"+q, "", "application/json",
		restMarshal(t, map[string]any{"participant_id": uniq("bob")})), http.StatusUnauthorized, "")

	// The stream accepts it once.
	r := authOpenStream(t, in.URL+"/v1/events"+q, "")
	require.Equal(t, 200, r.Status, "%s", r.Body)
	require.True(t, strings.HasPrefix(r.Header.Get("Content-Type"), "text/event-stream"), r.Header.Get("Content-Type"))
	r = authOpenStream(t, in.URL+"/v1/events"+q, "")
	restRequireError(t, r, http.StatusUnauthorized, "")

	restRequireError(t, authOpenStream(t, in.URL+"/v1/events?ticket=made-up", ""), http.StatusUnauthorized, "")

	// Valid on any instance, and still once only.
	other := newInstance(t)
	tk = mint(alice)
	q = "?ticket=" + url.QueryEscape(tk)
	require.Equal(t, 200, authOpenStream(t, other.URL+"/v1/events"+q, "").Status)
	restRequireError(t, authOpenStream(t, in.URL+"/v1/events"+q, ""), http.StatusUnauthorized, "")
	restRequireError(t, authOpenStream(t, other.URL+"/v1/events"+q, ""), http.StatusUnauthorized, "")
}

func TestCORS(t *testing.T) {
	in := newInstance(t, func(c *Config, _ *events.Config) { c.AllowedOrigins = []string{"https://app.example"} })
	wild := newInstance(t, func(c *Config, _ *events.Config) { c.AllowedOrigins = []string{"*"} })
	preflight := func(url, origin string) http.Header {
		req, err := http.NewRequest("OPTIONS", url+"/v1/conversations", nil)
		require.NoError(t, err)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		return res.Header
	}
	h := preflight(in.URL, "https://app.example")
	require.Equal(t, "https://app.example", h.Get("Access-Control-Allow-Origin"))
	require.Equal(t, "true", h.Get("Access-Control-Allow-Credentials"))
	require.Contains(t, h.Get("Access-Control-Allow-Headers"), "Authorization")
	require.Contains(t, h.Get("Access-Control-Allow-Headers"), chatRequestHeader, "a listed origin may write with its cookie")
	require.Empty(t, preflight(in.URL, "https://evil.example").Get("Access-Control-Allow-Origin"))
	h = preflight(wild.URL, "https://evil.example")
	require.Equal(t, "*", h.Get("Access-Control-Allow-Origin"))
	require.Empty(t, h.Get("Access-Control-Allow-Credentials"), "any origin, but never with the cookie")
}

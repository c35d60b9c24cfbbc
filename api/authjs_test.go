package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

// authjsSecret is the test application's AUTH_SECRET.
const authjsSecret = "test-auth-secret-of-the-nextjs-app"

// withAuthJS gives an instance a verifier that also accepts Auth.js session tokens made with
// any of secrets (the first is the current one), besides the test JWTs.
func withAuthJS(secrets ...string) func(*Config, *events.Config) {
	return func(c *Config, _ *events.Config) {
		var s [][]byte
		for _, v := range secrets {
			s = append(s, []byte(v))
		}
		v, err := NewVerifier(context.Background(), KeyConfig{Secret: testSecret, AuthJSSecrets: s})
		if err != nil {
			panic(err) // a test's own configuration
		}
		c.Verifier = v
	}
}

// authjsMint asks web/e2e/authjs-token.mjs for one token: @auth/core's encode with these
// parameters (a negative MaxAge makes an expired token).
type authjsMint struct {
	Secret string         `json:"secret"`
	Salt   string         `json:"salt"`
	MaxAge int            `json:"maxAge"`
	Token  map[string]any `json:"token"`
}

// authjsMinted is a token from @auth/core and the cookies Auth.js's SessionStore would set
// for it (chunks when it is large).
type authjsMinted struct {
	Token   string         `json:"token"`
	Cookies []*http.Cookie `json:"cookies"`
}

// mintAuthJS runs the real @auth/core (pinned in web/e2e/package-lock.json) once for all
// mints. Without node or web/e2e's packages the test is skipped, unless
// CHAT_TEST_REQUIRE_ALL is set (CI).
func mintAuthJS(t *testing.T, mints ...authjsMint) []authjsMinted {
	t.Helper()
	node := requireTool(t, "node")
	script, err := filepath.Abs(filepath.Join("..", "web", "e2e", "authjs-token.mjs"))
	require.NoError(t, err)
	if !fileExists(filepath.Join(filepath.Dir(script), "node_modules", "@auth", "core", "jwt.js")) {
		if os.Getenv("CHAT_TEST_REQUIRE_ALL") != "" {
			t.Fatal("web/e2e needs `npm ci` for @auth/core (CHAT_TEST_REQUIRE_ALL is set)")
		}
		t.Skip("web/e2e: run `npm ci` there first")
	}
	arg, err := json.Marshal(mints)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script, string(arg))
	cmd.Dir = filepath.Dir(script)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "%s", stderr.String())
	var minted []authjsMinted
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var m authjsMinted
		require.NoError(t, dec.Decode(&m))
		minted = append(minted, m)
	}
	require.Len(t, minted, len(mints))
	return minted
}

// cookieRequest makes a request with cookies and extra headers (Host sets the request's
// Host), and a JSON body unless body is nil.
func cookieRequest(t testing.TB, method, url string, body any, cookies []*http.Cookie, header map[string]string) response {
	t.Helper()
	req, err := newRequest(method, url, body)
	require.NoError(t, err)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	res, err := restNoRedirect.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return response{Status: res.StatusCode, Header: res.Header, Body: b}
}

// renamed returns one cookie named name holding value.
func renamed(name, value string) []*http.Cookie {
	return []*http.Cookie{{Name: name, Value: value}}
}

// tamper changes one character of a JWE's ciphertext (its fourth part).
func tamper(t testing.TB, token string) string {
	parts := strings.Split(token, ".")
	require.Len(t, parts, 5)
	c := []byte(parts[3])
	if i := len(c) / 2; c[i] == 'A' {
		c[i] = 'B'
	} else {
		c[i] = 'A'
	}
	parts[3] = string(c)
	return strings.Join(parts, ".")
}

// withLogs sends an instance's logs, debug level included, to w.
func withLogs(w io.Writer) func(*Config, *events.Config) {
	return func(c *Config, _ *events.Config) {
		c.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
}

func TestAuthJSSessionTokensFromAuthCore(t *testing.T) {
	in := newInstance(t, withAuthJS(authjsSecret))
	sub := uniq("alice")
	claims := map[string]any{"sub": sub, "name": "Alice Buyer", "email": "alice@example.com"}
	large := map[string]any{"sub": sub, "name": "Alice Buyer", "picture": strings.Repeat("p", 9000)}
	m := mintAuthJS(t,
		authjsMint{authjsSecret, authjsCookie, 3600, claims},
		authjsMint{authjsSecret, authjsSecureCookie, 3600, claims},
		authjsMint{authjsSecret, authjsCookie, 3600, large},
		authjsMint{authjsSecret, authjsSecureCookie, 3600, large},
	)
	plain, secure, chunked, secureChunked := m[0], m[1], m[2], m[3]
	bob := newUser(t, in, "bob")
	conv := bob.direct(&testUser{ID: sub})
	seesConv := func(t *testing.T, r response) {
		t.Helper()
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
		require.Contains(t, string(r.Body), conv.ID, "the token speaks for alice")
	}
	list := in.URL + "/v1/conversations"

	t.Run("cookie", func(t *testing.T) {
		require.Len(t, plain.Cookies, 1)
		require.Equal(t, authjsCookie, plain.Cookies[0].Name)
		seesConv(t, cookieRequest(t, "GET", list, nil, plain.Cookies, nil))
		var name string
		require.NoError(t, in.Pool.QueryRow(context.Background(), "SELECT name FROM users WHERE id = $1", sub).Scan(&name))
		require.Equal(t, "Alice Buyer", name, "the name claim is the display name")
	})
	t.Run("__Secure- prefix", func(t *testing.T) {
		require.Equal(t, authjsSecureCookie, secure.Cookies[0].Name)
		seesConv(t, cookieRequest(t, "GET", list, nil, secure.Cookies, nil))
		// The salt is the cookie name: a token is good only in the cookie it was made for.
		restRequireError(t, cookieRequest(t, "GET", list, nil, renamed(authjsCookie, secure.Token), nil), 401, "unauthenticated")
		restRequireError(t, cookieRequest(t, "GET", list, nil, renamed(authjsSecureCookie, plain.Token), nil), 401, "unauthenticated")
	})
	t.Run("chunked as Auth.js's SessionStore writes it", func(t *testing.T) {
		for _, tok := range []authjsMinted{chunked, secureChunked} {
			require.GreaterOrEqual(t, len(tok.Cookies), 3, "a 9 KB session takes three chunks")
			require.True(t, strings.HasSuffix(tok.Cookies[0].Name, ".0"), tok.Cookies[0].Name)
			seesConv(t, cookieRequest(t, "GET", list, nil, tok.Cookies, nil))
			reversed := slices.Clone(tok.Cookies)
			slices.Reverse(reversed)
			seesConv(t, cookieRequest(t, "GET", list, nil, reversed, nil)) // joined in index order
			gap := slices.Delete(slices.Clone(tok.Cookies), 1, 2)
			restRequireError(t, cookieRequest(t, "GET", list, nil, gap, nil), 401, "unauthenticated")
		}
	})
	t.Run("Bearer, made with either cookie name", func(t *testing.T) {
		for _, tok := range []authjsMinted{plain, secure, chunked} {
			u := &testUser{t: t, ID: sub, Token: tok.Token, URL: in.URL}
			seesConv(t, u.do("GET", "/v1/conversations", nil))
			require.Equal(t, http.StatusCreated, u.do("POST", "/v1/conversations/"+conv.ID+"/messages",
				map[string]any{"body": "sent with the Auth.js session"}).Status, "a Bearer token writes without X-Chat-Request")
		}
	})
	t.Run("not accepted without CHAT_AUTHJS_SECRET", func(t *testing.T) {
		other := newInstance(t)
		restRequireError(t, call(t, "GET", other.URL+"/v1/conversations", plain.Token, nil), 401, "unauthenticated")
		restRequireError(t, cookieRequest(t, "GET", other.URL+"/v1/conversations", nil, plain.Cookies, nil), 401, "unauthenticated")
	})
}

// Wrong secret, tampered, expired, another salt, no sub: 401 as a cookie and as a Bearer
// token, and the refused token is nowhere in the logs, even at debug level.
func TestAuthJSRefusedTokens(t *testing.T) {
	// A file, not a buffer: the handler serialises its writes, and the test reads it after.
	logs, err := os.Create(filepath.Join(t.TempDir(), "chatd.log"))
	require.NoError(t, err)
	defer logs.Close()
	in := newInstance(t, withAuthJS(authjsSecret), withLogs(logs))
	sub := uniq("alice")
	claims := map[string]any{"sub": sub}
	m := mintAuthJS(t,
		authjsMint{"another-apps-secret-entirely!!", authjsCookie, 3600, claims},
		authjsMint{authjsSecret, authjsCookie, -60, claims},
		// Auth.js encrypts its PKCE, state and nonce cookies the same way, salted with
		// their own names: none of them is a session.
		authjsMint{authjsSecret, "authjs.pkce.code_verifier", 3600, claims},
		authjsMint{authjsSecret, authjsCookie, 3600, map[string]any{"name": "no sub"}},
		authjsMint{authjsSecret, authjsCookie, 3600, claims},
	)
	refused := map[string]string{"wrong secret": m[0].Token, "expired": m[1].Token, "PKCE cookie": m[2].Token,
		"no sub": m[3].Token, "tampered": tamper(t, m[4].Token)}
	list := in.URL + "/v1/conversations"
	for name, tok := range refused {
		t.Run(name, func(t *testing.T) {
			restRequireError(t, call(t, "GET", list, tok, nil), 401, "unauthenticated")
			restRequireError(t, cookieRequest(t, "GET", list, nil, renamed(authjsCookie, tok), nil), 401, "unauthenticated")
		})
	}
	require.Equal(t, http.StatusOK, call(t, "GET", list, m[4].Token, nil).Status, "the untampered token is good")

	t.Run("not a ticket, not in a URL", func(t *testing.T) {
		good := m[4].Token
		restRequireError(t, authOpenStream(t, in.URL+"/v1/events?ticket="+good, ""), 401, "invalid_ticket")
		restRequireError(t, authOpenStream(t, in.URL+"/v1/events?token="+good, ""), 401, "token_in_url")
		restRequireError(t, call(t, "GET", in.URL+"/v1/conversations?access_token="+good, "", nil), 401, "token_in_url")
	})

	b, err := os.ReadFile(logs.Name())
	require.NoError(t, err)
	out := string(b)
	require.Contains(t, out, "token rejected", "the refusals were logged (at debug level)")
	for _, tok := range append([]string{m[4].Token}, refused["tampered"]) {
		for _, part := range strings.Split(tok, ".") {
			if len(part) > 16 {
				require.NotContains(t, out, part, "no part of a token reaches the logs")
			}
		}
	}
}

// A comma-separated CHAT_AUTHJS_SECRET rotates: tokens of every listed secret are good,
// each found by its kid; a secret taken off the list stops its tokens.
func TestAuthJSRotatedSecrets(t *testing.T) {
	const old, current = "the-secret-being-retired-0123456", "the-secret-taking-over-abcdefgh"
	rotating := newInstance(t, withAuthJS(current, old))
	retired := newInstance(t, withAuthJS(current))
	m := mintAuthJS(t,
		authjsMint{old, authjsCookie, 3600, map[string]any{"sub": uniq("old")}},
		authjsMint{current, authjsSecureCookie, 3600, map[string]any{"sub": uniq("new")}},
	)
	for _, tok := range m {
		require.Equal(t, 200, call(t, "GET", rotating.URL+"/v1/unread", tok.Token, nil).Status)
		require.Equal(t, 200, cookieRequest(t, "GET", rotating.URL+"/v1/unread", nil, tok.Cookies, nil).Status)
	}
	restRequireError(t, call(t, "GET", retired.URL+"/v1/unread", m[0].Token, nil), 401, "unauthenticated")
	require.Equal(t, 200, call(t, "GET", retired.URL+"/v1/unread", m[1].Token, nil).Status)
}

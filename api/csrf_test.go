package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

// A cookie writes only with X-Chat-Request: 1 from the service's own origin or a listed one,
// for chat_session and Auth.js's cookie alike; everything else is 401 and changes nothing.
func TestCookieWritesNeedHeaderAndOrigin(t *testing.T) {
	in := newInstance(t, withAuthJS(authjsSecret), func(c *Config, _ *events.Config) {
		c.AllowedOrigins = []string{"https://app.example", "*"}
	})
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)
	authjs := mintAuthJS(t, authjsMint{authjsSecret, authjsCookie, 3600, map[string]any{"sub": bob.ID}})[0]
	r := alice.do("POST", "/v1/session", nil)
	require.Equal(t, http.StatusNoContent, r.Status, "%s", r.Body)
	kinds := map[string][]*http.Cookie{"chat_session": {authSetCookie(t, r)}, "Auth.js": authjs.Cookies}
	own := in.URL // http://127.0.0.1:port: what a browser on chatd's own page sends as Origin
	post := in.URL + "/v1/conversations/" + conv.ID + "/messages"
	msg := map[string]any{"body": "written with a cookie"}

	for kind, cookies := range kinds {
		t.Run(kind, func(t *testing.T) {
			before := restSnapshot(t, in.Pool, conv.ID)
			refused := map[string]map[string]string{
				"no header":               {"Origin": own},
				"header not 1":            {"Origin": own, chatRequestHeader: "true"},
				"no Origin":               {chatRequestHeader: "1"},
				"Origin null":             {chatRequestHeader: "1", "Origin": "null"},
				"foreign Origin":          {chatRequestHeader: "1", "Origin": "https://evil.example"},
				"only * lists it":         {chatRequestHeader: "1", "Origin": "https://other.example"},
				"other scheme, same host": {chatRequestHeader: "1", "Origin": strings.Replace(own, "http:", "https:", 1)},
				"other port, same host":   {chatRequestHeader: "1", "Origin": own + "1"},
				"own host, forwarded https but Origin http": {chatRequestHeader: "1", "Origin": "http://chat.example",
					"Host": "chat.example", "X-Forwarded-Proto": "https"},
			}
			for name, h := range refused {
				restRequireError(t, cookieRequest(t, "POST", post, msg, cookies, h), 401, "unauthenticated")
				require.Equal(t, before, restSnapshot(t, in.Pool, conv.ID), name)
			}

			accepted := map[string]map[string]string{
				"own origin":    {chatRequestHeader: "1", "Origin": own},
				"listed origin": {chatRequestHeader: "1", "Origin": "https://app.example"},
				// Behind a proxy that passes Host on and ends TLS, saying so.
				"own origin behind a proxy": {chatRequestHeader: "1", "Origin": "https://chat.example",
					"Host": "chat.example", "X-Forwarded-Proto": "https"},
				"default port in Host": {chatRequestHeader: "1", "Origin": "https://chat.example",
					"Host": "chat.example:443", "X-Forwarded-Proto": "https"},
			}
			for name, h := range accepted {
				r := cookieRequest(t, "POST", post, msg, cookies, h)
				require.Equal(t, http.StatusCreated, r.Status, "%s: %s", name, r.Body)
				checkContract(t, "POST", post, r)
			}

			// PATCH and DELETE follow the same rule.
			var m events.Message
			cookieRequest(t, "POST", post, msg, cookies, accepted["own origin"]).JSON(t, &m)
			path := post + "/" + m.ID
			restRequireError(t, cookieRequest(t, "PATCH", path, msg, cookies, refused["foreign Origin"]), 401, "unauthenticated")
			restRequireError(t, cookieRequest(t, "DELETE", path, nil, cookies, refused["no header"]), 401, "unauthenticated")
			require.Equal(t, http.StatusOK, cookieRequest(t, "PATCH", path, msg, cookies, accepted["listed origin"]).Status)
			require.Equal(t, http.StatusOK, cookieRequest(t, "DELETE", path, nil, cookies, accepted["own origin"]).Status)
		})
	}

	t.Run("a Bearer token needs neither", func(t *testing.T) {
		r := call(t, "POST", post, alice.Token, msg)
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	})
}

package api

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
	"github.com/chatd/chatd/web"
)

// Tests of the defences every client meets, hostile or not: hardening headers, the read
// rate limit, typing fan-out in large groups and the private metrics endpoint.

func TestHardeningHeaders(t *testing.T) {
	in := newInstance(t, func(c *Config, _ *events.Config) {
		c.Web, c.AllowedOrigins = web.FS(), []string{"https://app.example"}
	})
	alice := newUser(t, in, "alice")

	t.Run("authenticated JSON is never cached", func(t *testing.T) {
		for _, path := range []string{"/v1/conversations", "/v1/unread", "/v1/presence?user_id=x"} {
			r := alice.do("GET", path, nil)
			require.Equal(t, 200, r.Status, path)
			require.Equal(t, "no-store", r.Header.Get("Cache-Control"), path)
		}
		require.Equal(t, "no-store", call(t, "GET", in.URL+"/v1/conversations", "", nil).Header.Get("Cache-Control"),
			"nor is the refusal")
	})
	t.Run("the page cannot be framed and runs only its own scripts", func(t *testing.T) {
		// chatd.js's own modules (web/static/chatd/) are loaded by import, under the same CSP.
		for _, path := range []string{"/", "/web/app.js", "/web/chatd.js", "/web/chatd/client.js"} {
			r := call(t, "GET", in.URL+path, "", nil)
			require.Equal(t, 200, r.Status, path)
			if strings.HasSuffix(path, ".js") {
				// A module script with another MIME type is refused (nosniff is set).
				require.Contains(t, r.Header.Get("Content-Type"), "javascript", path)
			}
			require.Equal(t, "DENY", r.Header.Get("X-Frame-Options"), path)
			csp := r.Header.Get("Content-Security-Policy")
			require.Contains(t, csp, "frame-ancestors 'none'", path)
			require.Contains(t, csp, "script-src 'self'", path)
			require.NotContains(t, csp, "unsafe-inline", path)
		}
	})
	t.Run("CORS answers vary by origin", func(t *testing.T) {
		for _, origin := range []string{"https://app.example", "https://other.example", ""} {
			req, err := http.NewRequest("GET", in.URL+"/healthz", nil)
			require.NoError(t, err)
			if origin != "" {
				req.Header.Set("Origin", origin)
			}
			res, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			res.Body.Close()
			require.Equal(t, []string{"Origin"}, res.Header.Values("Vary"), "origin %q", origin)
		}
	})
}

// Reads have a budget of their own: one account cannot make the database count unread
// messages without limit, and running out of reads does not stop its writes.
func TestReadsAreRateLimitedApartFromWrites(t *testing.T) {
	in := newInstance(t, func(c *Config, _ *events.Config) { c.ReadRate, c.ReadBurst = 0.1, 3 })
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)
	for _, path := range []string{"/v1/unread", "/v1/conversations", "/v1/conversations/" + conv.ID} {
		require.Equal(t, 200, alice.do("GET", path, nil).Status, path)
	}
	for _, path := range []string{"/v1/conversations/" + conv.ID + "/messages", "/v1/events/poll?timeout=0", "/v1/presence"} {
		r := alice.do("GET", path, nil)
		require.Equal(t, 429, r.Status, path)
		require.Equal(t, "rate_limited", r.ErrorCode())
		require.NotEmpty(t, r.Header.Get("Retry-After"))
	}
	require.Equal(t, 429, openStream(t, in.URL+"/v1/events", alice.Token, nil).Status, "opening a stream is a read")
	alice.send(conv.ID, "writes have their own budget")
	require.Equal(t, 200, bob.do("GET", "/v1/unread", nil).Status, "and so does every other user")
}

// Typing in a large group is one small notification, not one per 8 KB of recipients: each
// NOTIFY takes the cluster-wide notify lock. The other instance still delivers it to the
// members with streams there, and not to the typist.
func TestTypingInALargeGroupIsOneNotification(t *testing.T) {
	a, b := newInstance(t), newInstance(t)
	alice := newUser(t, a, "alice")
	bob := newUser(t, b, "bob")
	ids := []string{bob.ID}
	for len(ids) < maxGroupParticipants-1 {
		ids = append(ids, uniq(strings.Repeat("member-with-a-long-id-", 9))) // ≈210 bytes each
	}
	r := alice.do("POST", "/v1/conversations", map[string]any{"participant_ids": ids, "title": "everyone"})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var group events.Conversation
	r.JSON(t, &group)

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testDB)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "LISTEN chatd_ephemeral")
	require.NoError(t, err)

	bobStream, _ := openReady(t, b.URL+"/v1/events", bob.Token, nil)
	aliceStream, _ := openReady(t, b.URL+"/v1/events", alice.Token, nil) // the typist, on the other instance
	require.Equal(t, 204, alice.do("POST", "/v1/conversations/"+group.ID+"/typing", map[string]any{"typing": true}).Status)

	ev := bobStream.nextOf("typing", wait)
	typing := decode[events.Typing](t, ev.Data)
	require.Equal(t, events.Typing{ConversationID: group.ID, UserID: alice.ID, Typing: true}, typing)

	var notes []string
	for {
		wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil {
			break // quiet for 300 ms after bob had the event: every notification is in
		}
		if strings.Contains(n.Payload, group.ID) {
			notes = append(notes, n.Payload)
		}
	}
	require.Len(t, notes, 1, "one notification for the whole group")
	require.Less(t, len(notes[0]), 1024, "it names the conversation, not its 255 members: %s", notes[0])

	// The typist's own stream on the other instance never shows her typing: a message sent
	// after it arrives first.
	alice.send(group.ID, "sentinel")
	for {
		ev := aliceStream.next(wait)
		if ev.Type == "message" {
			break
		}
		require.NotEqual(t, "typing", ev.Type, "the typist was told of her own typing")
	}
}

// /metrics is not public: on the public address it answers only to the metrics token, and
// not at all without one; the handler for its own address needs none.
func TestMetricsAreNotPublic(t *testing.T) {
	in := newInstance(t)
	require.Equal(t, 401, call(t, "GET", in.URL+"/metrics", "", nil).Status)
	require.Equal(t, 401, call(t, "GET", in.URL+"/metrics", "not-the-token", nil).Status)
	alice := newUser(t, in, "alice")
	require.Equal(t, 401, call(t, "GET", in.URL+"/metrics", alice.Token, nil).Status, "a user's token is not the metrics token")
	require.Equal(t, 200, call(t, "GET", in.URL+"/metrics", testMetricsToken, nil).Status)

	closed := newInstance(t, func(c *Config, _ *events.Config) { c.MetricsToken = "" })
	require.Equal(t, 404, call(t, "GET", closed.URL+"/metrics", testMetricsToken, nil).Status)
	own := httptest.NewServer(closed.Server.Config.Handler.(*Server).MetricsHandler())
	defer own.Close()
	res, err := http.Get(own.URL)
	require.NoError(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, 200, res.StatusCode)
	require.Contains(t, string(body), "chatd_streams_open")
}

package api

import (
	"context"
	"crypto/sha256"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

// contractShortToken returns a token for sub that expires after ttl, and its exp as the
// verifier sees it (exp is whole seconds).
func contractShortToken(t *testing.T, sub string, ttl time.Duration) (string, time.Time) {
	t.Helper()
	now := time.Now()
	tok, err := SignHS256(testSecret, sub, "", ttl, now)
	require.NoError(t, err)
	v, err := NewVerifier(context.Background(), KeyConfig{Secret: testSecret})
	require.NoError(t, err)
	id, err := v.Verify(context.Background(), tok)
	require.NoError(t, err)
	return tok, id.Expires
}

// contractTicket mints a stream ticket for u.
func contractTicket(t *testing.T, u *testUser) (ticket string, expiresIn int) {
	t.Helper()
	r := u.do("POST", "/v1/tickets", nil)
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var tk struct {
		Ticket    string `json:"ticket"`
		ExpiresIn int    `json:"expires_in"`
	}
	r.JSON(t, &tk)
	return tk.Ticket, tk.ExpiresIn
}

func TestContractTicketExpires(t *testing.T) {
	t.Parallel()
	in := newInstance(t, func(c *Config, _ *events.Config) { c.TicketTTL = time.Second })
	bob := newUser(t, in, "bob")
	old, expiresIn := contractTicket(t, bob)
	require.Equal(t, 1, expiresIn, "expires_in is the configured TTL, not a second short")
	// The database's clock decides (the ticket is consumed there): wait until, by it, the
	// ticket has expired.
	sum := sha256.Sum256([]byte(old))
	require.Eventually(t, func() bool {
		var expired bool
		err := in.Pool.QueryRow(context.Background(), "SELECT expires_at <= now() FROM tickets WHERE hash = $1", sum[:]).Scan(&expired)
		return err == nil && expired
	}, wait, 20*time.Millisecond)
	restRequireError(t, authOpenStream(t, in.URL+"/v1/events?ticket="+url.QueryEscape(old), ""), http.StatusUnauthorized, "")

	// A ticket used within its TTL works: the refusal was the expiry.
	fresh, _ := contractTicket(t, bob)
	s, _ := openReady(t, in.URL+"/v1/events?ticket="+url.QueryEscape(fresh), "", nil)
	s.close()
}

func TestContractTicketAndCookieStreamsEndWhenTheTokenExpires(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	alice := newUser(t, in, "alice")
	for _, via := range []string{"ticket", "cookie"} {
		t.Run(via, func(t *testing.T) {
			t.Parallel()
			bobID := uniq("bob")
			// exp is whole seconds: the token lives 3 to 4 s, ample for opening the stream
			// and one delivery under -race.
			tok, exp := contractShortToken(t, bobID, 4*time.Second)
			bob := &testUser{t: t, ID: bobID, Token: tok, URL: in.URL}
			conv := alice.direct(bob)
			var s *stream
			switch via {
			case "ticket":
				tk, _ := contractTicket(t, bob)
				s = openStream(t, in.URL+"/v1/events?ticket="+url.QueryEscape(tk), "", nil)
			case "cookie":
				r := bob.do("POST", "/v1/session", nil)
				require.Equal(t, 204, r.Status, "%s", r.Body)
				s = openStream(t, in.URL+"/v1/events", "", map[string]string{"Cookie": sessionCookie + "=" + authSetCookie(t, r).Value})
			}
			require.Equal(t, 200, s.Status)
			require.Equal(t, "ready", s.next(wait).Type)
			// The stream is live (it did not end at once) ...
			m := alice.send(conv.ID, "while the token is valid")
			require.Equal(t, m.ID, decode[events.Message](t, s.nextOf("message", wait).Data).ID)
			// ... and ends when the token expires, not before.
			require.True(t, s.ended(wait), "the stream outlived its token")
			require.False(t, time.Now().Before(exp.Add(-50*time.Millisecond)), "ended before the token expired at %v", exp)
		})
	}
}

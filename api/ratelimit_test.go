package api

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

// ---------------------------------------------------------------------------------------
// 11. Rate limit

func TestRateLimitWritesGet429(t *testing.T) {
	t.Parallel()
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	in := newInstance(t, func(c *Config, _ *events.Config) {
		c.WriteRate, c.WriteBurst = 1, 2
		c.Now = func() time.Time { return time.Unix(0, clock.Load()) }
	})
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	r := alice.do("POST", "/v1/conversations", map[string]any{"participant_id": bob.ID}) // write 1
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var conv events.Conversation
	r.JSON(t, &conv)
	msgs := "/v1/conversations/" + conv.ID + "/messages"
	r = alice.do("POST", msgs, map[string]any{"body": "two"}) // write 2
	require.Equal(t, 201, r.Status, "%s", r.Body)

	r = alice.do("POST", msgs, map[string]any{"body": "three"})
	restRequireError(t, r, http.StatusTooManyRequests, "rate_limited")
	wait, err := strconv.Atoi(r.Header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After %q", r.Header.Get("Retry-After"))
	require.Positive(t, wait)
	restRequireError(t, alice.do("POST", "/v1/conversations/"+conv.ID+"/read", map[string]any{"seq": 1}), http.StatusTooManyRequests, "rate_limited")
	require.EqualValues(t, 1, restSnapshot(t, in.Pool, conv.ID).Messages, "a limited send stores nothing")

	// Reads are not limited, and the bucket is per user.
	require.Equal(t, 200, alice.do("GET", msgs, nil).Status)
	require.Equal(t, 201, bob.do("POST", msgs, map[string]any{"body": "bob's own bucket"}).Status)

	// After Retry-After the user may write again.
	clock.Add(int64(time.Duration(wait) * time.Second))
	r = alice.do("POST", msgs, map[string]any{"body": "later"})
	require.Equal(t, 201, r.Status, "%s", r.Body)
}

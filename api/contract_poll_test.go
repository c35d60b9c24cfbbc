package api

import (
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

func TestContractLongPollAnswersEmptyAfterTimeout(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	bob := newUser(t, in, "bob")
	var head pollAnswer
	r := bob.do("GET", "/v1/events/poll", nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	r.JSON(t, &head)

	start := time.Now()
	r = bob.do("GET", "/v1/events/poll?timeout=1&cursor="+url.QueryEscape(head.Cursor), nil)
	took := time.Since(start)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	var empty pollAnswer
	r.JSON(t, &empty)
	require.NotNil(t, empty.Events, "events is [], not null: %s", r.Body)
	require.Empty(t, empty.Events, "%s", r.Body)
	// Other tests' events move the head meanwhile: the cursor may move past them (nothing
	// of bob's is there), never back.
	before, err := events.ParseCursor(head.Cursor)
	require.NoError(t, err)
	after, err := events.ParseCursor(empty.Cursor)
	require.NoError(t, err, "%s", r.Body)
	require.False(t, after.Less(before), "the cursor never moves back: %s then %s", head.Cursor, empty.Cursor)
	require.GreaterOrEqual(t, took, time.Second, "the poll answers after its timeout, not before")
	require.Less(t, took, wait)
}

// contractRequireReset checks a poll answer that must be a single reset event with reason,
// given at once: its data's cursor is the answer's cursor, a head no older than notBefore.
func contractRequireReset(t *testing.T, u *testUser, cursor, reason string, notBefore events.Cursor) {
	t.Helper()
	start := time.Now()
	r := u.do("GET", "/v1/events/poll?timeout=20&cursor="+url.QueryEscape(cursor), nil)
	require.Less(t, time.Since(start), wait, "a reset is answered at once, not after the timeout")
	require.Equal(t, 200, r.Status, "%s", r.Body)
	var raw struct {
		Events []map[string]json.RawMessage `json:"events"`
	}
	r.JSON(t, &raw)
	require.Len(t, raw.Events, 1, "%s", r.Body)
	require.NotContains(t, raw.Events[0], "id", "a reset is not a durable event")
	var a pollAnswer
	r.JSON(t, &a)
	require.Equal(t, "reset", a.Events[0].Type)
	reset := decode[events.Reset](t, string(a.Events[0].Data))
	require.Equal(t, reason, reset.Reason)
	require.Equal(t, a.Cursor, reset.Cursor)
	got, err := events.ParseCursor(a.Cursor)
	require.NoError(t, err)
	require.False(t, got.Less(notBefore), "the answer's cursor %s is the head, not older than %s", a.Cursor, notBefore)
}

func TestContractLongPollResetsUnknownCursors(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	bob := newUser(t, in, "bob")
	var head pollAnswer
	bob.do("GET", "/v1/events/poll", nil).JSON(t, &head)
	h, err := events.ParseCursor(head.Cursor)
	require.NoError(t, err)
	contractRequireReset(t, bob, "999999999999_1", "unknown", h)
	contractRequireReset(t, bob, fmt.Sprintf("%d_%d", h.Tx, h.ID+1_000_000_000), "unknown", h)
}

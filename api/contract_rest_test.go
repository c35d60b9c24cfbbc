package api

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

func TestContractHistoryDefaultsToTheLatest50(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)
	for i := 1; i <= 51; i++ {
		alice.send(conv.ID, fmt.Sprint("m", i))
	}
	r := bob.do("GET", "/v1/conversations/"+conv.ID+"/messages", nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	var p restMsgPage
	r.JSON(t, &p)
	require.Equal(t, restRange(2, 51), restSeqs(p.Messages))
	require.True(t, p.HasMore, "message 1 is older than the window")
}

func TestContractClientIDIsPerConversationAndARetryReturnsTheOriginal(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	alice, bob, carol := newUser(t, in, "alice"), newUser(t, in, "bob"), newUser(t, in, "carol")
	toBob, toCarol := alice.direct(bob), alice.direct(carol)
	bobStream, _ := openReady(t, in.URL+"/v1/events", bob.Token, nil)
	post := func(conv, body string) response {
		t.Helper()
		return alice.do("POST", "/v1/conversations/"+conv+"/messages", map[string]any{"body": body, "client_id": "same-key"})
	}

	first := post(toBob.ID, "to bob")
	require.Equal(t, 201, first.Status, "%s", first.Body)
	other := post(toCarol.ID, "to carol")
	require.Equal(t, 201, other.Status, "the same client_id in another conversation is another message: %s", other.Body)
	m1, m2 := decode[events.Message](t, string(first.Body)), decode[events.Message](t, string(other.Body))
	require.NotEqual(t, m1.ID, m2.ID)
	require.Equal(t, toCarol.ID, m2.ConversationID)
	require.Equal(t, "to carol", m2.Body)
	require.Equal(t, int64(1), m2.Seq)

	require.Equal(t, m1.ID, decode[events.Message](t, bobStream.nextOf("message", wait).Data).ID)
	retry := post(toBob.ID, "a different body")
	require.Equal(t, 200, retry.Status, "%s", retry.Body)
	require.JSONEq(t, string(first.Body), string(retry.Body), "a retry returns the original, whatever its body")

	// The retry stored nothing and emitted nothing: the next event is the next message.
	next := alice.send(toBob.ID, "next")
	require.Equal(t, int64(2), next.Seq)
	ev := nextDurable(bobStream)
	require.Equal(t, "message", ev.Type, ev.Data)
	require.Equal(t, next.ID, decode[events.Message](t, ev.Data).ID)
	var p restMsgPage
	r := bob.do("GET", "/v1/conversations/"+toBob.ID+"/messages", nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	r.JSON(t, &p)
	require.Equal(t, []events.Message{m1, next}, p.Messages)
}

// contractRequireMillis checks that each named field of the JSON object raw is a time with
// exactly three fractional digits, in UTC ("Z").
func contractRequireMillis(t *testing.T, raw string, fields ...string) {
	t.Helper()
	var o map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(raw), &o), raw)
	for _, f := range fields {
		require.Regexp(t, restTimeFormat, string(o[f]), "%s in %s", f, raw)
	}
}

func TestContractTimestampsHaveMilliseconds(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)
	bob.send(conv.ID, "bob takes part") // presence is visible through conversations one took part in
	m := alice.send(conv.ID, "to be edited")
	aliceStream, _ := openReady(t, in.URL+"/v1/events", alice.Token, nil)
	bobStream, _ := openReady(t, in.URL+"/v1/events", bob.Token, nil)

	// last_seen_at, in a presence event and in GET /v1/presence.
	for {
		ev := aliceStream.nextOf("presence", wait)
		if decode[events.UserPresence](t, ev.Data).UserID == bob.ID {
			contractRequireMillis(t, ev.Data, "last_seen_at")
			break
		}
	}
	var users []json.RawMessage
	require.Eventually(t, func() bool {
		r, err := restDo("GET", in.URL+"/v1/presence?user_id="+url.QueryEscape(bob.ID)+"&user_id="+url.QueryEscape(alice.ID), alice.Token, "", nil)
		var a struct {
			Users []json.RawMessage `json:"users"`
		}
		if err != nil || r.Status != 200 || json.Unmarshal(r.Body, &a) != nil || len(a.Users) != 2 {
			return false
		}
		for _, u := range a.Users {
			if !strings.Contains(string(u), `"last_seen_at":"`) {
				return false
			}
		}
		users = a.Users
		return true
	}, wait, 20*time.Millisecond, "both users reported with a last_seen_at")
	for _, u := range users {
		contractRequireMillis(t, string(u), "last_seen_at")
	}

	// edited_at and deleted_at: in the answers, in the events and in history.
	path := "/v1/conversations/" + conv.ID + "/messages/" + m.ID
	r := alice.do("PATCH", path, map[string]any{"body": "edited"})
	require.Equal(t, 200, r.Status, "%s", r.Body)
	contractRequireMillis(t, string(r.Body), "created_at", "edited_at")
	ev := bobStream.nextOf("message_updated", wait)
	contractRequireMillis(t, ev.Data, "created_at", "edited_at")

	r = alice.do("DELETE", path, nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	contractRequireMillis(t, string(r.Body), "created_at", "edited_at", "deleted_at")
	ev = nextDurable(bobStream)
	require.Equal(t, "message_deleted", ev.Type)
	contractRequireMillis(t, ev.Data, "created_at", "edited_at", "deleted_at")

	r = bob.do("GET", "/v1/conversations/"+conv.ID+"/messages", nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	var page struct {
		Messages []json.RawMessage `json:"messages"`
	}
	r.JSON(t, &page)
	require.Len(t, page.Messages, 2)
	contractRequireMillis(t, string(page.Messages[1]), "created_at", "edited_at", "deleted_at")
}

package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

// serverConversation opens a conversation through the server API and returns it.
func serverConversation(t testing.TB, in *instance, body map[string]any) events.Conversation {
	t.Helper()
	r := asServer(t, in, "POST", "/conversations", body)
	require.Contains(t, []int{200, 201}, r.Status, "%s", r.Body)
	var c events.Conversation
	r.JSON(t, &c)
	return c
}

func TestServiceKeysAndUserTokensNeverCross(t *testing.T) {
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)

	// A service key is not a user's token, on any user route.
	for _, path := range []string{"/v1/conversations", "/v1/unread", "/v1/conversations/" + conv.ID} {
		r := call(t, "GET", in.URL+path, testServiceKey, nil)
		require.Equal(t, http.StatusUnauthorized, r.Status, "%s: %s", path, r.Body)
	}
	s := openStream(t, in.URL+"/v1/events", testServiceKey, nil)
	require.Equal(t, http.StatusUnauthorized, s.Status)

	// A user's token, cookie or nothing at all never opens the server API.
	body := map[string]any{"kind": "group", "participant_ids": []string{alice.ID}}
	for _, tok := range []string{alice.Token, "", testServiceKey + "x", testServiceKey[:len(testServiceKey)-1]} {
		r := call(t, "POST", in.URL+"/v1/server/conversations", tok, body)
		require.Equal(t, http.StatusUnauthorized, r.Status, "%s", r.Body)
		r = call(t, "POST", in.URL+"/v1/server/conversations/"+conv.ID+"/messages", tok, map[string]any{"body": "x"})
		require.Equal(t, http.StatusUnauthorized, r.Status, "%s", r.Body)
	}
	req, err := http.NewRequest("GET", in.URL+"/v1/server/conversations?external_id=x", nil)
	require.NoError(t, err)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: alice.Token})
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusUnauthorized, res.StatusCode)

	// The key itself works.
	r := asServer(t, in, "POST", "/conversations", body)
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
}

func TestServerCreateIsIdempotentUnder50ConcurrentCreations(t *testing.T) {
	a, b := newInstance(t), newInstance(t)
	alice, bob := newUser(t, a, "alice"), newUser(t, a, "bob")
	ext := uniq("listing:123:buyer")
	body := map[string]any{"kind": "direct", "participant_ids": []string{alice.ID, bob.ID},
		"external_id": ext, "title": "Blue bike", "metadata": map[string]any{"listing": 123, "url": "https://x.test/l/123"}}
	const n = 50
	type answer struct {
		status int
		id     string
		err    error
	}
	answers := make(chan answer, n)
	restConcurrently(n, func(i int) {
		url := []*instance{a, b}[i%2].URL
		r, err := tryCall("POST", url+"/v1/server/conversations", testServiceKey, body)
		var c events.Conversation
		if err == nil {
			err = json.Unmarshal(r.Body, &c)
		}
		answers <- answer{r.Status, c.ID, err}
	})
	close(answers)
	created, ids := 0, map[string]bool{}
	for ans := range answers {
		require.NoError(t, ans.err)
		require.Contains(t, []int{200, 201}, ans.status)
		if ans.status == 201 {
			created++
		}
		ids[ans.id] = true
	}
	require.Equal(t, 1, created, "one creation, every other answer the same conversation")
	require.Len(t, ids, 1)
	var rows int
	require.NoError(t, a.Pool.QueryRow(context.Background(), "SELECT count(*) FROM conversations WHERE external_id = $1", ext).Scan(&rows))
	require.Equal(t, 1, rows)

	// The lookup finds it; participants see its metadata and external_id; a second
	// conversation of the same pair with another external_id is one of its own.
	r := asServer(t, a, "GET", "/conversations?external_id="+ext, nil)
	var found events.Conversation
	r.OK(t, &found)
	var id string
	for id = range ids {
	}
	require.Equal(t, id, found.ID)
	var seen events.Conversation
	alice.do("GET", "/v1/conversations/"+id, nil).OK(t, &seen)
	require.Equal(t, ext, *seen.ExternalID)
	require.JSONEq(t, `{"listing": 123, "url": "https://x.test/l/123"}`, string(seen.Metadata))
	require.Nil(t, seen.ClosedAt)
	other := serverConversation(t, a, map[string]any{"kind": "direct", "participant_ids": []string{alice.ID, bob.ID}, "external_id": ext + "-2"})
	require.NotEqual(t, id, other.ID)
	require.NotEqual(t, id, alice.direct(bob).ID, "the pair's own direct conversation is a third one")
	require.Equal(t, http.StatusNotFound, asServer(t, a, "GET", "/conversations?external_id="+ext+"-none", nil).Status)
}

func TestSystemMessageReachesHistoryAndStreamsOnBothInstances(t *testing.T) {
	a, b := newInstance(t), newInstance(t)
	alice, bob := newUser(t, a, "alice"), newUser(t, b, "bob")
	conv := serverConversation(t, a, map[string]any{"kind": "group", "participant_ids": []string{alice.ID, bob.ID}})
	aliceStream, _ := openReady(t, a.URL+"/v1/events", alice.Token, nil)
	bobStream, _ := openReady(t, b.URL+"/v1/events", bob.Token, nil)

	r := asServer(t, b, "POST", "/conversations/"+conv.ID+"/messages", map[string]any{"body": "Booking confirmed for Saturday", "client_id": "booking-1"})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	var m events.Message
	r.JSON(t, &m)
	require.Equal(t, "system", m.Kind)
	require.Nil(t, m.SenderID)
	require.Contains(t, string(r.Body), `"sender_id":null`)
	for _, s := range []*stream{aliceStream, bobStream} {
		got := decode[events.Message](t, s.nextOf("message", wait).Data)
		require.Equal(t, m.ID, got.ID)
		require.Equal(t, "system", got.Kind)
		require.Nil(t, got.SenderID)
	}
	// The same client_id is the same message, and no second event.
	again := asServer(t, a, "POST", "/conversations/"+conv.ID+"/messages", map[string]any{"body": "again", "client_id": "booking-1"})
	var same events.Message
	again.OK(t, &same)
	require.Equal(t, m.ID, same.ID)

	// History has it; it is unread for everyone and a user message follows it in seq.
	for _, u := range []*testUser{alice, bob} {
		var page struct{ Messages []events.Message }
		u.do("GET", "/v1/conversations/"+conv.ID+"/messages", nil).OK(t, &page)
		require.Len(t, page.Messages, 1)
		require.Equal(t, "system", page.Messages[0].Kind)
		var unread struct{ Total int64 }
		u.do("GET", "/v1/unread", nil).OK(t, &unread)
		require.EqualValues(t, 1, unread.Total)
	}
	reply := alice.send(conv.ID, "great")
	require.Equal(t, "user", reply.Kind)
	require.EqualValues(t, 2, reply.Seq)
	require.Equal(t, "user", decode[events.Message](t, bobStream.nextOf("message", wait).Data).Kind)

	// A system message takes nobody's part: bob, who only received, stays hidden.
	var tookPart bool
	require.NoError(t, a.Pool.QueryRow(context.Background(),
		"SELECT took_part FROM members WHERE conversation_id = $1 AND user_id = $2", conv.ID, bob.ID).Scan(&tookPart))
	require.False(t, tookPart)

	// Users cannot edit or delete a system message.
	r = bob.do("DELETE", "/v1/conversations/"+conv.ID+"/messages/"+m.ID, nil)
	require.Equal(t, http.StatusForbidden, r.Status, "%s", r.Body)
}

func TestClosedConversationRefusesEverySend(t *testing.T) {
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := serverConversation(t, in, map[string]any{"kind": "direct", "participant_ids": []string{alice.ID, bob.ID}, "external_id": uniq("booking")})
	before := alice.do("POST", "/v1/conversations/"+conv.ID+"/messages", map[string]any{"body": "hi", "client_id": "c1"})
	require.Equal(t, http.StatusCreated, before.Status)

	r := asServer(t, in, "POST", "/conversations/"+conv.ID+"/close", nil)
	var closed events.Conversation
	r.OK(t, &closed)
	require.NotNil(t, closed.ClosedAt)
	var again events.Conversation
	asServer(t, in, "POST", "/conversations/"+conv.ID+"/close", nil).OK(t, &again)
	require.Equal(t, closed.ClosedAt, again.ClosedAt, "closing twice keeps the first time")

	r = bob.do("POST", "/v1/conversations/"+conv.ID+"/messages", map[string]any{"body": "too late"})
	require.Equal(t, http.StatusConflict, r.Status, "%s", r.Body)
	require.Equal(t, "conversation_closed", r.ErrorCode())
	r = asServer(t, in, "POST", "/conversations/"+conv.ID+"/messages", map[string]any{"body": "too late"})
	require.Equal(t, http.StatusConflict, r.Status, "%s", r.Body)
	// A retry of a send that went through before the close still gets its message.
	retry := alice.do("POST", "/v1/conversations/"+conv.ID+"/messages", map[string]any{"body": "hi", "client_id": "c1"})
	require.Equal(t, http.StatusOK, retry.Status, "%s", retry.Body)
	// Outsiders still learn nothing; history stays readable.
	carol := newUser(t, in, "carol")
	require.Equal(t, http.StatusNotFound, carol.do("POST", "/v1/conversations/"+conv.ID+"/messages", map[string]any{"body": "x"}).Status)
	var seen events.Conversation
	bob.do("GET", "/v1/conversations/"+conv.ID, nil).OK(t, &seen)
	require.NotNil(t, seen.ClosedAt)
	require.Equal(t, http.StatusNotFound, asServer(t, in, "POST", "/conversations/"+randomUUID()+"/close", nil).Status)
}

func TestServerAPIRefusesBadInput(t *testing.T) {
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	big := map[string]any{"k": strings.Repeat("x", 4100)}
	for _, tc := range []struct {
		body any
		code string
	}{
		{map[string]any{"participant_ids": []string{alice.ID, bob.ID}}, "invalid_kind"},
		{map[string]any{"kind": "channel", "participant_ids": []string{alice.ID}}, "invalid_kind"},
		{map[string]any{"kind": "direct", "participant_ids": []string{alice.ID}}, "invalid_participants"},
		{map[string]any{"kind": "direct", "participant_ids": []string{alice.ID, alice.ID}}, "invalid_participants"},
		{map[string]any{"kind": "group", "participant_ids": []string{}}, "invalid_participants"},
		{map[string]any{"kind": "group", "participant_ids": []string{alice.ID}, "metadata": []int{1}}, "invalid_metadata"},
		{map[string]any{"kind": "group", "participant_ids": []string{alice.ID}, "metadata": "text"}, "invalid_metadata"},
		{map[string]any{"kind": "group", "participant_ids": []string{alice.ID}, "metadata": big}, "invalid_metadata"},
		{`{"kind": "group", "participant_ids": ["a"], "metadata": {"k": "a\u0000b"}}`, "invalid_metadata"},
		{map[string]any{"kind": "group", "participant_ids": []string{alice.ID}, "external_id": ""}, "invalid_external_id"},
		{map[string]any{"kind": "group", "participant_ids": []string{alice.ID}, "external_id": "a\nb"}, "invalid_external_id"},
	} {
		r := asServer(t, in, "POST", "/conversations", tc.body)
		require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%v: %s", tc.body, r.Body)
		require.Equal(t, tc.code, r.ErrorCode(), "%v", tc.body)
	}
	require.Equal(t, http.StatusBadRequest, asServer(t, in, "GET", "/conversations", nil).Status)
	require.Equal(t, http.StatusNotFound, asServer(t, in, "POST", "/conversations/nope/messages", map[string]any{"body": "x"}).Status)
	require.Equal(t, http.StatusNotFound, asServer(t, in, "POST", "/conversations/"+randomUUID()+"/messages", map[string]any{"body": "x"}).Status)
}

func TestServerSwitchesNotificationWebhook(t *testing.T) {
	in := newInstance(t)
	id := uniq("dana") // never seen before: created with the setting
	flag := func() bool {
		var on bool
		require.NoError(t, in.Pool.QueryRow(context.Background(), "SELECT notify_webhook FROM users WHERE id = $1", id).Scan(&on))
		return on
	}
	r := asServer(t, in, "PUT", "/users/"+id+"/notifications", map[string]any{"webhook": false})
	require.Equal(t, http.StatusNoContent, r.Status, "%s", r.Body)
	require.False(t, flag())
	require.Equal(t, http.StatusNoContent, asServer(t, in, "PUT", "/users/"+id+"/notifications", map[string]any{"webhook": true}).Status)
	require.True(t, flag())
	r = asServer(t, in, "PUT", "/users/"+id+"/notifications", map[string]any{})
	require.Equal(t, http.StatusUnprocessableEntity, r.Status)
	require.True(t, flag())
}

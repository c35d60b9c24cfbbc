package api

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

// ---------------------------------------------------------------------------------------
// 9. Conversations

func restNames(c events.Conversation) map[string]*string {
	out := map[string]*string{}
	for _, p := range c.Participants {
		out[p.ID] = p.Name
	}
	return out
}

func TestConversationDirectGroupAndObject(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	aliceID := uniq("alice")
	tok, err := SignHS256(testSecret, aliceID, "Alice Liddell", time.Hour, time.Now())
	require.NoError(t, err)
	alice := &testUser{t: t, ID: aliceID, Token: tok, URL: in.URL}
	bob, carol := newUser(t, in, "bob"), newUser(t, in, "carol")
	ghost := uniq("ghost") // never signs in

	r := alice.do("POST", "/v1/conversations", map[string]any{"participant_id": bob.ID})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	o := restRequireConversationObject(t, r.Body)
	require.JSONEq(t, `"direct"`, string(o["kind"]))
	require.JSONEq(t, `null`, string(o["title"]))
	require.JSONEq(t, `null`, string(o["last_message"]))
	require.JSONEq(t, `0`, string(o["last_read_seq"]))
	require.JSONEq(t, `0`, string(o["unread_count"]))
	var d events.Conversation
	r.JSON(t, &d)
	alicesName := "Alice Liddell"
	require.Equal(t, map[string]*string{alice.ID: &alicesName, bob.ID: nil}, restNames(d))

	for _, ask := range []struct {
		who   *testUser
		other string
	}{{alice, bob.ID}, {bob, alice.ID}, {alice, bob.ID}} {
		r := ask.who.do("POST", "/v1/conversations", map[string]any{"participant_id": ask.other})
		require.Equal(t, 200, r.Status, "%s", r.Body)
		var again events.Conversation
		r.JSON(t, &again)
		require.Equal(t, d.ID, again.ID)
	}
	require.EqualValues(t, 1, restEventCount(t, in.Pool, d.ID, "conversation"), "a direct conversation is announced once")

	// A participant that never signed in has a user row with no name.
	r = alice.do("POST", "/v1/conversations", map[string]any{"participant_id": ghost})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var withGhost events.Conversation
	r.JSON(t, &withGhost)
	require.Equal(t, map[string]*string{alice.ID: &alicesName, ghost: nil}, restNames(withGhost))

	// Groups: a new one every time.
	var groups []events.Conversation
	for range 2 {
		r := alice.do("POST", "/v1/conversations", map[string]any{"participant_ids": []string{bob.ID, carol.ID, ghost}, "title": "Team"})
		require.Equal(t, 201, r.Status, "%s", r.Body)
		restRequireConversationObject(t, r.Body)
		var g events.Conversation
		r.JSON(t, &g)
		require.Equal(t, "group", g.Kind)
		require.NotNil(t, g.Title)
		require.Equal(t, "Team", *g.Title)
		require.Len(t, g.Participants, 4)
		require.Equal(t, map[string]*string{alice.ID: &alicesName, bob.ID: nil, carol.ID: nil, ghost: nil}, restNames(g))
		require.EqualValues(t, 1, restEventCount(t, in.Pool, g.ID, "conversation"))
		groups = append(groups, g)
	}
	require.NotEqual(t, groups[0].ID, groups[1].ID)

	// With a message, last_message is the message object and GET returns the same object.
	sent := bob.send(d.ID, "hello")
	r = alice.do("GET", "/v1/conversations/"+d.ID, nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	restRequireConversationObject(t, r.Body)
	var got events.Conversation
	r.JSON(t, &got)
	require.NotNil(t, got.LastMessage)
	require.Equal(t, sent, *got.LastMessage)
	require.EqualValues(t, 1, got.UnreadCount)
}

func TestConversationListOrderAndPaging(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	alice, bob, carol := newUser(t, in, "alice"), newUser(t, in, "bob"), newUser(t, in, "carol")
	a := alice.direct(bob).ID
	b := alice.direct(carol).ID
	r := alice.do("POST", "/v1/conversations", map[string]any{"participant_ids": []string{bob.ID, carol.ID}})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var g events.Conversation
	r.JSON(t, &g)

	// order is the ids of u's first page of conversations, in the order listed.
	order := func(u *testUser) []string { t.Helper(); return convIDs(convList(t, u, "")) }

	// Empty conversations order by creation time, newest first.
	require.Equal(t, []string{g.ID, b, a}, order(alice))
	// A message moves its conversation first.
	bob.send(a, "bump a")
	require.Equal(t, []string{a, g.ID, b}, order(alice))
	alice.send(b, "bump b")
	require.Equal(t, []string{b, a, g.ID}, order(alice))
	require.Equal(t, []string{a, g.ID}, order(bob), "bob sees only his own")
	// Editing is not activity.
	p := convList(t, alice, "")
	m := p.Conversations[1].LastMessage
	require.NotNil(t, m)
	r = bob.do("PATCH", "/v1/conversations/"+a+"/messages/"+m.ID, map[string]any{"body": "edited"})
	require.Equal(t, 200, r.Status, "%s", r.Body)
	require.Equal(t, []string{b, a, g.ID}, order(alice))

	all, pages := convWalk(t, alice, 1)
	require.Equal(t, []string{b, a, g.ID}, all)
	require.Equal(t, 3, pages, "limit=1 over three conversations: three pages, the last with next_cursor null")
	all, pages = convWalk(t, alice, 2)
	require.Equal(t, []string{b, a, g.ID}, all)
	require.Equal(t, 2, pages)
	all, _ = convWalk(t, alice, 3)
	require.Equal(t, []string{b, a, g.ID}, all)

	// A user without conversations gets an empty list, not null.
	r = newUser(t, in, "loner").do("GET", "/v1/conversations", nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	require.JSONEq(t, `{"conversations":[],"next_cursor":null}`, string(r.Body))

	for _, q := range []string{"cursor=garbage", "cursor=", "cursor=123_notauuid", "cursor=-5_" + restRandomUUID(),
		"cursor=" + restRandomUUID(), "limit=0", "limit=101", "limit=abc"} {
		r := alice.do("GET", "/v1/conversations?"+q, nil)
		restRequireError(t, r, http.StatusBadRequest, "")
	}
}

// convList is u's page of GET /v1/conversations?query.
func convList(t testing.TB, u *testUser, query string) restConvPage {
	t.Helper()
	r := u.do("GET", "/v1/conversations?"+query, nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	var p restConvPage
	r.JSON(t, &p)
	return p
}

// convIDs is the ids of a page's conversations, in its order.
func convIDs(p restConvPage) []string {
	var out []string
	for _, c := range p.Conversations {
		out = append(out, c.ID)
	}
	return out
}

// convWalk follows next_cursor from the first page of u's conversations, limit a page, and
// returns every id seen in order and the number of pages it took.
func convWalk(t testing.TB, u *testUser, limit int) ([]string, int) {
	t.Helper()
	var all []string
	pages := 0
	q := "limit=" + strconv.Itoa(limit)
	for {
		p := convList(t, u, q)
		pages++
		require.LessOrEqual(t, len(p.Conversations), limit)
		all = append(all, convIDs(p)...)
		if p.NextCursor == nil {
			return all, pages
		}
		require.NotEmpty(t, p.Conversations)
		q = "limit=" + strconv.Itoa(limit) + "&cursor=" + url.QueryEscape(*p.NextCursor)
		require.Less(t, pages, 10, "paging does not end")
	}
}

func TestConcurrentDirectCreateOneConversation(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	const n = 20
	results := make([]response, n)
	errs := make([]error, n)
	restConcurrently(n, func(i int) {
		me, other := alice, bob
		if i%2 == 1 {
			me, other = bob, alice
		}
		body, _ := json.Marshal(map[string]any{"participant_id": other.ID})
		results[i], errs[i] = restDo("POST", in.URL+"/v1/conversations", me.Token, "application/json", body)
	})
	statuses := map[int]int{}
	ids := map[string]bool{}
	for i, r := range results {
		require.NoError(t, errs[i])
		statuses[r.Status]++
		var c events.Conversation
		r.JSON(t, &c)
		ids[c.ID] = true
	}
	require.Equal(t, map[int]int{201: 1, 200: n - 1}, statuses)
	require.Len(t, ids, 1)
	for id := range ids {
		require.EqualValues(t, 1, restEventCount(t, in.Pool, id, "conversation"))
	}
}

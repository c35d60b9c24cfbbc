package api

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

// ---------------------------------------------------------------------------------------
// 6. Unread counts

// restRequireUnread checks u's unread counts wherever they show: GET /v1/unread lists exactly
// the conversations with unread > 0 and total is their sum; every conversation object (one
// by one and listed) has the wanted unread_count and last_read_seq.
func restRequireUnread(t testing.TB, u *testUser, unread, lastRead map[string]int64) {
	t.Helper()
	r := u.do("GET", "/v1/unread", nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	require.NotContains(t, string(r.Body), `"conversations":null`)
	var got restUnread
	r.JSON(t, &got)
	gotMap := map[string]int64{}
	var sum int64
	for _, c := range got.Conversations {
		require.Positive(t, c.UnreadCount, "only conversations with unread messages are listed")
		gotMap[c.ID] = c.UnreadCount
		sum += c.UnreadCount
	}
	want := map[string]int64{}
	var wantTotal int64
	for id, n := range unread {
		if n > 0 {
			want[id] = n
			wantTotal += n
		}
	}
	require.Equal(t, want, gotMap, "GET /v1/unread of %s", u.ID)
	require.Equal(t, sum, got.Total)
	require.Equal(t, wantTotal, got.Total)

	var list restConvPage
	u.do("GET", "/v1/conversations?limit=100", nil).OK(t, &list)
	listed := map[string]events.Conversation{}
	for _, c := range list.Conversations {
		listed[c.ID] = c
	}
	for id, n := range unread {
		var c events.Conversation
		r := u.do("GET", "/v1/conversations/"+id, nil)
		require.Equal(t, 200, r.Status, "%s", r.Body)
		r.JSON(t, &c)
		require.Equal(t, n, c.UnreadCount, "unread_count of %s for %s", id, u.ID)
		require.Equal(t, lastRead[id], c.LastReadSeq, "last_read_seq of %s for %s", id, u.ID)
		require.Equal(t, n, listed[id].UnreadCount, "listed unread_count")
		require.Equal(t, lastRead[id], listed[id].LastReadSeq, "listed last_read_seq")
	}
}

// markRead marks conv read up to seq for u and requires the 204 with no body.
func markRead(t testing.TB, u *testUser, conv string, seq int64) {
	t.Helper()
	r := u.do("POST", "/v1/conversations/"+conv+"/read", map[string]any{"seq": seq})
	require.Equal(t, 204, r.Status, "%s", r.Body)
	require.Empty(t, r.Body)
}

// editOrDelete sends m to PATCH (a new body) or DELETE, as method says, and requires a 200.
func editOrDelete(t testing.TB, u *testUser, conv string, m events.Message, method string) {
	t.Helper()
	var body any
	if method == "PATCH" {
		body = map[string]any{"body": "edited"}
	}
	r := u.do(method, "/v1/conversations/"+conv+"/messages/"+m.ID, body)
	require.Equal(t, 200, r.Status, "%s", r.Body)
}

func TestUnreadCounts(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	alice, bob, carol, dave := newUser(t, in, "alice"), newUser(t, in, "bob"), newUser(t, in, "carol"), newUser(t, in, "dave")
	c1, c2, c3 := alice.direct(bob).ID, alice.direct(carol).ID, alice.direct(dave).ID
	lastRead := func(conv, user string) int64 {
		return restCount(t, in.Pool, `SELECT last_read_seq FROM members WHERE conversation_id = $1 AND user_id = $2`, conv, user)
	}

	restRequireUnread(t, alice, map[string]int64{c1: 0, c2: 0, c3: 0}, map[string]int64{c1: 0, c2: 0, c3: 0})

	var b []events.Message
	for i := range 3 {
		b = append(b, bob.send(c1, fmt.Sprint("b", i+1))) // seq 1..3
	}
	restRequireUnread(t, alice, map[string]int64{c1: 3, c2: 0, c3: 0}, map[string]int64{c1: 0, c2: 0, c3: 0})
	restRequireUnread(t, bob, map[string]int64{c1: 0}, map[string]int64{c1: 3}) // own sends never count

	carol.send(c2, "c1")
	carol.send(c2, "c2")
	restRequireUnread(t, alice, map[string]int64{c1: 3, c2: 2, c3: 0}, map[string]int64{c1: 0, c2: 0, c3: 0})

	markRead(t, alice, c1, 2)
	restRequireUnread(t, alice, map[string]int64{c1: 1, c2: 2}, map[string]int64{c1: 2, c2: 0})

	// Replying marks the conversation read for the sender.
	alice.send(c1, "a4") // seq 4
	restRequireUnread(t, alice, map[string]int64{c1: 0, c2: 2}, map[string]int64{c1: 4, c2: 0})
	restRequireUnread(t, bob, map[string]int64{c1: 1}, map[string]int64{c1: 3})

	for i := 5; i <= 7; i++ {
		b = append(b, bob.send(c1, fmt.Sprint("b", i))) // b[3..5] = seq 5..7
	}
	restRequireUnread(t, alice, map[string]int64{c1: 3, c2: 2}, map[string]int64{c1: 4, c2: 0})
	restRequireUnread(t, bob, map[string]int64{c1: 0}, map[string]int64{c1: 7})

	// Reads never move backwards.
	markRead(t, alice, c1, 5)
	markRead(t, alice, c1, 2)
	restRequireUnread(t, alice, map[string]int64{c1: 2, c2: 2}, map[string]int64{c1: 5, c2: 0})
	require.EqualValues(t, 5, lastRead(c1, alice.ID))

	// A deleted unread message stops counting; deleting a read one changes nothing.
	editOrDelete(t, bob, c1, b[4], "DELETE") // seq 6, unread
	restRequireUnread(t, alice, map[string]int64{c1: 1, c2: 2}, map[string]int64{c1: 5, c2: 0})
	editOrDelete(t, bob, c1, b[0], "DELETE") // seq 1, read
	restRequireUnread(t, alice, map[string]int64{c1: 1, c2: 2}, map[string]int64{c1: 5, c2: 0})

	// Edits change nothing.
	editOrDelete(t, bob, c1, b[5], "PATCH") // seq 7, unread
	editOrDelete(t, bob, c1, b[1], "PATCH") // seq 2, read
	restRequireUnread(t, alice, map[string]int64{c1: 1, c2: 2}, map[string]int64{c1: 5, c2: 0})

	// A read far beyond the last message is clamped to it, so the next message counts.
	markRead(t, alice, c1, 1_000_000)
	restRequireUnread(t, alice, map[string]int64{c1: 0, c2: 2}, map[string]int64{c1: 7, c2: 0})
	require.EqualValues(t, 7, lastRead(c1, alice.ID))
	bob.send(c1, "b8")
	restRequireUnread(t, alice, map[string]int64{c1: 1, c2: 2}, map[string]int64{c1: 7, c2: 0})

	markRead(t, alice, c2, 2)
	restRequireUnread(t, alice, map[string]int64{c1: 1, c2: 0, c3: 0}, map[string]int64{c1: 7, c2: 2, c3: 0})

	// A group: messages from everyone else count.
	r := alice.do("POST", "/v1/conversations", map[string]any{"participant_ids": []string{bob.ID, carol.ID}})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var g events.Conversation
	r.JSON(t, &g)
	bob.send(g.ID, "hi all")
	carol.send(g.ID, "hello")
	restRequireUnread(t, alice, map[string]int64{c1: 1, c2: 0, g.ID: 2}, map[string]int64{c1: 7, c2: 2, g.ID: 0})
	restRequireUnread(t, carol, map[string]int64{c2: 0, g.ID: 0}, map[string]int64{c2: 2, g.ID: 2})
	restRequireUnread(t, bob, map[string]int64{c1: 0, g.ID: 1}, map[string]int64{c1: 8, g.ID: 1})
}

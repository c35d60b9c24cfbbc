package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

// ---------------------------------------------------------------------------------------
// 4, 5. Concurrency

func TestConcurrentSendsSameClientIDCreateOneMessage(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)
	url := in.URL + "/v1/conversations/" + conv.ID + "/messages"
	body := restMarshal(t, map[string]any{"body": "exactly once", "client_id": "same-key"})

	const n = 50
	results := make([]response, n)
	errs := make([]error, n)
	restConcurrently(n, func(i int) {
		results[i], errs[i] = restDo("POST", url, alice.Token, "application/json", body)
	})
	statuses := map[int]int{}
	ids := map[string]bool{}
	for i, r := range results {
		require.NoError(t, errs[i])
		statuses[r.Status]++
		require.Contains(t, []int{200, 201}, r.Status, "%s", r.Body)
		var m events.Message
		r.JSON(t, &m)
		require.Equal(t, "exactly once", m.Body)
		require.EqualValues(t, 1, m.Seq)
		ids[m.ID] = true
	}
	require.Equal(t, map[int]int{201: 1, 200: n - 1}, statuses)
	require.Len(t, ids, 1, "every answer is the same message")

	require.EqualValues(t, 1, restCount(t, in.Pool, `SELECT count(*) FROM messages WHERE conversation_id = $1`, conv.ID))
	require.EqualValues(t, 1, restEventCount(t, in.Pool, conv.ID, "message"))
	st := restSnapshot(t, in.Pool, conv.ID)
	require.EqualValues(t, 1, st.LastSeq, "retried sends must not burn seqs")
	var page restMsgPage
	bob.do("GET", "/v1/conversations/"+conv.ID+"/messages", nil).OK(t, &page)
	require.Len(t, page.Messages, 1)

	// The key is per sender: bob may use the same client_id for a message of his own.
	r := bob.do("POST", "/v1/conversations/"+conv.ID+"/messages", map[string]any{"body": "mine", "client_id": "same-key"})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var m events.Message
	r.JSON(t, &m)
	require.EqualValues(t, 2, m.Seq)
}

func TestConcurrentSendsGetGapFreeSeq(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)
	url := in.URL + "/v1/conversations/" + conv.ID + "/messages"

	const n = 200
	results := make([]response, n)
	errs := make([]error, n)
	restConcurrently(n, func(i int) {
		u := alice
		if i%2 == 1 {
			u = bob
		}
		body, _ := json.Marshal(map[string]any{"body": fmt.Sprintf("m-%d", i)})
		results[i], errs[i] = restDo("POST", url, u.Token, "application/json", body)
	})
	sent := map[string]events.Message{}
	var seqs []int64
	var aliceMax int64
	for i, r := range results {
		require.NoError(t, errs[i])
		require.Equal(t, 201, r.Status, "%s", r.Body)
		var m events.Message
		r.JSON(t, &m)
		require.Equal(t, fmt.Sprintf("m-%d", i), m.Body)
		sent[m.ID] = m
		seqs = append(seqs, m.Seq)
		if *m.SenderID == alice.ID {
			aliceMax = max(aliceMax, m.Seq)
		}
	}
	slices.Sort(seqs)
	require.Equal(t, restRange(1, n), seqs, "seq is 1..n with no gap and no duplicate")
	require.Len(t, sent, n)

	st := restSnapshot(t, in.Pool, conv.ID)
	require.EqualValues(t, n, st.LastSeq)
	require.EqualValues(t, n, st.Messages)
	require.EqualValues(t, n, restEventCount(t, in.Pool, conv.ID, "message"))

	// History agrees, whoever reads it and however it is paged.
	var all restMsgPage
	alice.do("GET", "/v1/conversations/"+conv.ID+"/messages?limit=200", nil).OK(t, &all)
	require.False(t, all.HasMore)
	require.Equal(t, restRange(1, n), restSeqs(all.Messages))
	for _, m := range all.Messages {
		require.Equal(t, sent[m.ID], m, "history shows the message as its send returned it")
	}
	var fromBob restMsgPage
	bob.do("GET", "/v1/conversations/"+conv.ID+"/messages?limit=200", nil).OK(t, &fromBob)
	require.Equal(t, all, fromBob)

	require.Equal(t, all.Messages, pageForward(t, alice, conv.ID, 37))
	require.Equal(t, all.Messages, pageBackward(t, bob, conv.ID, 64, n))

	// Unread agrees with the commit order: bob's messages after alice's last send.
	var want int64
	for _, m := range sent {
		if *m.SenderID == bob.ID && m.Seq > aliceMax {
			want++
		}
	}
	var u restUnread
	alice.do("GET", "/v1/unread", nil).OK(t, &u)
	require.Equal(t, want, u.Total)
}

// pageForward reads conv's whole history as u with after_seq, limit a page, oldest first.
func pageForward(t testing.TB, u *testUser, conv string, limit int) []events.Message {
	t.Helper()
	var forward []events.Message
	for after, more := int64(0), true; more; {
		var p restMsgPage
		u.do("GET", fmt.Sprintf("/v1/conversations/%s/messages?limit=%d&after_seq=%d", conv, limit, after), nil).OK(t, &p)
		forward = append(forward, p.Messages...)
		more = p.HasMore
		if len(p.Messages) > 0 {
			after = p.Messages[len(p.Messages)-1].Seq
		}
	}
	return forward
}

// pageBackward reads conv's history of n messages as u with before_seq, limit a page, from
// the newest back, and returns it oldest first.
func pageBackward(t testing.TB, u *testUser, conv string, limit, n int) []events.Message {
	t.Helper()
	var backward []events.Message
	for before, more := int64(n+1), true; more; {
		var p restMsgPage
		u.do("GET", fmt.Sprintf("/v1/conversations/%s/messages?limit=%d&before_seq=%d", conv, limit, before), nil).OK(t, &p)
		backward = append(p.Messages, backward...)
		more = p.HasMore
		before = p.Messages[0].Seq
	}
	return backward
}

// ---------------------------------------------------------------------------------------
// 8. History windows

func TestHistoryWindows(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)
	for i := 1; i <= 7; i++ {
		u := alice
		if i%2 == 0 {
			u = bob
		}
		u.send(conv.ID, fmt.Sprint("m", i))
	}
	tests := []struct {
		query   string
		seqs    []int64
		hasMore bool
	}{
		{"", restRange(1, 7), false},
		{"limit=3", []int64{5, 6, 7}, true},
		{"before_seq=5&limit=3", []int64{2, 3, 4}, true},
		{"before_seq=4&limit=3", []int64{1, 2, 3}, false},
		{"before_seq=2&limit=3", []int64{1}, false},
		{"before_seq=1", []int64{}, false},
		{"after_seq=4&limit=2", []int64{5, 6}, true},
		{"after_seq=5&limit=2", []int64{6, 7}, false},
		{"after_seq=6&limit=2", []int64{7}, false},
		{"after_seq=0&limit=3", []int64{1, 2, 3}, true},
		{"after_seq=7", []int64{}, false},
		{"limit=7", restRange(1, 7), false},
		{"limit=200", restRange(1, 7), false},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			r := alice.do("GET", "/v1/conversations/"+conv.ID+"/messages?"+tt.query, nil)
			require.Equal(t, 200, r.Status, "%s", r.Body)
			require.NotContains(t, string(r.Body), `"messages":null`)
			var p restMsgPage
			r.JSON(t, &p)
			require.Equal(t, tt.seqs, restSeqs(p.Messages))
			require.Equal(t, tt.hasMore, p.HasMore)
			for _, m := range p.Messages {
				require.Equal(t, fmt.Sprint("m", m.Seq), m.Body)
				require.Equal(t, conv.ID, m.ConversationID)
			}
		})
	}
}

// ---------------------------------------------------------------------------------------
// 10. Edit and delete

func TestEditDeleteSenderOnlyAndIdempotent(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob).ID
	r := alice.do("POST", "/v1/conversations/"+conv+"/messages", map[string]any{"body": "original", "client_id": "c-1"})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var m events.Message
	r.JSON(t, &m)
	theirs := bob.send(conv, "bob's")
	path := "/v1/conversations/" + conv + "/messages/" + m.ID
	theirPath := "/v1/conversations/" + conv + "/messages/" + theirs.ID

	before := restSnapshot(t, in.Pool, conv)
	restRequireError(t, bob.do("PATCH", path, map[string]any{"body": "not mine"}), http.StatusForbidden, "not_sender")
	restRequireError(t, bob.do("DELETE", path, nil), http.StatusForbidden, "not_sender")
	restRequireError(t, alice.do("PATCH", theirPath, map[string]any{"body": "not mine"}), http.StatusForbidden, "not_sender")
	restRequireError(t, alice.do("DELETE", theirPath, nil), http.StatusForbidden, "not_sender")
	require.Equal(t, before, restSnapshot(t, in.Pool, conv))

	r = alice.do("PATCH", path, map[string]any{"body": "edited"})
	require.Equal(t, 200, r.Status, "%s", r.Body)
	restRequireMessageObject(t, r.Body)
	var edited events.Message
	r.JSON(t, &edited)
	require.Equal(t, m.ID, edited.ID)
	require.Equal(t, m.Seq, edited.Seq)
	require.Equal(t, "edited", edited.Body)
	require.NotNil(t, edited.EditedAt)
	require.Nil(t, edited.DeletedAt)
	require.Equal(t, m.ClientID, edited.ClientID)
	require.EqualValues(t, 1, restEventCount(t, in.Pool, conv, "message_updated"))

	r = alice.do("DELETE", path, nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	restRequireMessageObject(t, r.Body)
	var deleted events.Message
	r.JSON(t, &deleted)
	require.Equal(t, m.ID, deleted.ID)
	require.Equal(t, "", deleted.Body)
	require.NotNil(t, deleted.DeletedAt)
	require.EqualValues(t, 1, restEventCount(t, in.Pool, conv, "message_deleted"))

	afterDelete := restSnapshot(t, in.Pool, conv)
	restRequireError(t, alice.do("PATCH", path, map[string]any{"body": "resurrect"}), http.StatusConflict, "")
	restRequireError(t, bob.do("DELETE", path, nil), http.StatusForbidden, "not_sender")
	r = alice.do("DELETE", path, nil)
	require.Equal(t, 200, r.Status, "deleting again is idempotent: %s", r.Body)
	var again events.Message
	r.JSON(t, &again)
	require.Equal(t, deleted, again)
	require.Equal(t, afterDelete, restSnapshot(t, in.Pool, conv), "no second message_deleted event, no change")
	require.EqualValues(t, 1, restEventCount(t, in.Pool, conv, "message_deleted"))
	require.EqualValues(t, 1, restEventCount(t, in.Pool, conv, "message_updated"))

	// The message keeps its place in history, empty and marked deleted.
	var p restMsgPage
	bob.do("GET", "/v1/conversations/"+conv+"/messages", nil).OK(t, &p)
	require.Equal(t, []events.Message{deleted, theirs}, p.Messages)
}

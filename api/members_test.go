package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

// convEvent is an event of a stream as far as these tests look at it.
type convEvent struct {
	Type string
	Conv string // the conversation it belongs to
	Msg  string // a message event's message id
	Seq  int64
	User string // a member event's user
}

// readUntil reads s until the message stopID arrives and returns the events of conv
// before it, in order.
func readUntil(t *testing.T, s *stream, conv, stopID string) []convEvent {
	t.Helper()
	var out []convEvent
	deadline := time.Now().Add(wait)
	for {
		ev := s.next(time.Until(deadline))
		var d struct {
			ID             string `json:"id"`
			ConversationID string `json:"conversation_id"`
			Seq            int64  `json:"seq"`
			UserID         string `json:"user_id"`
		}
		_ = json.Unmarshal([]byte(ev.Data), &d)
		if ev.Type == "message" && d.ID == stopID {
			return out
		}
		if ev.Type == "conversation" {
			d.ConversationID = d.ID
		}
		if d.ConversationID == conv {
			out = append(out, convEvent{Type: ev.Type, Conv: conv, Msg: d.ID, Seq: d.Seq, User: d.UserID})
		}
	}
}

// pollUntil long-polls from cursor until the message stopID and returns the events of
// conv before it, in order.
func pollUntil(t *testing.T, in *instance, u *testUser, cursor, conv, stopID string) []convEvent {
	t.Helper()
	var out []convEvent
	for range 50 {
		var ans struct {
			Events []struct {
				Type string
				Data json.RawMessage
			}
			Cursor string
		}
		call(t, "GET", in.URL+"/v1/events/poll?timeout=5&cursor="+cursor, u.Token, nil).OK(t, &ans)
		for _, e := range ans.Events {
			var d struct {
				ID             string `json:"id"`
				ConversationID string `json:"conversation_id"`
				Seq            int64  `json:"seq"`
				UserID         string `json:"user_id"`
			}
			require.NoError(t, json.Unmarshal(e.Data, &d))
			if e.Type == "message" && d.ID == stopID {
				return out
			}
			if d.ConversationID == conv {
				out = append(out, convEvent{Type: e.Type, Conv: conv, Msg: d.ID, Seq: d.Seq, User: d.UserID})
			}
		}
		cursor = ans.Cursor
	}
	t.Fatal("the poll never reached the fence message")
	return nil
}

// seqsBefore returns the seqs of conv's messages whose events precede the removal of user
// in the log: exactly what the removed user must have received of them.
func seqsBefore(t *testing.T, in *instance, conv, user string) []int64 {
	t.Helper()
	rows, err := in.Pool.Query(context.Background(), `
		SELECT x.seq FROM events e JOIN messages x ON x.id = e.message_id
		WHERE e.conversation_id = $1 AND e.type = 'message'
		  AND (e.tx, e.id) < (SELECT tx, id FROM events WHERE conversation_id = $1 AND type = 'member_removed' AND user_id = $2)
		ORDER BY e.tx, e.id`, conv, user)
	require.NoError(t, err)
	var seqs []int64
	for rows.Next() {
		var s int64
		require.NoError(t, rows.Scan(&s))
		seqs = append(seqs, s)
	}
	require.NoError(t, rows.Err())
	return seqs
}

// requireCutAtRemoval checks one stream's events of the conversation: every message
// before the removal exactly once, in order, then the user's member_removed, then nothing.
func requireCutAtRemoval(t *testing.T, got []convEvent, want []int64, user string) {
	t.Helper()
	require.NotEmpty(t, got)
	last := got[len(got)-1]
	require.Equal(t, "member_removed", last.Type, "the removal is the last event of the conversation")
	require.Equal(t, user, last.User)
	var seqs []int64
	for _, e := range got[:len(got)-1] {
		require.NotEqual(t, "typing", e.Type, "typing events of the conversation only before the removal: none were sent then")
		if e.Type == "message" {
			seqs = append(seqs, e.Seq)
		}
	}
	require.Equal(t, want, seqs, "exactly the messages before the removal in the log")
}

// TestRemovedMemberGetsNothingOfTheConversationAfterRemoval removes a member of a group
// while 8 writers post on two instances, and checks the removed user's open streams on
// both instances, its REST calls, its unread counts and a resume from before the removal.
func TestRemovedMemberGetsNothingOfTheConversationAfterRemoval(t *testing.T) {
	a, b := newInstance(t), newInstance(t)
	victim := newUser(t, a, "victim")
	const writers, perWriter = 8, 30
	ws := make([]*testUser, writers)
	ids := []string{victim.ID}
	for i := range ws {
		ws[i] = newUser(t, []*instance{a, b}[i%2], fmt.Sprintf("writer%d", i))
		ids = append(ids, ws[i].ID)
	}
	conv := serverConversation(t, a, map[string]any{"kind": "group", "participant_ids": ids}).ID
	// A conversation the victim stays in: its message, sent after everything else, tells
	// that a stream has been given everything before it.
	fence := ws[0].direct(victim).ID
	streams := map[string]*stream{}
	var cursor string
	streams["a"], cursor = openReady(t, a.URL+"/v1/events", victim.Token, nil)
	streams["b"], _ = openReady(t, b.URL+"/v1/events", victim.Token, nil)
	victim.send(conv, "before the writers") // the victim took part, and read nothing after

	postWhile(t, ws, conv, perWriter, func() {
		r := asServer(t, b, "DELETE", "/conversations/"+conv+"/members/"+victim.ID, nil)
		require.Equal(t, http.StatusNoContent, r.Status, "%s", r.Body)
	})
	// Typing after the removal reaches the members left, never the victim.
	require.Equal(t, http.StatusNoContent, ws[1].do("POST", "/v1/conversations/"+conv+"/typing", map[string]any{"typing": true}).Status)
	stop := ws[0].send(fence, "fence")

	want := seqsBefore(t, a, conv, victim.ID)
	require.Less(t, len(want), writers*perWriter+1, "the removal happened while the writers posted")
	require.Greater(t, len(want), 1)
	for name, s := range streams {
		t.Run("open stream on "+name, func(t *testing.T) { requireCutAtRemoval(t, readUntil(t, s, conv, stop.ID), want, victim.ID) })
	}
	for _, in := range []*instance{a, b} {
		s, _ := openReady(t, in.URL+"/v1/events", victim.Token, map[string]string{"Last-Event-ID": cursor})
		requireCutAtRemoval(t, readUntil(t, s, conv, stop.ID), want, victim.ID)
	}

	requireCutAtRemoval(t, pollUntil(t, b, victim, cursor, conv, stop.ID), want, victim.ID)

	requireGoneFor(t, victim, conv)
}

// postWhile has every writer post perWriter messages into conv at once, and calls during
// once the first writer is a third of the way through.
func postWhile(t *testing.T, ws []*testUser, conv string, perWriter int, during func()) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(ws))
	halfway := make(chan struct{})
	for i, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range perWriter {
				if _, err := w.trySend(conv, fmt.Sprintf("%s #%d", w.ID, n)); err != nil {
					errs <- err
					return
				}
				if i == 0 && n == perWriter/3 {
					close(halfway)
				}
			}
		}()
	}
	select {
	case <-halfway:
		during()
	case err := <-errs:
		require.NoError(t, err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// requireGoneFor checks that conv is 404 to u everywhere and gone from its unread counts
// and its list.
func requireGoneFor(t *testing.T, u *testUser, conv string) {
	t.Helper()
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/conversations/" + conv},
		{"GET", "/v1/conversations/" + conv + "/messages"},
		{"POST", "/v1/conversations/" + conv + "/messages"},
		{"POST", "/v1/conversations/" + conv + "/read"},
		{"POST", "/v1/conversations/" + conv + "/typing"},
		{"DELETE", "/v1/conversations/" + conv + "/members/me"},
	} {
		body := map[string]any{"body": "x", "seq": 1, "typing": true}
		require.Equal(t, http.StatusNotFound, u.do(c.method, c.path, body).Status, "%s %s", c.method, c.path)
	}
	var unread struct {
		Total         int64
		Conversations []struct{ ID string }
	}
	u.do("GET", "/v1/unread", nil).OK(t, &unread)
	for _, c := range unread.Conversations {
		require.NotEqual(t, conv, c.ID)
	}
	var list struct{ Conversations []events.Conversation }
	u.do("GET", "/v1/conversations", nil).OK(t, &list)
	for _, c := range list.Conversations {
		require.NotEqual(t, conv, c.ID)
	}
}

func TestMembersJoinAndLeave(t *testing.T) {
	in := newInstance(t)
	alice, bob, carol, dave := newUser(t, in, "alice"), newUser(t, in, "bob"), newUser(t, in, "carol"), newUser(t, in, "dave")
	conv := serverConversation(t, in, map[string]any{"kind": "group", "participant_ids": []string{alice.ID, bob.ID}, "history": "joined"}).ID
	alice.send(conv, "before carol and dave")
	aliceStream, _ := openReady(t, in.URL+"/v1/events", alice.Token, nil)
	carolStream, _ := openReady(t, in.URL+"/v1/events", carol.Token, nil)

	// carol joins with the conversation's history setting (joined), dave with full.
	r := asServer(t, in, "POST", "/conversations/"+conv+"/members", map[string]any{"user_ids": []string{carol.ID}})
	var after events.Conversation
	r.OK(t, &after)
	require.Len(t, after.Participants, 3)
	asServer(t, in, "POST", "/conversations/"+conv+"/members", map[string]any{"user_ids": []string{dave.ID, carol.ID}, "history": "full"}).OK(t, &after)
	require.Len(t, after.Participants, 4)
	// The new member alone gets the conversation object, then everyone its member_added.
	joined := decode[events.Conversation](t, carolStream.nextOf("conversation", wait).Data)
	require.Equal(t, conv, joined.ID)
	// Rendered when read: dave, added right after, may be among the participants already.
	require.Contains(t, joined.Participants, events.Participant{ID: carol.ID})
	for _, s := range []*stream{aliceStream, carolStream} {
		got := decode[events.MemberChange](t, s.nextOf("member_added", wait).Data)
		require.Equal(t, events.MemberChange{ConversationID: conv, UserID: carol.ID}, got)
	}
	require.Equal(t, dave.ID, decode[events.MemberChange](t, carolStream.nextOf("member_added", wait).Data).UserID)
	for ev := aliceStream.next(wait); ev.Type != "member_added"; ev = aliceStream.next(wait) {
		require.NotEqual(t, "conversation", ev.Type, "a member added later is announced by member_added alone")
	}

	page := func(u *testUser) []events.Message {
		var p struct{ Messages []events.Message }
		u.do("GET", "/v1/conversations/"+conv+"/messages", nil).OK(t, &p)
		return p.Messages
	}
	require.Empty(t, page(carol), "history 'joined': nothing from before")
	require.Len(t, page(dave), 1, "history 'full': everything")
	var seen events.Conversation
	carol.do("GET", "/v1/conversations/"+conv, nil).OK(t, &seen)
	require.Nil(t, seen.LastMessage)
	require.Zero(t, seen.UnreadCount)
	dave.do("GET", "/v1/conversations/"+conv, nil).OK(t, &seen)
	require.Zero(t, seen.UnreadCount, "a new member has nothing unread from before it joined")
	m := bob.send(conv, "welcome")
	require.Equal(t, m.ID, decode[events.Message](t, carolStream.nextOf("message", wait).Data).ID)
	require.Len(t, page(carol), 1)

	// bob leaves; everyone left is told who left and by whom.
	require.Equal(t, http.StatusNoContent, bob.do("DELETE", "/v1/conversations/"+conv+"/members/me", nil).Status)
	left := decode[events.MemberChange](t, aliceStream.nextOf("member_removed", wait).Data)
	require.Equal(t, bob.ID, left.UserID)
	require.Equal(t, bob.ID, *left.By)
	require.Equal(t, http.StatusNotFound, bob.do("DELETE", "/v1/conversations/"+conv+"/members/me", nil).Status)
	require.Equal(t, http.StatusNotFound, asServer(t, in, "DELETE", "/conversations/"+conv+"/members/"+bob.ID, nil).Status)

	// Direct conversations keep their two; outsiders and unknown ids learn nothing.
	direct := alice.direct(bob).ID
	require.Equal(t, http.StatusUnprocessableEntity, alice.do("DELETE", "/v1/conversations/"+direct+"/members/me", nil).Status)
	require.Equal(t, http.StatusNotFound, carol.do("DELETE", "/v1/conversations/"+direct+"/members/me", nil).Status)
	require.Equal(t, http.StatusUnprocessableEntity, asServer(t, in, "POST", "/conversations/"+direct+"/members", map[string]any{"user_ids": []string{carol.ID}}).Status)
	require.Equal(t, http.StatusNotFound, asServer(t, in, "POST", "/conversations/"+randomUUID()+"/members", map[string]any{"user_ids": []string{carol.ID}}).Status)
	for _, body := range []map[string]any{{"user_ids": []string{}}, {"user_ids": []string{carol.ID}, "history": "some"}} {
		require.Equal(t, http.StatusUnprocessableEntity, asServer(t, in, "POST", "/conversations/"+conv+"/members", body).Status)
	}
}

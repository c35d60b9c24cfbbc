package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

// One test per rule of API.md that nothing else exercised (issue 14): black box, over real
// HTTP, against the real database.

// nextDurable returns the stream's next event that carries an id, skipping ephemeral ones
// (presence, typing), which may interleave at any time.
func nextDurable(s *stream) sseEvent {
	s.t.Helper()
	deadline := time.Now().Add(wait)
	for {
		if ev := s.next(time.Until(deadline)); ev.HasID {
			return ev
		}
	}
}

func TestContractReadEventsOnTheStream(t *testing.T) {
	t.Parallel()
	a, b := newInstance(t), newInstance(t)
	alice, bob := newUser(t, a, "alice"), newUser(t, b, "bob")
	conv := alice.direct(bob)
	alice.send(conv.ID, "one")
	alice.send(conv.ID, "two")
	aliceStream, from := openReady(t, a.URL+"/v1/events", alice.Token, nil)
	bobStream, _ := openReady(t, b.URL+"/v1/events", bob.Token, nil)

	r := bob.do("POST", "/v1/conversations/"+conv.ID+"/read", map[string]any{"seq": 2})
	require.Equal(t, 204, r.Status, "%s", r.Body)
	want := fmt.Sprintf(`{"conversation_id":%q,"user_id":%q,"seq":2}`, conv.ID, bob.ID)
	// The other participant (on the other instance) and the reader's own streams alike.
	// (A stream's start is its instance's head, which may lag the commits above, so their
	// events may still come first.)
	for _, s := range []*stream{aliceStream, bobStream} {
		require.JSONEq(t, want, s.nextOf("read", wait).Data)
	}

	// Never backwards: an older seq is accepted and moves nothing, so it emits nothing; the
	// next durable event is the message sent after it.
	r = bob.do("POST", "/v1/conversations/"+conv.ID+"/read", map[string]any{"seq": 1})
	require.Equal(t, 204, r.Status, "%s", r.Body)
	m := alice.send(conv.ID, "three")
	ev := nextDurable(aliceStream)
	require.Equal(t, "message", ev.Type, ev.Data)
	require.Equal(t, m.ID, decode[events.Message](t, ev.Data).ID)

	// A read is durable: a stream resuming from before it replays it.
	s, _ := openReady(t, a.URL+"/v1/events", alice.Token, map[string]string{"Last-Event-ID": from})
	require.JSONEq(t, want, s.nextOf("read", wait).Data)
}

func TestContractEditAndDeleteEventsCarryTheMessage(t *testing.T) {
	t.Parallel()
	a, b := newInstance(t), newInstance(t)
	alice, bob := newUser(t, a, "alice"), newUser(t, b, "bob")
	conv := alice.direct(bob)
	m := alice.send(conv.ID, "original")
	bobStream, _ := openReady(t, b.URL+"/v1/events", bob.Token, nil)
	aliceStream, _ := openReady(t, a.URL+"/v1/events", alice.Token, nil)
	path := "/v1/conversations/" + conv.ID + "/messages/" + m.ID

	// The first event awaited is skipped to (the streams may start before the setup's
	// events, see above); after it, events are taken strictly in order.
	first := true
	for _, step := range []struct {
		method, event string
		body          any
	}{
		{"PATCH", "message_updated", map[string]any{"body": "edited"}},
		{"DELETE", "message_deleted", nil},
	} {
		r := alice.do(step.method, path, step.body)
		require.Equal(t, 200, r.Status, "%s", r.Body)
		got := decode[events.Message](t, string(r.Body))
		require.Equal(t, m.ID, got.ID)
		// Both participants get the event, its data exactly the message object the
		// request answered with.
		for _, s := range []*stream{bobStream, aliceStream} {
			var ev sseEvent
			if first {
				ev = s.nextOf(step.event, wait)
			} else {
				ev = nextDurable(s)
			}
			require.Equal(t, step.event, ev.Type, ev.Data)
			require.JSONEq(t, string(r.Body), ev.Data)
		}
		first = false
	}
	var deleted events.Message
	r := bob.do("GET", "/v1/conversations/"+conv.ID+"/messages", nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	var page restMsgPage
	r.JSON(t, &page)
	require.Len(t, page.Messages, 1)
	deleted = page.Messages[0]
	require.Empty(t, deleted.Body)
	require.NotNil(t, deleted.EditedAt, "the delete keeps edited_at")
	require.NotNil(t, deleted.DeletedAt)
}

// contractRequireSameConversation checks that a conversation event's data is the
// conversation object as the creator was answered: every field equal (a new conversation
// has nothing sent and nothing read), the same participants with the same names. Only the
// online flags may differ, as they are looked up when the event is rendered.
func contractRequireSameConversation(t *testing.T, answer []byte, data string) {
	t.Helper()
	got := restRequireConversationObject(t, json.RawMessage(data))
	want := restRequireConversationObject(t, answer)
	for k := range want {
		if k != "participants" {
			require.JSONEq(t, string(want[k]), string(got[k]), "field %s", k)
		}
	}
	type who struct {
		ID   string  `json:"id"`
		Name *string `json:"name"`
	}
	var gotP, wantP []who
	require.NoError(t, json.Unmarshal(got["participants"], &gotP))
	require.NoError(t, json.Unmarshal(want["participants"], &wantP))
	require.ElementsMatch(t, wantP, gotP)
}

func TestContractConversationEventsGoToEveryParticipantCreatorIncluded(t *testing.T) {
	t.Parallel()
	a, b := newInstance(t), newInstance(t)
	aliceID := uniq("alice")
	tok, err := SignHS256(testSecret, aliceID, "Alice", time.Hour, time.Now())
	require.NoError(t, err)
	alice := &testUser{t: t, ID: aliceID, Token: tok, URL: a.URL}
	bob, carol := newUser(t, b, "bob"), newUser(t, a, "carol").on(b)
	// alice signs in before anything is created, so her name is known.
	require.Equal(t, 200, alice.do("GET", "/v1/unread", nil).Status)
	aliceStream, _ := openReady(t, a.URL+"/v1/events", alice.Token, nil)
	bobStream, _ := openReady(t, b.URL+"/v1/events", bob.Token, nil)
	carolStream, _ := openReady(t, b.URL+"/v1/events", carol.Token, nil)

	r := alice.do("POST", "/v1/conversations", map[string]any{"participant_ids": []string{bob.ID, carol.ID}, "title": "Plans"})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	for _, s := range []*stream{aliceStream, bobStream, carolStream} {
		ev := nextDurable(s)
		require.Equal(t, "conversation", ev.Type, ev.Data)
		contractRequireSameConversation(t, r.Body, ev.Data)
	}

	// A direct conversation is announced to both, its creator included, the first time only.
	r = bob.do("POST", "/v1/conversations", map[string]any{"participant_id": alice.ID})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	direct := decode[events.Conversation](t, string(r.Body))
	for _, s := range []*stream{aliceStream, bobStream} {
		ev := nextDurable(s)
		require.Equal(t, "conversation", ev.Type, ev.Data)
		contractRequireSameConversation(t, r.Body, ev.Data)
	}
	for _, u := range []*testUser{alice, bob} {
		other := bob.ID
		if u == bob {
			other = alice.ID
		}
		r := u.do("POST", "/v1/conversations", map[string]any{"participant_id": other})
		require.Equal(t, 200, r.Status, "%s", r.Body)
	}
	// Events are delivered in log order: had the repeats been announced, their events would
	// come before this message's.
	m := bob.send(direct.ID, "after the repeats")
	for _, s := range []*stream{aliceStream, bobStream} {
		ev := nextDurable(s)
		require.Equal(t, "message", ev.Type, ev.Data)
		require.Equal(t, m.ID, decode[events.Message](t, ev.Data).ID)
	}
}

// contractOpening reads a stream's raw bytes up to the end of its ready event and returns
// them as blocks (the lines between blank lines), the way they went over the wire.
func contractOpening(t *testing.T, url, tok string, header map[string]string) [][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tok)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, 200, res.StatusCode)
	rd := bufio.NewReader(res.Body)
	var blocks [][]string
	var block []string
	for {
		l, err := rd.ReadString('\n')
		require.NoError(t, err, "the stream ended before its ready event; read %q", blocks)
		l = strings.TrimRight(l, "\r\n")
		if l != "" {
			block = append(block, l)
			continue
		}
		if block == nil {
			continue
		}
		blocks = append(blocks, block)
		if contractHasLine(block, "event: ready") {
			return blocks
		}
		block = nil
	}
}

func contractHasLine(block []string, line string) bool {
	for _, l := range block {
		if l == line {
			return true
		}
	}
	return false
}

func TestContractReadyCarriesNoID(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	bob := newUser(t, in, "bob")
	s, cursor := openReady(t, in.URL+"/v1/events", bob.Token, nil)
	s.close()
	for _, tc := range []struct {
		name   string
		header map[string]string
	}{
		{"fresh", nil},
		{"resumed", map[string]string{"Last-Event-ID": cursor}},
		{"bad cursor", map[string]string{"Last-Event-ID": "bogus"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			blocks := contractOpening(t, in.URL+"/v1/events", bob.Token, tc.header)
			ready := blocks[len(blocks)-1]
			for _, l := range ready {
				field, _, _ := strings.Cut(l, ":")
				require.NotEqual(t, "id", field, "the ready event's own block has an id field: %q", ready)
			}
			require.True(t, strings.HasPrefix(ready[len(ready)-1], "data: "), "%q", ready)
		})
	}
}

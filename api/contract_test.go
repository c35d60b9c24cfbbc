package api

// One test per rule of API.md that nothing else exercised (issue 14): black box, over real
// HTTP, against the real database.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

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

package api

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

// ---------------------------------------------------------------------------------------
// 7. Bad input

// jsonCT is the Content-Type of a JSON request.
const jsonCT = "application/json"

// badInputFixture is alice's conversation with bob holding one message, the paths of its
// routes and the bodies the bad-input table sends to them.
type badInputFixture struct {
	alice, bob                    *testUser
	conv                          events.Conversation
	msgs, msg, read, typing       string
	j                             func(v any) []byte
	oversized, tooLong, tooLongMB []byte
}

func newBadInputFixture(t *testing.T, in *instance) badInputFixture {
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)
	m := alice.send(conv.ID, "original")
	msgs := "/v1/conversations/" + conv.ID + "/messages"
	j := func(v any) []byte { return restMarshal(t, v) }
	return badInputFixture{
		alice: alice, bob: bob, conv: conv,
		msgs: msgs, msg: msgs + "/" + m.ID,
		read: "/v1/conversations/" + conv.ID + "/read", typing: "/v1/conversations/" + conv.ID + "/typing",
		j:         j,
		oversized: j(map[string]any{"body": strings.Repeat("a", 64<<10)}),
		tooLong:   j(map[string]any{"body": strings.Repeat("a", 4097)}),
		tooLongMB: j(map[string]any{"body": strings.Repeat("é", 2049)}), // 2049 runes, 4098 bytes
	}
}

// badInputCase is one request that must be refused with status (and code, and a message
// containing contains, where they are not "").
type badInputCase struct {
	name, method, path, contentType string
	body                            []byte
	status                          int
	code, contains                  string
}

// badMessagePosts are sends of a message that must be refused.
func badMessagePosts(f badInputFixture) []badInputCase {
	return []badInputCase{
		{"oversized request", "POST", f.msgs, jsonCT, f.oversized, 413, "request_too_large", ""},
		{"malformed JSON", "POST", f.msgs, jsonCT, []byte(`{"body":`), 400, "", ""},
		{"not an object", "POST", f.msgs, jsonCT, []byte(`["hi"]`), 400, "", ""},
		{"empty request body", "POST", f.msgs, jsonCT, []byte{}, 400, "", ""},
		{"invalid UTF-8", "POST", f.msgs, jsonCT, []byte("{\"body\":\"\xff\xfe\"}"), 400, "invalid_utf8", ""},
		{"invalid UTF-8 in client_id", "POST", f.msgs, jsonCT, []byte("{\"body\":\"hi\",\"client_id\":\"\xc3\"}"), 400, "invalid_utf8", ""},
		{"trailing garbage", "POST", f.msgs, jsonCT, []byte(`{"body":"hi"} x`), 400, "", ""},
		{"two objects", "POST", f.msgs, jsonCT, []byte(`{"body":"hi"}{"body":"again"}`), 400, "", ""},
		{"text/plain", "POST", f.msgs, "text/plain", f.j(map[string]any{"body": "hi"}), 415, "", "Content-Type: application/json"},
		{"form", "POST", f.msgs, "application/x-www-form-urlencoded", []byte("body=hi"), 415, "", "Content-Type: application/json"},
		{"no Content-Type", "POST", f.msgs, "", f.j(map[string]any{"body": "hi"}), 415, "", "Content-Type: application/json"},
		{"body 4097 bytes", "POST", f.msgs, jsonCT, f.tooLong, 422, "body_too_long", ""},
		{"body 4098 bytes in 2049 characters", "POST", f.msgs, jsonCT, f.tooLongMB, 422, "body_too_long", ""},
		{"whitespace-only body", "POST", f.msgs, jsonCT, f.j(map[string]any{"body": " \n\t\r "}), 422, "", ""},
		{"empty body", "POST", f.msgs, jsonCT, f.j(map[string]any{"body": ""}), 422, "", ""},
		{"missing body", "POST", f.msgs, jsonCT, []byte(`{}`), 422, "", ""},
		{"body is a number", "POST", f.msgs, jsonCT, []byte(`{"body": 5}`), 400, "", ""},
		{"client_id is a number", "POST", f.msgs, jsonCT, []byte(`{"body":"hi","client_id":5}`), 400, "", ""},
		{"client_id of 65 characters", "POST", f.msgs, jsonCT, f.j(map[string]any{"body": "hi", "client_id": strings.Repeat("c", 65)}), 422, "", ""},
		{"NUL in body", "POST", f.msgs, jsonCT, []byte(`{"body":"\u0000"}`), 422, "", ""},
		{"NUL inside body", "POST", f.msgs, jsonCT, []byte(`{"body":"a\u0000b"}`), 422, "", ""},
		{"NUL in client_id", "POST", f.msgs, jsonCT, []byte(`{"body":"hi","client_id":"a\u0000"}`), 422, "", ""},
		{"unknown conversation", "POST", "/v1/conversations/" + restRandomUUID() + "/messages", jsonCT, f.j(map[string]any{"body": "hi"}), 404, "not_found", ""},
	}
}

// badHistoryQueries are reads of the history that must be refused.
func badHistoryQueries(f badInputFixture) []badInputCase {
	return []badInputCase{
		{"GET limit=0", "GET", f.msgs + "?limit=0", "", nil, 400, "", ""},
		{"GET limit=201", "GET", f.msgs + "?limit=201", "", nil, 400, "", ""},
		{"GET limit=abc", "GET", f.msgs + "?limit=abc", "", nil, 400, "", ""},
		{"GET limit=-1", "GET", f.msgs + "?limit=-1", "", nil, 400, "", ""},
		{"GET before_seq with after_seq", "GET", f.msgs + "?before_seq=5&after_seq=1", "", nil, 400, "", ""},
		{"GET before_seq=abc", "GET", f.msgs + "?before_seq=abc", "", nil, 400, "", ""},
		{"GET unknown conversation", "GET", "/v1/conversations/" + restRandomUUID() + "/messages", "", nil, 404, "not_found", ""},
	}
}

// badMessageEdits are edits and deletions of a message that must be refused.
func badMessageEdits(f badInputFixture) []badInputCase {
	return []badInputCase{
		{"PATCH oversized", "PATCH", f.msg, jsonCT, f.oversized, 413, "request_too_large", ""},
		{"PATCH malformed", "PATCH", f.msg, jsonCT, []byte(`{"body"`), 400, "", ""},
		{"PATCH invalid UTF-8", "PATCH", f.msg, jsonCT, []byte("{\"body\":\"\xff\"}"), 400, "invalid_utf8", ""},
		{"PATCH trailing garbage", "PATCH", f.msg, jsonCT, []byte(`{"body":"x"}}`), 400, "", ""},
		{"PATCH text/plain", "PATCH", f.msg, "text/plain", f.j(map[string]any{"body": "x"}), 415, "", "Content-Type: application/json"},
		{"PATCH no Content-Type", "PATCH", f.msg, "", f.j(map[string]any{"body": "x"}), 415, "", ""},
		{"PATCH body 4097 bytes", "PATCH", f.msg, jsonCT, f.tooLong, 422, "body_too_long", ""},
		{"PATCH whitespace-only", "PATCH", f.msg, jsonCT, f.j(map[string]any{"body": "   "}), 422, "", ""},
		{"PATCH missing body", "PATCH", f.msg, jsonCT, []byte(`{}`), 422, "", ""},
		{"PATCH body is a number", "PATCH", f.msg, jsonCT, []byte(`{"body":5}`), 400, "", ""},
		{"PATCH NUL", "PATCH", f.msg, jsonCT, []byte(`{"body":"\u0000"}`), 422, "", ""},
		{"PATCH unknown message", "PATCH", f.msgs + "/" + restRandomUUID(), jsonCT, f.j(map[string]any{"body": "x"}), 404, "not_found", ""},
		{"DELETE unknown message", "DELETE", f.msgs + "/" + restRandomUUID(), "", nil, 404, "not_found", ""},
	}
}

// badConversationInput are creations and listings of conversations that must be refused.
func badConversationInput(f badInputFixture) []badInputCase {
	return []badInputCase{
		{"conversation with yourself", "POST", "/v1/conversations", jsonCT, f.j(map[string]any{"participant_id": f.alice.ID}), 422, "", ""},
		{"group of nobody", "POST", "/v1/conversations", jsonCT, f.j(map[string]any{"participant_ids": []string{}}), 422, "", ""},
		{"group of only yourself", "POST", "/v1/conversations", jsonCT, f.j(map[string]any{"participant_ids": []string{f.alice.ID}}), 422, "", ""},
		{"group of yourself twice", "POST", "/v1/conversations", jsonCT, f.j(map[string]any{"participant_ids": []string{f.alice.ID, f.alice.ID}}), 422, "", ""},
		{"both participant_id and participant_ids", "POST", "/v1/conversations", jsonCT, f.j(map[string]any{"participant_id": f.bob.ID, "participant_ids": []string{f.bob.ID}}), 422, "", ""},
		{"neither participant_id nor participant_ids", "POST", "/v1/conversations", jsonCT, []byte(`{}`), 422, "", ""},
		{"empty participant_id", "POST", "/v1/conversations", jsonCT, f.j(map[string]any{"participant_id": ""}), 422, "", ""},
		{"control character in participant_id", "POST", "/v1/conversations", jsonCT, f.j(map[string]any{"participant_id": "bo\u0001b"}), 422, "", ""},
		{"NUL in participant_ids", "POST", "/v1/conversations", jsonCT, f.j(map[string]any{"participant_ids": []string{"x\u0000"}}), 422, "", ""},
		{"participant_id over 255 bytes", "POST", "/v1/conversations", jsonCT, f.j(map[string]any{"participant_id": strings.Repeat("p", 256)}), 422, "", ""},
		{"participant_id is a number", "POST", "/v1/conversations", jsonCT, []byte(`{"participant_id":5}`), 400, "", ""},
		{"title too long", "POST", "/v1/conversations", jsonCT, f.j(map[string]any{"participant_ids": []string{f.bob.ID}, "title": strings.Repeat("t", 201)}), 422, "", ""},
		{"conversation text/plain", "POST", "/v1/conversations", "text/plain", f.j(map[string]any{"participant_id": f.bob.ID}), 415, "", "Content-Type: application/json"},
		{"conversation malformed", "POST", "/v1/conversations", jsonCT, []byte(`{"participant_id":`), 400, "", ""},
		{"conversations limit=0", "GET", "/v1/conversations?limit=0", "", nil, 400, "", ""},
	}
}

// badReadInput are read marks that must be refused.
func badReadInput(f badInputFixture) []badInputCase {
	return []badInputCase{
		{"read negative seq", "POST", f.read, jsonCT, []byte(`{"seq":-1}`), 422, "", ""},
		{"read missing seq", "POST", f.read, jsonCT, []byte(`{}`), 422, "", ""},
		{"read seq is a string", "POST", f.read, jsonCT, []byte(`{"seq":"3"}`), 400, "", ""},
		{"read seq is a fraction", "POST", f.read, jsonCT, []byte(`{"seq":1.5}`), 400, "", ""},
		{"read text/plain", "POST", f.read, "text/plain", []byte(`{"seq":1}`), 415, "", ""},
		{"read malformed", "POST", f.read, jsonCT, []byte(`{"seq":1`), 400, "", ""},
		{"read unknown conversation", "POST", "/v1/conversations/" + restRandomUUID() + "/read", jsonCT, []byte(`{"seq":1}`), 404, "not_found", ""},
	}
}

// badTypingInput are typing notices that must be refused.
func badTypingInput(f badInputFixture) []badInputCase {
	return []badInputCase{
		{"typing missing", "POST", f.typing, jsonCT, []byte(`{}`), 422, "", ""},
		{"typing is a string", "POST", f.typing, jsonCT, []byte(`{"typing":"yes"}`), 400, "", ""},
		{"typing text/plain", "POST", f.typing, "text/plain", []byte(`{"typing":true}`), 415, "", ""},
	}
}

// TestBadInputTable sends every refused request of the tables above, then the accepted
// edges next to them.
func TestBadInputTable(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	f := newBadInputFixture(t, in)
	alice, conv, msgs, msg, j := f.alice, f.conv, f.msgs, f.msg, f.j
	var tests []badInputCase
	for _, table := range []func(badInputFixture) []badInputCase{
		badMessagePosts, badHistoryQueries, badMessageEdits, badConversationInput, badReadInput, badTypingInput,
	} {
		tests = append(tests, table(f)...)
	}
	memberships := func() int64 {
		return restCount(t, in.Pool, `SELECT count(*) FROM members WHERE user_id = $1`, alice.ID)
	}
	before, beforeMembers := restSnapshot(t, in.Pool, conv.ID), memberships()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := restCall(t, tt.method, in.URL+tt.path, alice.Token, tt.contentType, tt.body)
			e := restRequireError(t, r, tt.status, tt.code)
			if tt.contains != "" {
				require.Contains(t, e.Error.Message, tt.contains)
			}
			require.Equal(t, before, restSnapshot(t, in.Pool, conv.ID), "a rejected request changed the conversation")
			require.Equal(t, beforeMembers, memberships(), "a rejected request created a conversation")
		})
	}

	// The edges that are accepted, stored exactly as sent.
	accepted := []struct {
		name, contentType string
		body              []byte
		want              string
	}{
		{"exactly 4096 bytes", jsonCT, j(map[string]any{"body": strings.Repeat("a", 4096)}), strings.Repeat("a", 4096)},
		{"exactly 4096 bytes in 2048 characters", jsonCT, j(map[string]any{"body": strings.Repeat("é", 2048)}), strings.Repeat("é", 2048)},
		{"surrounding whitespace kept", jsonCT, j(map[string]any{"body": "  hi \n"}), "  hi \n"},
		{"client_id of 64 characters", jsonCT, j(map[string]any{"body": "keyed", "client_id": strings.Repeat("c", 64)}), "keyed"},
		{"charset parameter", "application/json; charset=utf-8", j(map[string]any{"body": "charset"}), "charset"},
		{"trailing whitespace after the object", jsonCT, []byte("{\"body\":\"ws\"}\r\n \t"), "ws"},
	}
	for _, a := range accepted {
		t.Run("accepted "+a.name, func(t *testing.T) {
			r := restCall(t, "POST", in.URL+msgs, alice.Token, a.contentType, a.body)
			require.Equal(t, 201, r.Status, "%s", r.Body)
			var got events.Message
			r.JSON(t, &got)
			require.Equal(t, a.want, got.Body)
			var stored string
			require.NoError(t, in.Pool.QueryRow(context.Background(), `SELECT body FROM messages WHERE id = $1`, got.ID).Scan(&stored))
			require.Equal(t, a.want, stored)
		})
	}
	r := restCall(t, "PATCH", in.URL+msg, alice.Token, jsonCT, j(map[string]any{"body": strings.Repeat("z", 4096)}))
	require.Equal(t, 200, r.Status, "PATCH of exactly 4096 bytes: %s", r.Body)
}

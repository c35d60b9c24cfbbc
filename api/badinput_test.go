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

func TestBadInputTable(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)
	m := alice.send(conv.ID, "original")
	msgs := "/v1/conversations/" + conv.ID + "/messages"
	msg := msgs + "/" + m.ID
	read := "/v1/conversations/" + conv.ID + "/read"
	typing := "/v1/conversations/" + conv.ID + "/typing"
	const js = "application/json"
	j := func(v any) []byte { return restMarshal(t, v) }
	oversized := j(map[string]any{"body": strings.Repeat("a", 64<<10)})
	tooLong := j(map[string]any{"body": strings.Repeat("a", 4097)})
	tooLongMB := j(map[string]any{"body": strings.Repeat("é", 2049)}) // 2049 runes, 4098 bytes

	type tc struct {
		name, method, path, contentType string
		body                            []byte
		status                          int
		code, contains                  string
	}
	tests := []tc{
		{"oversized request", "POST", msgs, js, oversized, 413, "request_too_large", ""},
		{"malformed JSON", "POST", msgs, js, []byte(`{"body":`), 400, "", ""},
		{"not an object", "POST", msgs, js, []byte(`["hi"]`), 400, "", ""},
		{"empty request body", "POST", msgs, js, []byte{}, 400, "", ""},
		{"invalid UTF-8", "POST", msgs, js, []byte("{\"body\":\"\xff\xfe\"}"), 400, "invalid_utf8", ""},
		{"invalid UTF-8 in client_id", "POST", msgs, js, []byte("{\"body\":\"hi\",\"client_id\":\"\xc3\"}"), 400, "invalid_utf8", ""},
		{"trailing garbage", "POST", msgs, js, []byte(`{"body":"hi"} x`), 400, "", ""},
		{"two objects", "POST", msgs, js, []byte(`{"body":"hi"}{"body":"again"}`), 400, "", ""},
		{"text/plain", "POST", msgs, "text/plain", j(map[string]any{"body": "hi"}), 415, "", "Content-Type: application/json"},
		{"form", "POST", msgs, "application/x-www-form-urlencoded", []byte("body=hi"), 415, "", "Content-Type: application/json"},
		{"no Content-Type", "POST", msgs, "", j(map[string]any{"body": "hi"}), 415, "", "Content-Type: application/json"},
		{"body 4097 bytes", "POST", msgs, js, tooLong, 422, "body_too_long", ""},
		{"body 4098 bytes in 2049 characters", "POST", msgs, js, tooLongMB, 422, "body_too_long", ""},
		{"whitespace-only body", "POST", msgs, js, j(map[string]any{"body": " \n\t\r "}), 422, "", ""},
		{"empty body", "POST", msgs, js, j(map[string]any{"body": ""}), 422, "", ""},
		{"missing body", "POST", msgs, js, []byte(`{}`), 422, "", ""},
		{"body is a number", "POST", msgs, js, []byte(`{"body": 5}`), 400, "", ""},
		{"client_id is a number", "POST", msgs, js, []byte(`{"body":"hi","client_id":5}`), 400, "", ""},
		{"client_id of 65 characters", "POST", msgs, js, j(map[string]any{"body": "hi", "client_id": strings.Repeat("c", 65)}), 422, "", ""},
		{"NUL in body", "POST", msgs, js, []byte(`{"body":"\u0000"}`), 422, "", ""},
		{"NUL inside body", "POST", msgs, js, []byte(`{"body":"a\u0000b"}`), 422, "", ""},
		{"NUL in client_id", "POST", msgs, js, []byte(`{"body":"hi","client_id":"a\u0000"}`), 422, "", ""},
		{"unknown conversation", "POST", "/v1/conversations/" + restRandomUUID() + "/messages", js, j(map[string]any{"body": "hi"}), 404, "not_found", ""},

		{"GET limit=0", "GET", msgs + "?limit=0", "", nil, 400, "", ""},
		{"GET limit=201", "GET", msgs + "?limit=201", "", nil, 400, "", ""},
		{"GET limit=abc", "GET", msgs + "?limit=abc", "", nil, 400, "", ""},
		{"GET limit=-1", "GET", msgs + "?limit=-1", "", nil, 400, "", ""},
		{"GET before_seq with after_seq", "GET", msgs + "?before_seq=5&after_seq=1", "", nil, 400, "", ""},
		{"GET before_seq=abc", "GET", msgs + "?before_seq=abc", "", nil, 400, "", ""},
		{"GET unknown conversation", "GET", "/v1/conversations/" + restRandomUUID() + "/messages", "", nil, 404, "not_found", ""},

		{"PATCH oversized", "PATCH", msg, js, oversized, 413, "request_too_large", ""},
		{"PATCH malformed", "PATCH", msg, js, []byte(`{"body"`), 400, "", ""},
		{"PATCH invalid UTF-8", "PATCH", msg, js, []byte("{\"body\":\"\xff\"}"), 400, "invalid_utf8", ""},
		{"PATCH trailing garbage", "PATCH", msg, js, []byte(`{"body":"x"}}`), 400, "", ""},
		{"PATCH text/plain", "PATCH", msg, "text/plain", j(map[string]any{"body": "x"}), 415, "", "Content-Type: application/json"},
		{"PATCH no Content-Type", "PATCH", msg, "", j(map[string]any{"body": "x"}), 415, "", ""},
		{"PATCH body 4097 bytes", "PATCH", msg, js, tooLong, 422, "body_too_long", ""},
		{"PATCH whitespace-only", "PATCH", msg, js, j(map[string]any{"body": "   "}), 422, "", ""},
		{"PATCH missing body", "PATCH", msg, js, []byte(`{}`), 422, "", ""},
		{"PATCH body is a number", "PATCH", msg, js, []byte(`{"body":5}`), 400, "", ""},
		{"PATCH NUL", "PATCH", msg, js, []byte(`{"body":"\u0000"}`), 422, "", ""},
		{"PATCH unknown message", "PATCH", msgs + "/" + restRandomUUID(), js, j(map[string]any{"body": "x"}), 404, "not_found", ""},
		{"DELETE unknown message", "DELETE", msgs + "/" + restRandomUUID(), "", nil, 404, "not_found", ""},

		{"conversation with yourself", "POST", "/v1/conversations", js, j(map[string]any{"participant_id": alice.ID}), 422, "", ""},
		{"group of nobody", "POST", "/v1/conversations", js, j(map[string]any{"participant_ids": []string{}}), 422, "", ""},
		{"group of only yourself", "POST", "/v1/conversations", js, j(map[string]any{"participant_ids": []string{alice.ID}}), 422, "", ""},
		{"group of yourself twice", "POST", "/v1/conversations", js, j(map[string]any{"participant_ids": []string{alice.ID, alice.ID}}), 422, "", ""},
		{"both participant_id and participant_ids", "POST", "/v1/conversations", js, j(map[string]any{"participant_id": bob.ID, "participant_ids": []string{bob.ID}}), 422, "", ""},
		{"neither participant_id nor participant_ids", "POST", "/v1/conversations", js, []byte(`{}`), 422, "", ""},
		{"empty participant_id", "POST", "/v1/conversations", js, j(map[string]any{"participant_id": ""}), 422, "", ""},
		{"control character in participant_id", "POST", "/v1/conversations", js, j(map[string]any{"participant_id": "bo\u0001b"}), 422, "", ""},
		{"NUL in participant_ids", "POST", "/v1/conversations", js, j(map[string]any{"participant_ids": []string{"x\u0000"}}), 422, "", ""},
		{"participant_id over 255 bytes", "POST", "/v1/conversations", js, j(map[string]any{"participant_id": strings.Repeat("p", 256)}), 422, "", ""},
		{"participant_id is a number", "POST", "/v1/conversations", js, []byte(`{"participant_id":5}`), 400, "", ""},
		{"title too long", "POST", "/v1/conversations", js, j(map[string]any{"participant_ids": []string{bob.ID}, "title": strings.Repeat("t", 201)}), 422, "", ""},
		{"conversation text/plain", "POST", "/v1/conversations", "text/plain", j(map[string]any{"participant_id": bob.ID}), 415, "", "Content-Type: application/json"},
		{"conversation malformed", "POST", "/v1/conversations", js, []byte(`{"participant_id":`), 400, "", ""},
		{"conversations limit=0", "GET", "/v1/conversations?limit=0", "", nil, 400, "", ""},

		{"read negative seq", "POST", read, js, []byte(`{"seq":-1}`), 422, "", ""},
		{"read missing seq", "POST", read, js, []byte(`{}`), 422, "", ""},
		{"read seq is a string", "POST", read, js, []byte(`{"seq":"3"}`), 400, "", ""},
		{"read seq is a fraction", "POST", read, js, []byte(`{"seq":1.5}`), 400, "", ""},
		{"read text/plain", "POST", read, "text/plain", []byte(`{"seq":1}`), 415, "", ""},
		{"read malformed", "POST", read, js, []byte(`{"seq":1`), 400, "", ""},
		{"read unknown conversation", "POST", "/v1/conversations/" + restRandomUUID() + "/read", js, []byte(`{"seq":1}`), 404, "not_found", ""},

		{"typing missing", "POST", typing, js, []byte(`{}`), 422, "", ""},
		{"typing is a string", "POST", typing, js, []byte(`{"typing":"yes"}`), 400, "", ""},
		{"typing text/plain", "POST", typing, "text/plain", []byte(`{"typing":true}`), 415, "", ""},
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
		{"exactly 4096 bytes", js, j(map[string]any{"body": strings.Repeat("a", 4096)}), strings.Repeat("a", 4096)},
		{"exactly 4096 bytes in 2048 characters", js, j(map[string]any{"body": strings.Repeat("é", 2048)}), strings.Repeat("é", 2048)},
		{"surrounding whitespace kept", js, j(map[string]any{"body": "  hi \n"}), "  hi \n"},
		{"client_id of 64 characters", js, j(map[string]any{"body": "keyed", "client_id": strings.Repeat("c", 64)}), "keyed"},
		{"charset parameter", "application/json; charset=utf-8", j(map[string]any{"body": "charset"}), "charset"},
		{"trailing whitespace after the object", js, []byte("{\"body\":\"ws\"}\r\n \t"), "ws"},
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
	r := restCall(t, "PATCH", in.URL+msg, alice.Token, js, j(map[string]any{"body": strings.Repeat("z", 4096)}))
	require.Equal(t, 200, r.Status, "PATCH of exactly 4096 bytes: %s", r.Body)
}

package api

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// ---------------------------------------------------------------------------------------
// 1. Outsiders and odd ids

func TestOutsiderGets404EverywhereAndChangesNothing(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	alice, bob, mallory := newUser(t, in, "alice"), newUser(t, in, "bob"), newUser(t, in, "mallory")
	conv := alice.direct(bob)
	m := alice.send(conv.ID, "secret")
	r := alice.do("POST", "/v1/conversations/"+conv.ID+"/messages", map[string]any{"body": "keyed", "client_id": "k-1"})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	bob.send(conv.ID, "reply")
	// mallory's own conversation, through which she tries alice's message id.
	own := mallory.direct(newUser(t, in, "carol"))

	before := restSnapshot(t, in.Pool, conv.ID)
	ownBefore := restSnapshot(t, in.Pool, own.ID)
	base := "/v1/conversations/" + conv.ID
	msg := base + "/messages/" + m.ID
	viaOwn := "/v1/conversations/" + own.ID + "/messages/" + m.ID
	tests := []struct {
		name, method, path string
		body               any
	}{
		{"GET conversation", "GET", base, nil},
		{"POST message", "POST", base + "/messages", map[string]any{"body": "let me in"}},
		{"POST message with a client_id alice used", "POST", base + "/messages", map[string]any{"body": "x", "client_id": "k-1"}},
		{"GET messages", "GET", base + "/messages", nil},
		{"GET messages after_seq", "GET", base + "/messages?after_seq=0&limit=200", nil},
		{"GET messages before_seq", "GET", base + "/messages?before_seq=3&limit=1", nil},
		{"PATCH message", "PATCH", msg, map[string]any{"body": "hacked"}},
		{"DELETE message", "DELETE", msg, nil},
		{"POST read", "POST", base + "/read", map[string]any{"seq": 3}},
		{"POST typing", "POST", base + "/typing", map[string]any{"typing": true}},
		{"PATCH the message via own conversation", "PATCH", viaOwn, map[string]any{"body": "hacked"}},
		{"DELETE the message via own conversation", "DELETE", viaOwn, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := restJSON(t, tt.method, in.URL+tt.path, mallory.Token, tt.body)
			restRequireError(t, r, http.StatusNotFound, "not_found")
		})
	}
	require.Equal(t, before, restSnapshot(t, in.Pool, conv.ID), "an outsider changed the conversation")
	require.Equal(t, ownBefore, restSnapshot(t, in.Pool, own.ID))

	// Nothing of it shows anywhere mallory looks.
	var u restUnread
	mallory.do("GET", "/v1/unread", nil).OK(t, &u)
	require.Zero(t, u.Total)
	var list restConvPage
	mallory.do("GET", "/v1/conversations?limit=100", nil).OK(t, &list)
	require.Len(t, list.Conversations, 1)
	require.Equal(t, own.ID, list.Conversations[0].ID)

	t.Run("unknown and odd ids", func(t *testing.T) {
		oddIDsGet404(t, in, []*testUser{alice, mallory}, conv.ID, m.ID)
		// The same for a message id written with other separators.
		t.Run("message id with other separators", func(t *testing.T) {
			alias := base + "/messages/" + strings.ReplaceAll(m.ID, "-", "x")
			restRequireError(t, restJSON(t, "PATCH", in.URL+alias, alice.Token, map[string]any{"body": "alias"}), http.StatusNotFound, "not_found")
			restRequireError(t, restJSON(t, "DELETE", in.URL+alias, alice.Token, nil), http.StatusNotFound, "not_found")
		})
		t.Run("trailing slash", func(t *testing.T) {
			for _, p := range []string{"/v1/conversations/" + conv.ID + "/", "/v1/conversations/" + conv.ID + "/messages/"} {
				r := restJSON(t, "GET", in.URL+p, alice.Token, nil)
				restRequireError(t, r, http.StatusNotFound, "")
				require.Empty(t, r.Header.Get("Location"), p)
			}
		})
		require.Equal(t, before, restSnapshot(t, in.Pool, conv.ID))
	})
}

// oddIDsGet404 tries unknown and odd conversation and message ids in every route that
// takes one, as each of users (a participant of conv among them: only the id decides), and
// requires a 404 without a redirect each time. msg is a message of conv.
func oddIDsGet404(t *testing.T, in *instance, users []*testUser, conv, msg string) {
	hyphens := func(sep string) string { return strings.ReplaceAll(conv, "-", sep) }
	odd := []struct{ name, id string }{
		{"NUL", "%00"},
		{"encoded dot-dot slashes", "..%2F..%2Fv1%2Funread"},
		{"encoded dots", "%2e%2e"},
		{"300 a's", strings.Repeat("a", 300)},
		{"random UUID", restRandomUUID()},
		{"space", "%20"},
		{"unicode", url.PathEscape("会話")},
		// Not this conversation's id, though the same hex digits: opaque ids are
		// compared as given, never as "something that decodes to the same bytes".
		{"separators replaced by x", hyphens("x")},
		{"separators replaced by encoded slashes", hyphens("%2F")},
	}
	base := "/v1/conversations/" + conv
	for _, o := range odd {
		paths := []struct{ method, path string }{
			{"GET", "/v1/conversations/" + o.id},
			{"GET", "/v1/conversations/" + o.id + "/messages"},
			{"POST", "/v1/conversations/" + o.id + "/messages"},
			{"PATCH", "/v1/conversations/" + o.id + "/messages/" + msg},
			{"DELETE", "/v1/conversations/" + o.id + "/messages/" + msg},
			{"PATCH", base + "/messages/" + o.id},
			{"DELETE", base + "/messages/" + o.id},
			{"POST", "/v1/conversations/" + o.id + "/read"},
			{"POST", "/v1/conversations/" + o.id + "/typing"},
		}
		for _, p := range paths {
			t.Run(o.name+" "+p.method+" "+p.path, func(t *testing.T) {
				body := oddIDBody(p.method, p.path)
				for _, u := range users {
					r := restJSON(t, p.method, in.URL+p.path, u.Token, body)
					restRequireError(t, r, http.StatusNotFound, "not_found")
					require.Empty(t, r.Header.Get("Location"))
				}
			})
		}
	}
}

// oddIDBody is a valid body for the route of method and path, so that only the id in the
// path can be what is refused.
func oddIDBody(method, path string) any {
	switch {
	case strings.HasSuffix(path, "/read"):
		return map[string]any{"seq": 1}
	case strings.HasSuffix(path, "/typing"):
		return map[string]any{"typing": true}
	case method == "POST" || method == "PATCH":
		return map[string]any{"body": "hi"}
	}
	return nil
}

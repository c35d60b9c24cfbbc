package api

import (
	"crypto/rand"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

// searchAnswer is the body of GET /v1/search.
type searchAnswer struct {
	Results []struct {
		Message events.Message `json:"message"`
		Snippet string         `json:"snippet"`
	} `json:"results"`
	NextCursor *string `json:"next_cursor"`
}

// searchWord returns a word of letters only, unique to this run, so that searches of tests
// sharing the database never find each other's messages.
func searchWord() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = 'a' + b[i]%26
	}
	return string(b)
}

// search asks for q with extra query parameters ("limit=2", ...) and requires a 200.
func (u *testUser) search(q string, params ...string) searchAnswer {
	u.t.Helper()
	var a searchAnswer
	u.do("GET", "/v1/search?"+searchQuery(q, params...), nil).OK(u.t, &a)
	return a
}

func searchQuery(q string, params ...string) string {
	return strings.Join(append([]string{"q=" + url.QueryEscape(q)}, params...), "&")
}

// bodies lists the bodies of a search answer's results, in order.
func (a searchAnswer) bodies() []string {
	out := make([]string, len(a.Results))
	for i, r := range a.Results {
		out[i] = r.Message.Body
	}
	return out
}

// TestSearchFindsOnlyTheCallersConversations: members find a message of their
// conversation, everyone else finds nothing of it, and naming it is a 404 to an outsider.
func TestSearchFindsOnlyTheCallersConversations(t *testing.T) {
	in := newInstance(t)
	alice, bob, carol, dave := newUser(t, in, "alice"), newUser(t, in, "bob"), newUser(t, in, "carol"), newUser(t, in, "dave")
	w := searchWord()
	ab := alice.direct(bob)
	cd := carol.direct(dave)
	sent := alice.send(ab.ID, "the "+w+" is in the drawer")
	carol.send(cd.ID, "another "+w+" elsewhere")

	for _, u := range []*testUser{alice, bob} {
		a := u.search(w)
		require.Len(t, a.Results, 1, "%s", u.ID)
		require.Equal(t, sent.ID, a.Results[0].Message.ID)
		require.Equal(t, sent.Seq, a.Results[0].Message.Seq, "the seq opens the conversation there")
		require.Equal(t, "the <mark>"+w+"</mark> is in the drawer", a.Results[0].Snippet)
		require.Nil(t, a.NextCursor)
	}
	require.Equal(t, []string{"another " + w + " elsewhere"}, carol.search(w).bodies())
	require.Empty(t, newUser(t, in, "mallory").search(w).Results)

	r := carol.do("GET", "/v1/search?"+searchQuery(w, "conversation_id="+ab.ID), nil)
	require.Equal(t, http.StatusNotFound, r.Status, "%s", r.Body)
	require.Len(t, bob.search(w, "conversation_id="+ab.ID).Results, 1)
	require.Empty(t, bob.search("another "+w, "conversation_id="+ab.ID).Results)
}

// TestSearchEditedAndDeleted: an edited message is found by its new text only, a deleted
// one not at all.
func TestSearchEditedAndDeleted(t *testing.T) {
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	before, after := searchWord(), searchWord()
	conv := alice.direct(bob)
	m := alice.send(conv.ID, "meet at "+before)
	require.Len(t, bob.search(before).Results, 1)

	path := "/v1/conversations/" + conv.ID + "/messages/" + m.ID
	require.Equal(t, http.StatusOK, alice.do("PATCH", path, map[string]any{"body": "meet at " + after}).Status)
	require.Empty(t, bob.search(before).Results, "the old text is not found")
	a := bob.search(after)
	require.Len(t, a.Results, 1)
	require.NotNil(t, a.Results[0].Message.EditedAt)

	require.Equal(t, http.StatusOK, alice.do("DELETE", path, nil).Status)
	require.Empty(t, bob.search(after).Results, "a deleted message is never found")
	require.Empty(t, alice.search(after).Results)
}

// TestSearchPagesNewestFirst walks the pages of a search: every match once, newest first,
// and no cursor after the last page.
func TestSearchPagesNewestFirst(t *testing.T) {
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	w := searchWord()
	conv := alice.direct(bob)
	var want []string
	for i := range 5 {
		want = append([]string{alice.send(conv.ID, w+" number "+string(rune('a'+i))).ID}, want...)
	}
	alice.send(conv.ID, "not a match")
	var got []string
	params := []string{"limit=2"}
	for page := 0; ; page++ {
		require.Less(t, page, 3, "five results come in three pages")
		a := alice.search(w, params...)
		for _, r := range a.Results {
			got = append(got, r.Message.ID)
		}
		if a.NextCursor == nil {
			require.Len(t, a.Results, 1)
			break
		}
		require.Len(t, a.Results, 2)
		params = []string{"limit=2", "cursor=" + url.QueryEscape(*a.NextCursor)}
	}
	require.Equal(t, want, got)
}

// TestSearchRefusesBadInput: each bad parameter is a 400 with its code, never a 500.
func TestSearchRefusesBadInput(t *testing.T) {
	in := newInstance(t)
	alice := newUser(t, in, "alice")
	for _, tc := range []struct{ query, code string }{
		{"", "invalid_query"},
		{"q=", "invalid_query"},
		{"q=%20%20", "invalid_query"},
		{"q=" + strings.Repeat("a", maxSearchBytes+1), "invalid_query"},
		{"q=%FF%FE", "invalid_query"},
		{"q=a%00b", "invalid_query"},
		{"q=-onlyexcluded", "invalid_query"},
		{"q=word&limit=0", "invalid_limit"},
		{"q=word&limit=51", "invalid_limit"},
		{"q=word&limit=x", "invalid_limit"},
		{"q=word&cursor=garbage!", "invalid_cursor"},
		{"q=word&cursor=" + searchCursor(time.Now(), pgtype.UUID{Valid: true})[:10], "invalid_cursor"},
	} {
		r := alice.do("GET", "/v1/search?"+tc.query, nil)
		require.Equal(t, http.StatusBadRequest, r.Status, "%s: %s", tc.query, r.Body)
		require.Equal(t, tc.code, r.ErrorCode(), tc.query)
	}
	r := alice.do("GET", "/v1/search?q=word&conversation_id=not-a-uuid", nil)
	require.Equal(t, http.StatusNotFound, r.Status)
	// Punctuation alone holds no word to look for: nothing matches, and that is no error.
	require.Empty(t, alice.search("!!! ...").Results)
}

// TestSearchSnippetIsSafeHTML: the body's markup arrives escaped, only the marks are tags,
// and marker characters in the body cannot forge a mark.
func TestSearchSnippetIsSafeHTML(t *testing.T) {
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	w := searchWord()
	conv := alice.direct(bob)
	alice.send(conv.ID, `<img src=x onerror=alert(1)> 1 < 2 & "`+w+"\" \x01forged\x02 'quoted'")
	a := bob.search(w)
	require.Len(t, a.Results, 1)
	snippet := a.Results[0].Snippet
	require.Contains(t, snippet, "<mark>"+w+"</mark>")
	require.Contains(t, snippet, "1 &lt; 2 &amp; &#34;")
	require.Contains(t, snippet, "&#39;quoted&#39;")
	rest := strings.ReplaceAll(strings.ReplaceAll(snippet, "<mark>", ""), "</mark>", "")
	require.NotContains(t, rest, "<", "no tag but the marks")
	require.NotContains(t, rest, ">")
	require.Equal(t, 1, strings.Count(snippet, "<mark>"), "the body's marker characters are no marks")
}

// FuzzSearchCursor checks that the search cursor parser accepts only what it can
// reproduce, and rejects the rest with a 400.
func FuzzSearchCursor(f *testing.F) {
	f.Add(searchCursor(time.UnixMicro(1764400000123456), pgtype.UUID{Bytes: [16]byte{1, 2, 3}, Valid: true}))
	f.Add("MF8wMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDA")
	f.Add("x")
	f.Fuzz(func(t *testing.T, s string) {
		at, id, err := parseSearchCursor(s)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Status() != http.StatusBadRequest {
				t.Fatalf("parseSearchCursor(%q) = %v", s, err)
			}
			return
		}
		again, againID, err := parseSearchCursor(searchCursor(at, id))
		if err != nil || !again.Equal(at) || againID != id {
			t.Fatalf("%q does not round-trip", s)
		}
	})
}

package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

// testAttachmentHosts are the attachment hosts of the attachment tests' instances.
var testAttachmentHosts = []string{"cdn.example.com", "img.example.com:8443"}

func withAttachmentHosts(hosts ...string) func(*Config, *events.Config) {
	return func(c *Config, _ *events.Config) { c.AttachmentHosts = hosts }
}

// photo is a valid image attachment on the first test host.
func photo(name string) map[string]any {
	return map[string]any{"url": "https://cdn.example.com/u/" + name, "name": name,
		"content_type": "image/jpeg", "size": 48213, "width": 1200, "height": 800}
}

// with returns a copy of an attachment with one field set (or removed, for nil).
func with(a map[string]any, field string, v any) map[string]any {
	b := map[string]any{}
	for k, x := range a {
		b[k] = x
	}
	if v == nil {
		delete(b, field)
	} else {
		b[field] = v
	}
	return b
}

// storedCounts is how many messages and events a conversation has in the database.
func storedCounts(t *testing.T, in *instance, conv string) [2]int {
	var n [2]int
	require.NoError(t, in.Pool.QueryRow(t.Context(),
		"SELECT (SELECT count(*) FROM messages WHERE conversation_id = $1), (SELECT count(*) FROM events WHERE conversation_id = $1)",
		conv).Scan(&n[0], &n[1]))
	return n
}

// TestAttachmentsRefused: every malformed or foreign attachment is a 422 invalid_attachment
// naming the attachment and field, and nothing reaches the database.
func TestAttachmentsRefused(t *testing.T) {
	in := newInstance(t, withAttachmentHosts(testAttachmentHosts...))
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob).ID
	before := storedCounts(t, in, conv)
	p := photo("a.jpg")
	url := func(u string) []any { return []any{with(p, "url", u)} }
	eleven := make([]any, 11)
	for i := range eleven {
		eleven[i] = p
	}
	for _, tc := range []struct {
		name, want  string
		attachments any
	}{
		{"scheme http", "[0].url: must be an https:// URL", url("http://cdn.example.com/a.jpg")},
		{"scheme in capitals", "[0].url: must be an https:// URL", url("HTTPS://cdn.example.com/a.jpg")},
		{"scheme javascript", "[0].url: must be an https:// URL", url("javascript:alert(1)")},
		{"scheme relative", "[0].url: must be an https:// URL", url("//cdn.example.com/a.jpg")},
		{"host not listed", `[0].url: host "evil.example"`, url("https://evil.example/a.jpg")},
		{"listed host as a prefix", `host "cdn.example.com.evil.example"`, url("https://cdn.example.com.evil.example/a.jpg")},
		{"listed host as a suffix", `host "evilcdn.example.com"`, url("https://evilcdn.example.com/a.jpg")},
		{"no host", `host ""`, url("https:///cdn.example.com/a.jpg")},
		{"userinfo before the host", "user information", url("https://cdn.example.com@evil.example/a.jpg")},
		{"userinfo with a listed host", "user information", url("https://user:pw@cdn.example.com/a.jpg")},
		{"port not listed", `host "cdn.example.com:443"`, url("https://cdn.example.com:443/a.jpg")},
		{"listed port missing", `host "img.example.com"`, url("https://img.example.com/a.jpg")},
		{"host in capitals", `host "CDN.example.com"`, url("https://CDN.example.com/a.jpg")},
		{"trailing dot", `host "cdn.example.com."`, url("https://cdn.example.com./a.jpg")},
		{"percent-encoded host", `host "cdn%2Eexample.com"`, url("https://cdn%2Eexample.com/a.jpg")},
		{"unicode host", "printable ASCII", url("https://cdn.exämple.com/a.jpg")},
		{"punycode not listed", `host "xn--cdn-qoa.example.com"`, url("https://xn--cdn-qoa.example.com/a.jpg")},
		{"backslash", "backslashes", url(`https://cdn.example.com\@evil.example/a.jpg`)},
		{"tab in the host", "printable ASCII", url("https://cdn.exa\tmple.com/a.jpg")},
		{"space", "printable ASCII", url("https://cdn.example.com/a b.jpg")},
		{"url too long", "[0].url: is longer than 2048", url("https://cdn.example.com/" + strings.Repeat("a", 2048))},
		{"url not a string", "[0].url: must be a string", url2(p, 5)},
		{"eleven", "at most 10 attachments, not 11", eleven},
		{"not an array", "must be an array", map[string]any{"url": "x"}},
		{"not objects", "[0]: must be an object", []any{1}},
		{"unknown field", `[0]: unknown field "path"`, []any{with(p, "path", "/x")}},
		{"no url", "[0].url: is required", []any{with(p, "url", nil)}},
		{"no name", "[0].name: is required", []any{with(p, "name", nil)}},
		{"no content_type", "[0].content_type: is required", []any{with(p, "content_type", nil)}},
		{"no size", "[0].size: is required", []any{with(p, "size", nil)}},
		{"second one bad", "attachments[1].name: must not be empty", []any{p, with(p, "name", " ")}},
		{"name too long", "[0].name: is longer than 255", []any{with(p, "name", strings.Repeat("n", 256))}},
		{"name on two lines", "[0].name: must be one line", []any{with(p, "name", "a\nb")}},
		{"content_type not a type", "[0].content_type: must be a media type", []any{with(p, "content_type", "jpeg")}},
		{"content_type too long", "[0].content_type: is longer than 127", []any{with(p, "content_type", "image/"+strings.Repeat("x", 122))}},
		{"size negative", "[0].size: must be an integer from 0", []any{with(p, "size", -1)}},
		{"size fractional", "[0].size: must be an integer", []any{with(p, "size", 1.5)}},
		{"size as a string", "[0].size: must be an integer", []any{with(p, "size", "12")}},
		{"size beyond 2^53", "[0].size: must be an integer from 0 to 9007199254740991", []any{with(p, "size", json.Number("9007199254740992"))}},
		{"width zero", "[0].width: must be an integer from 1 to 100000", []any{with(p, "width", 0)}},
		{"height too large", "[0].height: must be an integer from 1 to 100000", []any{with(p, "height", 100001)}},
		{"height a string", "[0].height: must be an integer", []any{with(p, "height", "x")}},
	} {
		r := alice.do("POST", "/v1/conversations/"+conv+"/messages", map[string]any{"body": "look", "attachments": tc.attachments})
		require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%s: %s", tc.name, r.Body)
		require.Equal(t, "invalid_attachment", r.ErrorCode(), tc.name)
		require.Contains(t, string(r.Body), jsonText(tc.want), tc.name)
	}
	require.Equal(t, before, storedCounts(t, in, conv), "no message and no event was stored")

	// Without attachments, an empty body is still refused.
	r := alice.do("POST", "/v1/conversations/"+conv+"/messages", map[string]any{"body": "", "attachments": []any{}})
	require.Equal(t, "empty_body", r.ErrorCode())
}

func url2(a map[string]any, v any) []any { return []any{with(a, "url", v)} }

// jsonText is s as it appears inside a JSON string.
func jsonText(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}

// TestAttachmentsAccepted: attachments alone, with a body, on a listed port; a message
// without them carries an empty list.
func TestAttachmentsAccepted(t *testing.T) {
	in := newInstance(t, withAttachmentHosts(testAttachmentHosts...))
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob).ID
	path := "/v1/conversations/" + conv + "/messages"
	doc := map[string]any{"url": "https://img.example.com:8443/d/report.pdf?v=2#p1", "name": "report.pdf",
		"content_type": "application/pdf", "size": 0}

	var m events.Message
	r := alice.do("POST", path, map[string]any{"attachments": []any{photo("a.jpg")}})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	r.JSON(t, &m)
	require.Equal(t, "", m.Body)
	require.JSONEq(t, `[{"url":"https://cdn.example.com/u/a.jpg","name":"a.jpg","content_type":"image/jpeg","size":48213,"width":1200,"height":800}]`,
		string(m.Attachments))

	r = alice.do("POST", path, map[string]any{"body": "two files", "attachments": []any{photo("b.jpg"), doc}})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	r.JSON(t, &m)
	require.JSONEq(t, `[{"url":"https://cdn.example.com/u/b.jpg","name":"b.jpg","content_type":"image/jpeg","size":48213,"width":1200,"height":800},
		{"url":"https://img.example.com:8443/d/report.pdf?v=2#p1","name":"report.pdf","content_type":"application/pdf","size":0}]`,
		string(m.Attachments), "width and height are left out when not given")

	for _, none := range []any{nil, []any{}} {
		r = alice.do("POST", path, map[string]any{"body": "plain", "attachments": none})
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
		r.JSON(t, &m)
		require.Equal(t, "[]", string(m.Attachments))
	}
	// An instance without attachment hosts refuses every attachment.
	plain := newInstance(t)
	r = alice.on(plain).do("POST", path, map[string]any{"attachments": []any{photo("a.jpg")}})
	require.Equal(t, "invalid_attachment", r.ErrorCode(), "%s", r.Body)
}

// TestAttachmentsTravelEverywhere: the attachments of a message are in the send's answer,
// a repeated send's answer, the stream's event, a long poll, a replay from a cursor,
// history and the conversation's last message; deleting the message drops them everywhere.
func TestAttachmentsTravelEverywhere(t *testing.T) {
	in := newInstance(t, withAttachmentHosts(testAttachmentHosts...))
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob).ID
	live, cursor := openReady(t, in.URL+"/v1/events", bob.Token, nil)
	defer live.close()
	path := "/v1/conversations/" + conv + "/messages"
	send := map[string]any{"body": "the scratch", "client_id": "c-att", "attachments": []any{photo("scratch.jpg")}}
	r := alice.do("POST", path, send)
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	sent := decode[events.Message](t, string(r.Body))
	want := string(sent.Attachments)
	require.Contains(t, want, "scratch.jpg")

	r = alice.do("POST", path, send)
	require.Equal(t, http.StatusOK, r.Status, "a repeated client_id answers the original")
	require.JSONEq(t, string(r.Body), string(mustJSON(t, sent)))

	// The conversation's own event may come first: its creation raced the stream's start.
	ev := live.nextOf("message", wait)
	require.JSONEq(t, want, string(decode[events.Message](t, ev.Data).Attachments), "stream")

	var poll pollAnswer
	bob.do("GET", "/v1/events/poll?timeout=1&cursor="+cursor, nil).OK(t, &poll)
	var polled []string
	for _, e := range poll.Events {
		if e.Type == "message" {
			polled = append(polled, string(decode[events.Message](t, string(e.Data)).Attachments))
		}
	}
	require.Len(t, polled, 1, "the poll has the message: %+v", poll)
	require.JSONEq(t, want, polled[0], "poll")

	replay, _ := openReady(t, in.URL+"/v1/events", bob.Token, map[string]string{"Last-Event-ID": cursor})
	defer replay.close()
	ev = replay.nextOf("message", wait)
	require.JSONEq(t, want, string(decode[events.Message](t, ev.Data).Attachments), "replay")

	var page struct{ Messages []events.Message }
	bob.do("GET", path, nil).OK(t, &page)
	require.Len(t, page.Messages, 1)
	require.JSONEq(t, want, string(page.Messages[0].Attachments), "history")
	var c events.Conversation
	bob.do("GET", "/v1/conversations/"+conv, nil).OK(t, &c)
	require.JSONEq(t, want, string(c.LastMessage.Attachments), "last message")

	require.Equal(t, http.StatusOK, alice.do("DELETE", path+"/"+sent.ID, nil).Status)
	ev = live.nextOf("message_deleted", wait)
	require.Equal(t, "[]", string(decode[events.Message](t, ev.Data).Attachments), "a deleted message keeps no file")
	bob.do("GET", path, nil).OK(t, &page)
	require.Equal(t, "[]", string(page.Messages[0].Attachments))
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// FuzzAttachments checks the attachment checker on any input: a refusal is a 422, and what
// it accepts is well-formed, on a listed host for every URL parser, and accepted again
// unchanged.
func FuzzAttachments(f *testing.F) {
	f.Add(`[{"url":"https://cdn.example.com/a.jpg","name":"a","content_type":"image/png","size":1,"width":2}]`)
	f.Add(`[{"url":"https://img.example.com:8443/x?y#z","name":"n","content_type":"text/plain; charset=utf-8","size":0}]`)
	f.Add(`[{"url":"https://cdn.example.com@evil/","name":"a","content_type":"a/b","size":1}]`)
	f.Add(`null`)
	f.Add(`{}`)
	f.Fuzz(func(t *testing.T, raw string) {
		out, n, err := checkAttachments(json.RawMessage(raw), testAttachmentHosts)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Status() != http.StatusUnprocessableEntity || e.Code != "invalid_attachment" {
				t.Fatalf("checkAttachments(%q) = %v", raw, err)
			}
			return
		}
		var list []attachment
		if json.Unmarshal(out, &list) != nil || len(list) != n || n > maxAttachments {
			t.Fatalf("%q gave %q", raw, out)
		}
		for _, a := range list {
			u, err := url.Parse(a.URL)
			if err != nil || u.Scheme != "https" || u.User != nil || !slices.Contains(testAttachmentHosts, u.Host) ||
				strings.ContainsFunc(a.URL, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == '\\' }) {
				t.Fatalf("%q accepted the URL %q", raw, a.URL)
			}
		}
		again, _, err := checkAttachments(out, testAttachmentHosts)
		if err != nil || string(again) != string(out) {
			t.Fatalf("%q: its own output %q is not accepted unchanged: %v", raw, out, err)
		}
	})
}

// TestAttachmentHostsSetting: CHAT_ATTACHMENT_HOSTS takes canonical hosts only, and the web
// page allows images from exactly those, in its CSP and in what it tells the client.
func TestAttachmentHostsSetting(t *testing.T) {
	hosts, err := ParseAttachmentHosts(" cdn.example.com, img.example.com:8443 ,")
	require.NoError(t, err)
	require.Equal(t, testAttachmentHosts, hosts)
	for _, bad := range []string{"CDN.example.com", "cdn.example.com.", "bücher.example", "https://cdn.example.com",
		"cdn.example.com/path", "user@cdn.example.com", "cdn.example.com:0", "cdn.example.com:", "*.example.com",
		"cdn example.com", "-cdn.example.com", "[::1]:443", "cdn.example.com;script-src"} {
		_, err := ParseAttachmentHosts("ok.example.com," + bad)
		require.Error(t, err, bad)
		require.Contains(t, err.Error(), bad)
	}

	in := newInstance(t, demoWeb, withAttachmentHosts(testAttachmentHosts...))
	r := call(t, "GET", in.URL+"/", "", nil)
	require.Equal(t, http.StatusOK, r.Status)
	require.Contains(t, r.Header.Get("Content-Security-Policy"),
		"; img-src 'self' data: https://cdn.example.com https://img.example.com:8443; ")
	require.Contains(t, string(r.Body), `<meta name="chatd-attachment-hosts" content="cdn.example.com img.example.com:8443">`)
	r = call(t, "GET", in.URL+"/web/app.js", "", nil)
	require.Contains(t, r.Header.Get("Content-Security-Policy"), "img-src 'self' data: https://cdn.example.com https://img.example.com:8443;")
}

// A system message takes attachments as a user's send does (API.md v1.1, server API):
// the same checks, attachments only allowed, carried in the answer, history and stream.
func TestSystemMessageCarriesAttachments(t *testing.T) {
	in := newInstance(t, withAttachmentHosts(testAttachmentHosts...))
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := serverConversation(t, in, map[string]any{"kind": "group", "participant_ids": []string{alice.ID, bob.ID}})
	live, _ := openReady(t, in.URL+"/v1/events", bob.Token, nil)
	defer live.close()
	path := "/conversations/" + conv.ID + "/messages"

	bad := map[string]any{"attachments": []any{map[string]any{"url": "https://elsewhere.example/x.jpg", "name": "x.jpg", "content_type": "image/jpeg", "size": 1}}}
	r := asServer(t, in, "POST", path, bad)
	require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%s", r.Body)
	require.Contains(t, string(r.Body), "invalid_attachment")

	r = asServer(t, in, "POST", path, map[string]any{"attachments": []any{photo("invoice.jpg")}})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	sent := decode[events.Message](t, string(r.Body))
	require.Equal(t, "system", sent.Kind)
	require.EqualValues(t, 1, sent.Seq, "the refused one stored nothing")
	require.Contains(t, string(sent.Attachments), "invoice.jpg")
	ev := decode[events.Message](t, live.nextOf("message", wait).Data)
	require.JSONEq(t, string(sent.Attachments), string(ev.Attachments), "stream")
	var page struct{ Messages []events.Message }
	alice.do("GET", "/v1/conversations/"+conv.ID+"/messages", nil).OK(t, &page)
	require.Len(t, page.Messages, 1)
	require.JSONEq(t, string(sent.Attachments), string(page.Messages[0].Attachments), "history")
}

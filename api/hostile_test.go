package api

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

// Tests of the limits that keep one hostile or careless client from hurting everyone else
// (issue 7): caps, malformed text, and what a refused request leaves behind.

func TestTicketSurvivesAStreamRefusedForItsCap(t *testing.T) {
	in := newInstance(t, func(c *Config, _ *events.Config) { c.StreamsPerUser = 1 })
	bob := newUser(t, in, "bob")
	first, _ := openReady(t, in.URL+"/v1/events", bob.Token, nil)

	r := bob.do("POST", "/v1/tickets", nil)
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var tk struct{ Ticket string }
	r.JSON(t, &tk)
	refused := openStream(t, in.URL+"/v1/events?ticket="+tk.Ticket, "", nil)
	require.Equal(t, 429, refused.Status, "bob already holds his one stream")
	require.NotEmpty(t, refused.Header.Get("Retry-After"))

	first.close()
	require.Eventually(t, func() bool { return in.Hub.Streams() == 0 }, wait, 10e6)
	again, _ := openReady(t, in.URL+"/v1/events?ticket="+tk.Ticket, "", nil)
	again.close()
	used := openStream(t, in.URL+"/v1/events?ticket="+tk.Ticket, "", nil)
	require.Equal(t, 401, used.Status, "the ticket is used up once a stream opened with it")
}

func TestInstanceStreamCapAnswers503WithRetryAfter(t *testing.T) {
	in := newInstance(t, func(c *Config, _ *events.Config) { c.MaxStreams = 2 })
	alice, bob, carol := newUser(t, in, "alice"), newUser(t, in, "bob"), newUser(t, in, "carol")
	s1, _ := openReady(t, in.URL+"/v1/events", alice.Token, nil)
	openReady(t, in.URL+"/v1/events", bob.Token, nil)

	for _, path := range []string{"/v1/events", "/v1/events/poll?timeout=1"} {
		r := openStream(t, in.URL+path, carol.Token, nil)
		require.Equal(t, 503, r.Status, path)
		require.NotEmpty(t, r.Header.Get("Retry-After"), path)
	}
	res := carol.do("GET", "/v1/events/poll?timeout=0", nil)
	require.Equal(t, "instance_full", res.ErrorCode())
	require.Equal(t, 200, carol.do("GET", "/v1/conversations", nil).Status, "REST is not capped by streams")

	s1.close()
	require.Eventually(t, func() bool { return in.Hub.Streams() == 1 }, wait, 10e6)
	openReady(t, in.URL+"/v1/events", carol.Token, nil)
}

func TestGroupTitleRefusesControlCharacters(t *testing.T) {
	in := newInstance(t)
	alice := newUser(t, in, "alice")
	for _, title := range []string{"line\nbreak", "carriage\rreturn", "esc\x1b[31m", "del\x7f", "c1\u0085x", "tab\tinside"} {
		r := alice.do("POST", "/v1/conversations", map[string]any{"participant_ids": []string{uniq("bob")}, "title": title})
		require.Equal(t, 422, r.Status, "%q: %s", title, r.Body)
		require.Equal(t, "invalid_title", r.ErrorCode())
	}
	r := alice.do("POST", "/v1/conversations", map[string]any{"participant_ids": []string{uniq("bob")}, "title": "Ünïcode títle 🎉"})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var list struct{ Conversations []events.Conversation }
	alice.do("GET", "/v1/conversations", nil).JSON(t, &list)
	require.Len(t, list.Conversations, 1, "the refused groups were not created")
}

func TestLoneSurrogateEscapeIsRefused(t *testing.T) {
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)
	path := "/v1/conversations/" + conv.ID + "/messages"
	for _, body := range []string{`{"body":"\ud800"}`, `{"body":"a\udc00b"}`, `{"body":"\ud800\u0041"}`, `{"body":"x\\\ud83d"}`} {
		r := alice.do("POST", path, body)
		require.Equal(t, 400, r.Status, "%s: %s", body, r.Body)
		require.Equal(t, "invalid_utf8", r.ErrorCode())
	}
	r := alice.do("POST", path, `{"body":"\ud83d\ude00 \\ud800 is text"}`)
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var m events.Message
	r.JSON(t, &m)
	require.Equal(t, "😀 \\ud800 is text", m.Body)
	var page struct{ Messages []events.Message }
	alice.do("GET", path, nil).JSON(t, &page)
	require.Len(t, page.Messages, 1, "nothing refused was stored")
}

func TestHasLoneSurrogate(t *testing.T) {
	for in, want := range map[string]bool{
		`"\ud800"`: true, `"\uDBFF\uDFFF"`: false, `"\udfff"`: true, `"\ud800\\udc00"`: true,
		`"\\ud800"`: false, `"\u00e9"`: false, `"\ud800`: true, `"\u12"`: false, `"\\\ud800"`: true,
	} {
		require.Equal(t, want, hasLoneSurrogate([]byte(in)), in)
	}
}

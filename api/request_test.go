package api

import (
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

func TestDecodeBody(t *testing.T) {
	var v messageRequest
	require.NoError(t, decodeBody([]byte(`{"body":"hi","client_id":"c"} `), &v))
	require.Equal(t, "hi", *v.Body)
	for _, tc := range []struct {
		in   string
		code string
	}{
		{"\xff{}", "invalid_utf8"},
		{"{\"body\":\"\xc3\x28\"}", "invalid_utf8"},
		{`{"body":`, "invalid_json"},
		{`{"body":"a"} {}`, "invalid_json"},
		{`{"body":"a"} x`, "invalid_json"},
		{`{"body":5}`, "invalid_json"},
		{`[]`, "invalid_json"},
		{``, "invalid_json"},
	} {
		var v messageRequest
		err := decodeBody([]byte(tc.in), &v)
		var e *Error
		require.True(t, errors.As(err, &e), "%q", tc.in)
		require.Equal(t, http.StatusBadRequest, e.Status(), "%q", tc.in)
		require.Equal(t, tc.code, e.Code, "%q", tc.in)
	}
}

// FuzzDecodeBody checks that any body either decodes or is a 400, never a panic or
// another status.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{`{"body":"hi","client_id":"c-1"}`, `{"body":"\u0000"}`, "\xff", `{"body":1}`, `null`, `{"seq":1e400}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m messageRequest
		var r readRequest
		var c createConversationRequest
		for _, v := range []any{&m, &r, &c} {
			if err := decodeBody(b, v); err != nil {
				var e *Error
				if !errors.As(err, &e) || e.Status() != http.StatusBadRequest {
					t.Fatalf("decodeBody(%q) = %v", b, err)
				}
			}
		}
	})
}

func TestConversationCursorRoundTrip(t *testing.T) {
	id, ok := events.ParseUUID("0b5e3c3e-4a8e-4f5e-9a3c-2d6f8e7a1b2c")
	require.True(t, ok)
	at := time.UnixMicro(1_764_400_000_123_456)
	gotAt, gotID, err := parseConversationCursor(conversationCursor(at, id))
	require.NoError(t, err)
	require.True(t, at.Equal(gotAt))
	require.Equal(t, id, gotID)
	for _, bad := range []string{"", "_", "1_", "x_0b5e3c3e-4a8e-4f5e-9a3c-2d6f8e7a1b2c", "-1_0b5e3c3e-4a8e-4f5e-9a3c-2d6f8e7a1b2c", "1_zz"} {
		_, _, err := parseConversationCursor(bad)
		require.Error(t, err, bad)
	}
}

// FuzzConversationCursor checks that the list cursor parser accepts only what it can
// reproduce, and rejects the rest with a 400.
func FuzzConversationCursor(f *testing.F) {
	f.Add("1764400000123456_0b5e3c3e-4a8e-4f5e-9a3c-2d6f8e7a1b2c")
	f.Add("0_00000000-0000-0000-0000-000000000000")
	f.Add("x")
	f.Fuzz(func(t *testing.T, s string) {
		at, id, err := parseConversationCursor(s)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Status() != http.StatusBadRequest {
				t.Fatalf("parseConversationCursor(%q) = %v", s, err)
			}
			return
		}
		again, againID, err := parseConversationCursor(conversationCursor(at, id))
		if err != nil || !again.Equal(at) || againID != id {
			t.Fatalf("%q does not round-trip", s)
		}
	})
}

// BenchmarkAppendFrames collects the frames of a batch of 16 message events, as each
// stream does per wake-up; the events are framed once, by the first stream.
func BenchmarkAppendFrames(b *testing.B) {
	data := []byte(`{"id":"0b5e3c3e-4a8e-4f5e-9a3c-2d6f8e7a1b2c","conversation_id":"0b5e3c3e-4a8e-4f5e-9a3c-2d6f8e7a1b2d","seq":42,"sender_id":"alice","body":"hello there, how are you doing today?","client_id":null,"created_at":"2026-11-29T08:00:00.123Z","edited_at":null,"deleted_at":null}`)
	evs := make([]*events.Event, 16)
	for i := range evs {
		evs[i] = &events.Event{Cursor: events.Cursor{Tx: 1000, ID: int64(i + 1)}, Type: "message", Data: data}
	}
	frames := make([][]byte, 0, len(evs))
	b.ReportAllocs()
	b.SetBytes(int64(len(data) * len(evs)))
	for b.Loop() {
		frames, _ = appendFrames(frames[:0], evs, events.Cursor{})
	}
}

// Streams share the frame of an event: framing it for a thousand streams allocates it once.
func TestFramesAreSharedBetweenStreams(t *testing.T) {
	e := &events.Event{Cursor: events.Cursor{Tx: 7, ID: 9}, Type: "message", Data: []byte(`{"body":"hi"}`)}
	a, _ := appendFrames(nil, []*events.Event{e}, events.Cursor{})
	b, _ := appendFrames(nil, []*events.Event{e}, events.Cursor{})
	require.Equal(t, "id: 7_9\nevent: message\ndata: {\"body\":\"hi\"}\n\n", string(a[0]))
	require.Same(t, &a[0][0], &b[0][0], "the second stream reuses the first one's bytes")
}

// TestHijackedOutIgnoresEmptyWrites: an empty chunk ends a chunked body, so a batch whose
// events were all sent already (by the replay) must write nothing at all.
func TestHijackedOutIgnoresEmptyWrites(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	out := &hijackedOut{conn: server, w: server, timeout: time.Second}
	got := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(client)
		got <- string(b)
	}()
	require.NoError(t, out.send(nil))
	require.NoError(t, out.send([]byte("x")))
	out.close()
	require.Equal(t, "1\r\nx\r\n0\r\n\r\n", <-got)
}

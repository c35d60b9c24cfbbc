package api

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// sseEvent is one event as a browser's EventSource dispatches it.
type sseEvent struct {
	Type   string // "message" when the stream named none
	Data   string
	LastID string // the last event id after this event (what a reconnect would send)
	HasID  bool   // the event's own block had an id field
}

// sseParser interprets text/event-stream as the WHATWG HTML standard (§9.2.6) does, so
// tests see exactly what EventSource would: fields, comments, ids, retry and dispatch.
type sseParser struct {
	data     []string
	typ      string
	idBuf    string
	lastID   string
	blockID  bool
	retry    int
	comments []string
}

// line feeds one line (without its terminator); it returns an event when one dispatches.
func (p *sseParser) line(l string) *sseEvent {
	if l == "" {
		p.lastID = p.idBuf
		hadID := p.blockID
		p.blockID = false
		if len(p.data) == 0 {
			p.typ = ""
			return nil
		}
		ev := &sseEvent{Type: p.typ, Data: strings.Join(p.data, "\n"), LastID: p.lastID, HasID: hadID}
		if ev.Type == "" {
			ev.Type = "message"
		}
		p.data, p.typ = nil, ""
		return ev
	}
	if strings.HasPrefix(l, ":") {
		p.comments = append(p.comments, strings.TrimPrefix(l[1:], " "))
		return nil
	}
	field, value, _ := strings.Cut(l, ":")
	value = strings.TrimPrefix(value, " ")
	switch field {
	case "event":
		p.typ = value
	case "data":
		p.data = append(p.data, value)
	case "id":
		if !strings.ContainsRune(value, 0) {
			p.idBuf = value
			p.blockID = true
		}
	case "retry":
		if n, err := strconv.Atoi(value); err == nil && n >= 0 && strings.Trim(value, "0123456789") == "" {
			p.retry = n
		}
	}
	return nil
}

// parseAll feeds a whole stream, with any of the three line terminators.
func (p *sseParser) parseAll(s string) []sseEvent {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	var out []sseEvent
	for _, l := range strings.SplitAfter(s, "\n") {
		if !strings.HasSuffix(l, "\n") {
			break // an incomplete last line is not processed
		}
		if ev := p.line(strings.TrimSuffix(l, "\n")); ev != nil {
			out = append(out, *ev)
		}
	}
	return out
}

// stream is an open GET /v1/events, parsed in the background.
type stream struct {
	t       testing.TB
	Status  int
	Header  http.Header
	Events  chan sseEvent
	mu      sync.Mutex // guards parser, which the reading goroutine updates
	parser  *sseParser
	cancel  context.CancelFunc
	done    chan struct{}
	pinged  chan struct{}
	lastErr error
}

// openStream connects to url (a full /v1/events URL) with optional headers; tok may be "".
func openStream(t testing.TB, url, tok string, header map[string]string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "text/event-stream")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	s := &stream{t: t, Status: res.StatusCode, Header: res.Header, Events: make(chan sseEvent, 100000),
		parser: &sseParser{}, cancel: cancel, done: make(chan struct{}), pinged: make(chan struct{}, 100)}
	t.Cleanup(s.close)
	if res.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		close(s.done)
		close(s.Events)
		return s
	}
	go func() {
		defer close(s.done)
		defer close(s.Events)
		defer res.Body.Close()
		r := bufio.NewReader(res.Body)
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				s.lastErr = err
				return
			}
			l = strings.TrimSuffix(strings.TrimSuffix(l, "\n"), "\r")
			s.mu.Lock()
			n := len(s.parser.comments)
			ev := s.parser.line(l)
			pinged := len(s.parser.comments) > n && s.parser.comments[n] == "ping"
			s.mu.Unlock()
			if ev != nil {
				s.Events <- *ev
			}
			if pinged {
				select {
				case s.pinged <- struct{}{}:
				default:
				}
			}
		}
	}()
	return s
}

// state returns what the parser has seen so far: the retry delay, the comments and the
// last event id a reconnect would send.
func (s *stream) state() (retry int, comments []string, lastID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.parser.retry, append([]string(nil), s.parser.comments...), s.parser.lastID
}

func (s *stream) close() {
	s.cancel()
	<-s.done
}

// next returns the next event, failing the test after timeout.
func (s *stream) next(timeout time.Duration) sseEvent {
	s.t.Helper()
	select {
	case ev, ok := <-s.Events:
		if !ok { // closed after lastErr was set
			s.t.Fatalf("stream ended (%v)", s.lastErr)
		}
		return ev
	case <-time.After(timeout):
		s.t.Fatalf("no event within %v", timeout)
		return sseEvent{}
	}
}

// nextOf skips events of other types (typing, presence) and returns the next of typ.
func (s *stream) nextOf(typ string, timeout time.Duration) sseEvent {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ev := s.next(time.Until(deadline))
		if ev.Type == typ {
			return ev
		}
	}
}

// ended reports whether the server closed the stream within timeout.
func (s *stream) ended(timeout time.Duration) bool {
	select {
	case <-s.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

func TestSSEParserFollowsTheStandard(t *testing.T) {
	// The examples of the standard, plus the framing chatd writes.
	p := &sseParser{}
	evs := p.parseAll(": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n" +
		"data\ndata\n\ndata:\n\nretry: 2500\r\nevent: custom\rdata: a\r\ndata: b\n\n" + "id: 7\n\n" + "data: partial")
	require.Equal(t, []sseEvent{
		{Type: "message", Data: "first event", LastID: "1", HasID: true},
		{Type: "message", Data: "second event", LastID: "", HasID: true},
		{Type: "message", Data: " third event", LastID: ""},
		{Type: "message", Data: "\n", LastID: ""},
		{Type: "message", Data: "", LastID: ""},
		{Type: "custom", Data: "a\nb", LastID: ""},
	}, evs)
	require.Equal(t, 2500, p.retry)
	require.Equal(t, "7", p.lastID, "an id-only block sets the last event id without an event")
	require.Equal(t, []string{"test stream"}, p.comments)
}

func TestSSEFramingRoundTrips(t *testing.T) {
	var b []byte
	b = appendRetry(b, 1500*time.Millisecond)
	b = appendComment(b, "hello")
	b = appendEvent(b, "", "ready", []byte(`{"cursor":"1_1"}`))
	b = appendID(b, "1_1")
	b = appendEvent(b, "5_9", "message", []byte("line one\nline two\r\nline three"))
	b = appendEvent(b, "", "typing", []byte(`{}`))
	b = appendEvent(b, "6_1", "read", []byte(``))
	p := &sseParser{}
	evs := p.parseAll(string(b))
	require.Equal(t, []sseEvent{
		{Type: "ready", Data: `{"cursor":"1_1"}`, LastID: ""},
		{Type: "message", Data: "line one\nline two\nline three", LastID: "5_9", HasID: true},
		{Type: "typing", Data: `{}`, LastID: "5_9"},
		{Type: "read", Data: "", LastID: "6_1", HasID: true},
	}, evs)
	require.Equal(t, 1500, p.retry)
	require.Equal(t, []string{"hello"}, p.comments)
}

// FuzzSSEFraming checks that whatever data an event carries, a standard parser reads back
// exactly one event with that data (line endings normalised), type and id.
func FuzzSSEFraming(f *testing.F) {
	f.Add("7_1", "message", []byte(`{"a":"b"}`))
	f.Add("", "typing", []byte("x\ny\r\nz\r"))
	f.Fuzz(func(t *testing.T, id, typ string, data []byte) {
		if strings.ContainsAny(id+typ, "\r\n\x00") || typ == "" || strings.Contains(typ, ":") {
			t.Skip() // ids and types are chatd's own, never client text
		}
		p := &sseParser{}
		evs := p.parseAll(string(appendEvent(nil, id, typ, data)))
		want := strings.ReplaceAll(strings.ReplaceAll(string(data), "\r\n", "\n"), "\r", "\n")
		require.Len(t, evs, 1)
		require.Equal(t, typ, evs[0].Type)
		require.Equal(t, want, evs[0].Data)
		require.Equal(t, id, evs[0].LastID)
	})
}

package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

// restNoRedirect never follows redirects: an odd path must be answered, not redirected.
var restNoRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
	return http.ErrUseLastResponse
}}

// restDo makes one request with an explicit Content-Type ("" for none) and raw body (nil for
// none). It never touches a testing.T, so goroutines may call it.
func restDo(method, url, tok, contentType string, body []byte) (response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return response{}, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := restNoRedirect.Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return response{Status: res.StatusCode, Header: res.Header, Body: b}, err
}

func restCall(t testing.TB, method, url, tok, contentType string, body []byte) response {
	t.Helper()
	r, err := restDo(method, url, tok, contentType, body)
	require.NoError(t, err)
	return r
}

// restJSON sends v (nil for no body) as application/json without following redirects.
func restJSON(t testing.TB, method, url, tok string, v any) response {
	t.Helper()
	if v == nil {
		return restCall(t, method, url, tok, "", nil)
	}
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return restCall(t, method, url, tok, "application/json", b)
}

func restMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// restRequireError checks a non-2xx answer: the status, a JSON Content-Type and the error
// body with a non-empty code (equal to code unless code is "") and message.
func restRequireError(t testing.TB, r response, status int, code string) errorBody {
	t.Helper()
	require.Equal(t, status, r.Status, "body: %s", r.Body)
	require.True(t, strings.HasPrefix(r.Header.Get("Content-Type"), "application/json"),
		"Content-Type %q, body %s", r.Header.Get("Content-Type"), r.Body)
	var e errorBody
	require.NoError(t, json.Unmarshal(r.Body, &e), "body: %s", r.Body)
	require.NotEmpty(t, e.Error.Code, "body: %s", r.Body)
	require.NotEmpty(t, e.Error.Message, "body: %s", r.Body)
	if code != "" {
		require.Equal(t, code, e.Error.Code, "body: %s", r.Body)
	}
	return e
}

// restConvState is everything a rejected request must leave untouched in one conversation.
type restConvState struct {
	LastSeq    int64
	UpdatedAt  time.Time
	ActivityAt time.Time
	Messages   int64
	Events     int64
	Rows       string // every message row, in seq order
	Members    string // every member with its last_read_seq
}

func restSnapshot(t testing.TB, pool *pgxpool.Pool, conv string) restConvState {
	t.Helper()
	var s restConvState
	err := pool.QueryRow(context.Background(), `
		SELECT c.last_seq, c.updated_at, c.activity_at,
		  (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id),
		  (SELECT count(*) FROM events e WHERE e.conversation_id = c.id),
		  (SELECT coalesce(string_agg(format('%s|%s|%s|%s|%s|%s|%s', m.id, m.seq, m.sender_id, m.body,
		      m.client_id, m.edited_at, m.deleted_at), E'\n' ORDER BY m.seq), '')
		   FROM messages m WHERE m.conversation_id = c.id),
		  (SELECT coalesce(string_agg(b.user_id || '=' || b.last_read_seq, ',' ORDER BY b.user_id), '')
		   FROM members b WHERE b.conversation_id = c.id)
		FROM conversations c WHERE c.id = $1`, conv).
		Scan(&s.LastSeq, &s.UpdatedAt, &s.ActivityAt, &s.Messages, &s.Events, &s.Rows, &s.Members)
	require.NoError(t, err)
	return s
}

// restCount runs a count query with args.
func restCount(t testing.TB, pool *pgxpool.Pool, query string, args ...any) int64 {
	t.Helper()
	var n int64
	require.NoError(t, pool.QueryRow(context.Background(), query, args...).Scan(&n))
	return n
}

func restEventCount(t testing.TB, pool *pgxpool.Pool, conv, typ string) int64 {
	t.Helper()
	return restCount(t, pool, `SELECT count(*) FROM events WHERE conversation_id = $1 AND type = $2`, conv, typ)
}

// restRandomUUID is a valid-format id that names nothing.
func restRandomUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

type restMsgPage struct {
	Messages []events.Message `json:"messages"`
	HasMore  bool             `json:"has_more"`
}

type restConvPage struct {
	Conversations []events.Conversation `json:"conversations"`
	NextCursor    *string               `json:"next_cursor"`
}

type restUnread struct {
	Total         int64 `json:"total"`
	Conversations []struct {
		ID          string `json:"id"`
		UnreadCount int64  `json:"unread_count"`
	} `json:"conversations"`
}

func restSeqs(ms []events.Message) []int64 {
	out := make([]int64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

func restRange(lo, hi int64) []int64 {
	var out []int64
	for i := lo; i <= hi; i++ {
		out = append(out, i)
	}
	return out
}

// restConcurrently runs f(i) for i in [0, n) in n goroutines released at once.
func restConcurrently(n int, f func(i int)) {
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			f(i)
		}()
	}
	close(start)
	wg.Wait()
}

var restTimeFormat = regexp.MustCompile(`^"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z"$`)

// restRequireKeys checks that raw is a JSON object with exactly keys.
func restRequireKeys(t testing.TB, raw json.RawMessage, keys ...string) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(raw, &m), "%s", raw)
	got := make([]string, 0, len(m))
	for k := range m {
		got = append(got, k)
	}
	sort.Strings(got)
	sort.Strings(keys)
	require.Equal(t, keys, got, "%s", raw)
	return m
}

func restRequireConversationObject(t testing.TB, raw json.RawMessage) map[string]json.RawMessage {
	t.Helper()
	o := restRequireKeys(t, raw, "id", "kind", "title", "external_id", "metadata", "closed_at", "participants", "last_message", "last_read_seq",
		"unread_count", "created_at", "updated_at")
	require.Regexp(t, restTimeFormat, string(o["created_at"]))
	require.Regexp(t, restTimeFormat, string(o["updated_at"]))
	var parts []json.RawMessage
	require.NoError(t, json.Unmarshal(o["participants"], &parts))
	for _, p := range parts {
		restRequireKeys(t, p, "id", "name", "online")
	}
	if string(o["last_message"]) != "null" {
		restRequireMessageObject(t, o["last_message"])
	}
	return o
}

func restRequireMessageObject(t testing.TB, raw json.RawMessage) {
	t.Helper()
	o := restRequireKeys(t, raw, "id", "conversation_id", "seq", "kind", "sender_id", "body", "client_id",
		"created_at", "edited_at", "deleted_at", "attachments")
	require.Regexp(t, restTimeFormat, string(o["created_at"]))
	require.Equal(t, byte('['), o["attachments"][0], "attachments is always a list: %s", raw)
	var seq int64
	require.NoError(t, json.Unmarshal(o["seq"], &seq), "seq is an integer")
	var id string
	require.NoError(t, json.Unmarshal(o["id"], &id), "id is a string")
}

package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
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
		hyphens := func(sep string) string { return strings.ReplaceAll(conv.ID, "-", sep) }
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
		for _, o := range odd {
			paths := []struct{ method, path string }{
				{"GET", "/v1/conversations/" + o.id},
				{"GET", "/v1/conversations/" + o.id + "/messages"},
				{"POST", "/v1/conversations/" + o.id + "/messages"},
				{"PATCH", "/v1/conversations/" + o.id + "/messages/" + m.ID},
				{"DELETE", "/v1/conversations/" + o.id + "/messages/" + m.ID},
				{"PATCH", base + "/messages/" + o.id},
				{"DELETE", base + "/messages/" + o.id},
				{"POST", "/v1/conversations/" + o.id + "/read"},
				{"POST", "/v1/conversations/" + o.id + "/typing"},
			}
			for _, p := range paths {
				t.Run(o.name+" "+p.method+" "+p.path, func(t *testing.T) {
					var body any
					switch {
					case strings.HasSuffix(p.path, "/read"):
						body = map[string]any{"seq": 1}
					case strings.HasSuffix(p.path, "/typing"):
						body = map[string]any{"typing": true}
					case p.method == "POST" || p.method == "PATCH":
						body = map[string]any{"body": "hi"}
					}
					// alice is a participant of conv: only the id decides.
					for _, u := range []*testUser{alice, mallory} {
						r := restJSON(t, p.method, in.URL+p.path, u.Token, body)
						restRequireError(t, r, http.StatusNotFound, "not_found")
						require.Empty(t, r.Header.Get("Location"))
					}
				})
			}
		}
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

// ---------------------------------------------------------------------------------------
// 2. JWT attacks, end to end

func restSign(t testing.TB, m jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	require.NoError(t, err)
	return s
}

func TestJWTAttacksGet401(t *testing.T) {
	t.Parallel()
	now := time.Now()
	claims := func(mods ...func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"sub": uniq("victim"), "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		for _, m := range mods {
			m(c)
		}
		return c
	}
	set := func(k string, v any) func(jwt.MapClaims) { return func(c jwt.MapClaims) { c[k] = v } }
	del := func(k string) func(jwt.MapClaims) { return func(c jwt.MapClaims) { delete(c, k) } }

	t.Run("HMAC instance", func(t *testing.T) {
		t.Parallel()
		in := newInstance(t)
		valid := restSign(t, jwt.SigningMethodHS256, testSecret, claims())
		other := restSign(t, jwt.SigningMethodHS256, testSecret, claims())
		none := restSign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims())
		vp, op := strings.Split(valid, "."), strings.Split(other, ".")
		tests := []struct{ name, path, auth string }{
			{"no credentials", "/v1/unread", ""},
			{"alg none", "/v1/unread", "Bearer " + none},
			{"alg none, signature stripped", "/v1/unread", "Bearer " + vp[0] + "." + vp[1] + "."},
			{"bad signature", "/v1/unread", "Bearer " + restSign(t, jwt.SigningMethodHS256, []byte("not-the-secret-not-the-secret!!!"), claims())},
			{"payload of another token", "/v1/unread", "Bearer " + vp[0] + "." + op[1] + "." + vp[2]},
			{"expired", "/v1/unread", "Bearer " + restSign(t, jwt.SigningMethodHS256, testSecret, claims(set("exp", now.Add(-time.Hour).Unix())))},
			{"nbf in the future", "/v1/unread", "Bearer " + restSign(t, jwt.SigningMethodHS256, testSecret, claims(set("nbf", now.Add(time.Hour).Unix())))},
			{"missing sub", "/v1/unread", "Bearer " + restSign(t, jwt.SigningMethodHS256, testSecret, claims(del("sub")))},
			{"missing exp", "/v1/unread", "Bearer " + restSign(t, jwt.SigningMethodHS256, testSecret, claims(del("exp")))},
			{"not a Bearer scheme", "/v1/unread", "Basic " + valid},
			{"empty Bearer", "/v1/unread", "Bearer "},
			{"garbage", "/v1/unread", "Bearer a.b.c"},
			{"JWT in ?access_token=", "/v1/unread?access_token=" + valid, ""},
			{"JWT in ?access_token= on the stream", "/v1/events?access_token=" + valid, ""},
			{"JWT in ?access_token= on the long poll", "/v1/events/poll?access_token=" + valid, ""},
			{"JWT in ?token=", "/v1/conversations?token=" + valid, ""},
			{"JWT as a stream ticket", "/v1/events?ticket=" + valid, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				req, err := http.NewRequest("GET", in.URL+tt.path, nil)
				require.NoError(t, err)
				if tt.auth != "" {
					req.Header.Set("Authorization", tt.auth)
				}
				res, err := restNoRedirect.Do(req)
				require.NoError(t, err)
				defer res.Body.Close()
				b, err := io.ReadAll(res.Body)
				require.NoError(t, err)
				restRequireError(t, response{Status: res.StatusCode, Header: res.Header, Body: b}, http.StatusUnauthorized, "")
			})
		}
		r := restCall(t, "GET", in.URL+"/v1/unread", valid, "", nil)
		require.Equal(t, 200, r.Status, "the valid token itself works: %s", r.Body)
	})

	t.Run("RSA instance with issuer and audience", func(t *testing.T) {
		t.Parallel()
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		require.NoError(t, err)
		otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
		require.NoError(t, err)
		der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
		require.NoError(t, err)
		pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		in := newInstance(t, func(c *Config, _ *events.Config) {
			v, err := NewVerifier(context.Background(), KeyConfig{PublicKeyPEM: pubPEM, Issuer: "iss", Audience: "aud"})
			require.NoError(t, err)
			c.Verifier = v
		})
		good := func(mods ...func(jwt.MapClaims)) jwt.MapClaims {
			return claims(append([]func(jwt.MapClaims){set("iss", "iss"), set("aud", "aud")}, mods...)...)
		}
		tests := []struct{ name, token string }{
			{"HS256 signed with the RSA public PEM as secret", restSign(t, jwt.SigningMethodHS256, pubPEM, good())},
			{"HS256 with the test secret (no secret configured)", restSign(t, jwt.SigningMethodHS256, testSecret, good())},
			{"alg none", restSign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good())},
			{"RS256 by another key", restSign(t, jwt.SigningMethodRS256, otherKey, good())},
			{"wrong iss", restSign(t, jwt.SigningMethodRS256, key, good(set("iss", "evil")))},
			{"missing iss", restSign(t, jwt.SigningMethodRS256, key, good(del("iss")))},
			{"wrong aud", restSign(t, jwt.SigningMethodRS256, key, good(set("aud", "other")))},
			{"missing aud", restSign(t, jwt.SigningMethodRS256, key, good(del("aud")))},
			{"expired", restSign(t, jwt.SigningMethodRS256, key, good(set("exp", now.Add(-time.Hour).Unix())))},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				restRequireError(t, restCall(t, "GET", in.URL+"/v1/unread", tt.token, "", nil), http.StatusUnauthorized, "")
			})
		}
		r := restCall(t, "GET", in.URL+"/v1/unread", restSign(t, jwt.SigningMethodRS256, key, good()), "", nil)
		require.Equal(t, 200, r.Status, "a correct RS256 token: %s", r.Body)
	})
}

// ---------------------------------------------------------------------------------------
// 4, 5. Concurrency

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

func TestConcurrentSendsSameClientIDCreateOneMessage(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)
	url := in.URL + "/v1/conversations/" + conv.ID + "/messages"
	body := restMarshal(t, map[string]any{"body": "exactly once", "client_id": "same-key"})

	const n = 50
	results := make([]response, n)
	errs := make([]error, n)
	restConcurrently(n, func(i int) {
		results[i], errs[i] = restDo("POST", url, alice.Token, "application/json", body)
	})
	statuses := map[int]int{}
	ids := map[string]bool{}
	for i, r := range results {
		require.NoError(t, errs[i])
		statuses[r.Status]++
		require.Contains(t, []int{200, 201}, r.Status, "%s", r.Body)
		var m events.Message
		r.JSON(t, &m)
		require.Equal(t, "exactly once", m.Body)
		require.EqualValues(t, 1, m.Seq)
		ids[m.ID] = true
	}
	require.Equal(t, map[int]int{201: 1, 200: n - 1}, statuses)
	require.Len(t, ids, 1, "every answer is the same message")

	require.EqualValues(t, 1, restCount(t, in.Pool, `SELECT count(*) FROM messages WHERE conversation_id = $1`, conv.ID))
	require.EqualValues(t, 1, restEventCount(t, in.Pool, conv.ID, "message"))
	st := restSnapshot(t, in.Pool, conv.ID)
	require.EqualValues(t, 1, st.LastSeq, "retried sends must not burn seqs")
	var page restMsgPage
	bob.do("GET", "/v1/conversations/"+conv.ID+"/messages", nil).OK(t, &page)
	require.Len(t, page.Messages, 1)

	// The key is per sender: bob may use the same client_id for a message of his own.
	r := bob.do("POST", "/v1/conversations/"+conv.ID+"/messages", map[string]any{"body": "mine", "client_id": "same-key"})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var m events.Message
	r.JSON(t, &m)
	require.EqualValues(t, 2, m.Seq)
}

func TestConcurrentSendsGetGapFreeSeq(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)
	url := in.URL + "/v1/conversations/" + conv.ID + "/messages"

	const n = 200
	results := make([]response, n)
	errs := make([]error, n)
	restConcurrently(n, func(i int) {
		u := alice
		if i%2 == 1 {
			u = bob
		}
		body, _ := json.Marshal(map[string]any{"body": fmt.Sprintf("m-%d", i)})
		results[i], errs[i] = restDo("POST", url, u.Token, "application/json", body)
	})
	sent := map[string]events.Message{}
	var seqs []int64
	var aliceMax int64
	for i, r := range results {
		require.NoError(t, errs[i])
		require.Equal(t, 201, r.Status, "%s", r.Body)
		var m events.Message
		r.JSON(t, &m)
		require.Equal(t, fmt.Sprintf("m-%d", i), m.Body)
		sent[m.ID] = m
		seqs = append(seqs, m.Seq)
		if m.SenderID == alice.ID {
			aliceMax = max(aliceMax, m.Seq)
		}
	}
	slices.Sort(seqs)
	require.Equal(t, restRange(1, n), seqs, "seq is 1..n with no gap and no duplicate")
	require.Len(t, sent, n)

	st := restSnapshot(t, in.Pool, conv.ID)
	require.EqualValues(t, n, st.LastSeq)
	require.EqualValues(t, n, st.Messages)
	require.EqualValues(t, n, restEventCount(t, in.Pool, conv.ID, "message"))

	// History agrees, whoever reads it and however it is paged.
	var all restMsgPage
	alice.do("GET", "/v1/conversations/"+conv.ID+"/messages?limit=200", nil).OK(t, &all)
	require.False(t, all.HasMore)
	require.Equal(t, restRange(1, n), restSeqs(all.Messages))
	for _, m := range all.Messages {
		require.Equal(t, sent[m.ID], m, "history shows the message as its send returned it")
	}
	var fromBob restMsgPage
	bob.do("GET", "/v1/conversations/"+conv.ID+"/messages?limit=200", nil).OK(t, &fromBob)
	require.Equal(t, all, fromBob)

	var forward []events.Message
	for after, more := int64(0), true; more; {
		var p restMsgPage
		alice.do("GET", fmt.Sprintf("/v1/conversations/%s/messages?limit=37&after_seq=%d", conv.ID, after), nil).OK(t, &p)
		forward = append(forward, p.Messages...)
		more = p.HasMore
		if len(p.Messages) > 0 {
			after = p.Messages[len(p.Messages)-1].Seq
		}
	}
	require.Equal(t, all.Messages, forward)
	var backward []events.Message
	for before, more := int64(n+1), true; more; {
		var p restMsgPage
		bob.do("GET", fmt.Sprintf("/v1/conversations/%s/messages?limit=64&before_seq=%d", conv.ID, before), nil).OK(t, &p)
		backward = append(p.Messages, backward...)
		more = p.HasMore
		before = p.Messages[0].Seq
	}
	require.Equal(t, all.Messages, backward)

	// Unread agrees with the commit order: bob's messages after alice's last send.
	var want int64
	for _, m := range sent {
		if m.SenderID == bob.ID && m.Seq > aliceMax {
			want++
		}
	}
	var u restUnread
	alice.do("GET", "/v1/unread", nil).OK(t, &u)
	require.Equal(t, want, u.Total)
}

// ---------------------------------------------------------------------------------------
// 6. Unread counts

// restRequireUnread checks u's unread counts wherever they show: GET /v1/unread lists exactly
// the conversations with unread > 0 and total is their sum; every conversation object (one
// by one and listed) has the wanted unread_count and last_read_seq.
func restRequireUnread(t testing.TB, u *testUser, unread, lastRead map[string]int64) {
	t.Helper()
	r := u.do("GET", "/v1/unread", nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	require.NotContains(t, string(r.Body), `"conversations":null`)
	var got restUnread
	r.JSON(t, &got)
	gotMap := map[string]int64{}
	var sum int64
	for _, c := range got.Conversations {
		require.Positive(t, c.UnreadCount, "only conversations with unread messages are listed")
		gotMap[c.ID] = c.UnreadCount
		sum += c.UnreadCount
	}
	want := map[string]int64{}
	var wantTotal int64
	for id, n := range unread {
		if n > 0 {
			want[id] = n
			wantTotal += n
		}
	}
	require.Equal(t, want, gotMap, "GET /v1/unread of %s", u.ID)
	require.Equal(t, sum, got.Total)
	require.Equal(t, wantTotal, got.Total)

	var list restConvPage
	u.do("GET", "/v1/conversations?limit=100", nil).OK(t, &list)
	listed := map[string]events.Conversation{}
	for _, c := range list.Conversations {
		listed[c.ID] = c
	}
	for id, n := range unread {
		var c events.Conversation
		r := u.do("GET", "/v1/conversations/"+id, nil)
		require.Equal(t, 200, r.Status, "%s", r.Body)
		r.JSON(t, &c)
		require.Equal(t, n, c.UnreadCount, "unread_count of %s for %s", id, u.ID)
		require.Equal(t, lastRead[id], c.LastReadSeq, "last_read_seq of %s for %s", id, u.ID)
		require.Equal(t, n, listed[id].UnreadCount, "listed unread_count")
		require.Equal(t, lastRead[id], listed[id].LastReadSeq, "listed last_read_seq")
	}
}

func TestUnreadCounts(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	alice, bob, carol, dave := newUser(t, in, "alice"), newUser(t, in, "bob"), newUser(t, in, "carol"), newUser(t, in, "dave")
	c1, c2, c3 := alice.direct(bob).ID, alice.direct(carol).ID, alice.direct(dave).ID
	read := func(u *testUser, conv string, seq int64) {
		t.Helper()
		r := u.do("POST", "/v1/conversations/"+conv+"/read", map[string]any{"seq": seq})
		require.Equal(t, 204, r.Status, "%s", r.Body)
		require.Empty(t, r.Body)
	}
	edit := func(u *testUser, conv string, m events.Message, method string) {
		t.Helper()
		var body any
		if method == "PATCH" {
			body = map[string]any{"body": "edited"}
		}
		r := u.do(method, "/v1/conversations/"+conv+"/messages/"+m.ID, body)
		require.Equal(t, 200, r.Status, "%s", r.Body)
	}
	lastRead := func(conv, user string) int64 {
		return restCount(t, in.Pool, `SELECT last_read_seq FROM members WHERE conversation_id = $1 AND user_id = $2`, conv, user)
	}

	restRequireUnread(t, alice, map[string]int64{c1: 0, c2: 0, c3: 0}, map[string]int64{c1: 0, c2: 0, c3: 0})

	var b []events.Message
	for i := range 3 {
		b = append(b, bob.send(c1, fmt.Sprint("b", i+1))) // seq 1..3
	}
	restRequireUnread(t, alice, map[string]int64{c1: 3, c2: 0, c3: 0}, map[string]int64{c1: 0, c2: 0, c3: 0})
	restRequireUnread(t, bob, map[string]int64{c1: 0}, map[string]int64{c1: 3}) // own sends never count

	carol.send(c2, "c1")
	carol.send(c2, "c2")
	restRequireUnread(t, alice, map[string]int64{c1: 3, c2: 2, c3: 0}, map[string]int64{c1: 0, c2: 0, c3: 0})

	read(alice, c1, 2)
	restRequireUnread(t, alice, map[string]int64{c1: 1, c2: 2}, map[string]int64{c1: 2, c2: 0})

	// Replying marks the conversation read for the sender.
	alice.send(c1, "a4") // seq 4
	restRequireUnread(t, alice, map[string]int64{c1: 0, c2: 2}, map[string]int64{c1: 4, c2: 0})
	restRequireUnread(t, bob, map[string]int64{c1: 1}, map[string]int64{c1: 3})

	for i := 5; i <= 7; i++ {
		b = append(b, bob.send(c1, fmt.Sprint("b", i))) // b[3..5] = seq 5..7
	}
	restRequireUnread(t, alice, map[string]int64{c1: 3, c2: 2}, map[string]int64{c1: 4, c2: 0})
	restRequireUnread(t, bob, map[string]int64{c1: 0}, map[string]int64{c1: 7})

	// Reads never move backwards.
	read(alice, c1, 5)
	read(alice, c1, 2)
	restRequireUnread(t, alice, map[string]int64{c1: 2, c2: 2}, map[string]int64{c1: 5, c2: 0})
	require.EqualValues(t, 5, lastRead(c1, alice.ID))

	// A deleted unread message stops counting; deleting a read one changes nothing.
	edit(bob, c1, b[4], "DELETE") // seq 6, unread
	restRequireUnread(t, alice, map[string]int64{c1: 1, c2: 2}, map[string]int64{c1: 5, c2: 0})
	edit(bob, c1, b[0], "DELETE") // seq 1, read
	restRequireUnread(t, alice, map[string]int64{c1: 1, c2: 2}, map[string]int64{c1: 5, c2: 0})

	// Edits change nothing.
	edit(bob, c1, b[5], "PATCH") // seq 7, unread
	edit(bob, c1, b[1], "PATCH") // seq 2, read
	restRequireUnread(t, alice, map[string]int64{c1: 1, c2: 2}, map[string]int64{c1: 5, c2: 0})

	// A read far beyond the last message is clamped to it, so the next message counts.
	read(alice, c1, 1_000_000)
	restRequireUnread(t, alice, map[string]int64{c1: 0, c2: 2}, map[string]int64{c1: 7, c2: 0})
	require.EqualValues(t, 7, lastRead(c1, alice.ID))
	bob.send(c1, "b8")
	restRequireUnread(t, alice, map[string]int64{c1: 1, c2: 2}, map[string]int64{c1: 7, c2: 0})

	read(alice, c2, 2)
	restRequireUnread(t, alice, map[string]int64{c1: 1, c2: 0, c3: 0}, map[string]int64{c1: 7, c2: 2, c3: 0})

	// A group: messages from everyone else count.
	r := alice.do("POST", "/v1/conversations", map[string]any{"participant_ids": []string{bob.ID, carol.ID}})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var g events.Conversation
	r.JSON(t, &g)
	bob.send(g.ID, "hi all")
	carol.send(g.ID, "hello")
	restRequireUnread(t, alice, map[string]int64{c1: 1, c2: 0, g.ID: 2}, map[string]int64{c1: 7, c2: 2, g.ID: 0})
	restRequireUnread(t, carol, map[string]int64{c2: 0, g.ID: 0}, map[string]int64{c2: 2, g.ID: 2})
	restRequireUnread(t, bob, map[string]int64{c1: 0, g.ID: 1}, map[string]int64{c1: 8, g.ID: 1})
}

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

// ---------------------------------------------------------------------------------------
// 8. History windows

func TestHistoryWindows(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)
	for i := 1; i <= 7; i++ {
		u := alice
		if i%2 == 0 {
			u = bob
		}
		u.send(conv.ID, fmt.Sprint("m", i))
	}
	tests := []struct {
		query   string
		seqs    []int64
		hasMore bool
	}{
		{"", restRange(1, 7), false},
		{"limit=3", []int64{5, 6, 7}, true},
		{"before_seq=5&limit=3", []int64{2, 3, 4}, true},
		{"before_seq=4&limit=3", []int64{1, 2, 3}, false},
		{"before_seq=2&limit=3", []int64{1}, false},
		{"before_seq=1", []int64{}, false},
		{"after_seq=4&limit=2", []int64{5, 6}, true},
		{"after_seq=5&limit=2", []int64{6, 7}, false},
		{"after_seq=6&limit=2", []int64{7}, false},
		{"after_seq=0&limit=3", []int64{1, 2, 3}, true},
		{"after_seq=7", []int64{}, false},
		{"limit=7", restRange(1, 7), false},
		{"limit=200", restRange(1, 7), false},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			r := alice.do("GET", "/v1/conversations/"+conv.ID+"/messages?"+tt.query, nil)
			require.Equal(t, 200, r.Status, "%s", r.Body)
			require.NotContains(t, string(r.Body), `"messages":null`)
			var p restMsgPage
			r.JSON(t, &p)
			require.Equal(t, tt.seqs, restSeqs(p.Messages))
			require.Equal(t, tt.hasMore, p.HasMore)
			for _, m := range p.Messages {
				require.Equal(t, fmt.Sprint("m", m.Seq), m.Body)
				require.Equal(t, conv.ID, m.ConversationID)
			}
		})
	}
}

// ---------------------------------------------------------------------------------------
// 9. Conversations

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
	o := restRequireKeys(t, raw, "id", "kind", "title", "participants", "last_message", "last_read_seq",
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
	o := restRequireKeys(t, raw, "id", "conversation_id", "seq", "sender_id", "body", "client_id",
		"created_at", "edited_at", "deleted_at")
	require.Regexp(t, restTimeFormat, string(o["created_at"]))
	var seq int64
	require.NoError(t, json.Unmarshal(o["seq"], &seq), "seq is an integer")
	var id string
	require.NoError(t, json.Unmarshal(o["id"], &id), "id is a string")
}

func restNames(c events.Conversation) map[string]*string {
	out := map[string]*string{}
	for _, p := range c.Participants {
		out[p.ID] = p.Name
	}
	return out
}

func TestConversationDirectGroupAndObject(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	aliceID := uniq("alice")
	tok, err := SignHS256(testSecret, aliceID, "Alice Liddell", time.Hour, time.Now())
	require.NoError(t, err)
	alice := &testUser{t: t, ID: aliceID, Token: tok, URL: in.URL}
	bob, carol := newUser(t, in, "bob"), newUser(t, in, "carol")
	ghost := uniq("ghost") // never signs in

	r := alice.do("POST", "/v1/conversations", map[string]any{"participant_id": bob.ID})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	o := restRequireConversationObject(t, r.Body)
	require.JSONEq(t, `"direct"`, string(o["kind"]))
	require.JSONEq(t, `null`, string(o["title"]))
	require.JSONEq(t, `null`, string(o["last_message"]))
	require.JSONEq(t, `0`, string(o["last_read_seq"]))
	require.JSONEq(t, `0`, string(o["unread_count"]))
	var d events.Conversation
	r.JSON(t, &d)
	alicesName := "Alice Liddell"
	require.Equal(t, map[string]*string{alice.ID: &alicesName, bob.ID: nil}, restNames(d))

	for _, ask := range []struct {
		who   *testUser
		other string
	}{{alice, bob.ID}, {bob, alice.ID}, {alice, bob.ID}} {
		r := ask.who.do("POST", "/v1/conversations", map[string]any{"participant_id": ask.other})
		require.Equal(t, 200, r.Status, "%s", r.Body)
		var again events.Conversation
		r.JSON(t, &again)
		require.Equal(t, d.ID, again.ID)
	}
	require.EqualValues(t, 1, restEventCount(t, in.Pool, d.ID, "conversation"), "a direct conversation is announced once")

	// A participant that never signed in has a user row with no name.
	r = alice.do("POST", "/v1/conversations", map[string]any{"participant_id": ghost})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var withGhost events.Conversation
	r.JSON(t, &withGhost)
	require.Equal(t, map[string]*string{alice.ID: &alicesName, ghost: nil}, restNames(withGhost))

	// Groups: a new one every time.
	var groups []events.Conversation
	for range 2 {
		r := alice.do("POST", "/v1/conversations", map[string]any{"participant_ids": []string{bob.ID, carol.ID, ghost}, "title": "Team"})
		require.Equal(t, 201, r.Status, "%s", r.Body)
		restRequireConversationObject(t, r.Body)
		var g events.Conversation
		r.JSON(t, &g)
		require.Equal(t, "group", g.Kind)
		require.NotNil(t, g.Title)
		require.Equal(t, "Team", *g.Title)
		require.Len(t, g.Participants, 4)
		require.Equal(t, map[string]*string{alice.ID: &alicesName, bob.ID: nil, carol.ID: nil, ghost: nil}, restNames(g))
		require.EqualValues(t, 1, restEventCount(t, in.Pool, g.ID, "conversation"))
		groups = append(groups, g)
	}
	require.NotEqual(t, groups[0].ID, groups[1].ID)

	// With a message, last_message is the message object and GET returns the same object.
	sent := bob.send(d.ID, "hello")
	r = alice.do("GET", "/v1/conversations/"+d.ID, nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	restRequireConversationObject(t, r.Body)
	var got events.Conversation
	r.JSON(t, &got)
	require.NotNil(t, got.LastMessage)
	require.Equal(t, sent, *got.LastMessage)
	require.EqualValues(t, 1, got.UnreadCount)
}

func TestConversationListOrderAndPaging(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	alice, bob, carol := newUser(t, in, "alice"), newUser(t, in, "bob"), newUser(t, in, "carol")
	a := alice.direct(bob).ID
	b := alice.direct(carol).ID
	r := alice.do("POST", "/v1/conversations", map[string]any{"participant_ids": []string{bob.ID, carol.ID}})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var g events.Conversation
	r.JSON(t, &g)

	list := func(u *testUser, query string) restConvPage {
		t.Helper()
		r := u.do("GET", "/v1/conversations?"+query, nil)
		require.Equal(t, 200, r.Status, "%s", r.Body)
		var p restConvPage
		r.JSON(t, &p)
		return p
	}
	ids := func(p restConvPage) []string {
		var out []string
		for _, c := range p.Conversations {
			out = append(out, c.ID)
		}
		return out
	}
	walk := func(u *testUser, limit int) ([]string, int) {
		t.Helper()
		var all []string
		pages := 0
		q := "limit=" + strconv.Itoa(limit)
		for {
			p := list(u, q)
			pages++
			require.LessOrEqual(t, len(p.Conversations), limit)
			all = append(all, ids(p)...)
			if p.NextCursor == nil {
				return all, pages
			}
			require.NotEmpty(t, p.Conversations)
			q = "limit=" + strconv.Itoa(limit) + "&cursor=" + url.QueryEscape(*p.NextCursor)
			require.Less(t, pages, 10, "paging does not end")
		}
	}

	// Empty conversations order by creation time, newest first.
	require.Equal(t, []string{g.ID, b, a}, ids(list(alice, "")))
	// A message moves its conversation first.
	bob.send(a, "bump a")
	require.Equal(t, []string{a, g.ID, b}, ids(list(alice, "")))
	alice.send(b, "bump b")
	require.Equal(t, []string{b, a, g.ID}, ids(list(alice, "")))
	require.Equal(t, []string{a, g.ID}, ids(list(bob, "")), "bob sees only his own")
	// Editing is not activity.
	p := list(alice, "")
	m := p.Conversations[1].LastMessage
	require.NotNil(t, m)
	r = bob.do("PATCH", "/v1/conversations/"+a+"/messages/"+m.ID, map[string]any{"body": "edited"})
	require.Equal(t, 200, r.Status, "%s", r.Body)
	require.Equal(t, []string{b, a, g.ID}, ids(list(alice, "")))

	all, pages := walk(alice, 1)
	require.Equal(t, []string{b, a, g.ID}, all)
	require.Equal(t, 3, pages, "limit=1 over three conversations: three pages, the last with next_cursor null")
	all, pages = walk(alice, 2)
	require.Equal(t, []string{b, a, g.ID}, all)
	require.Equal(t, 2, pages)
	all, _ = walk(alice, 3)
	require.Equal(t, []string{b, a, g.ID}, all)

	// A user without conversations gets an empty list, not null.
	r = newUser(t, in, "loner").do("GET", "/v1/conversations", nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	require.JSONEq(t, `{"conversations":[],"next_cursor":null}`, string(r.Body))

	for _, q := range []string{"cursor=garbage", "cursor=", "cursor=123_notauuid", "cursor=-5_" + restRandomUUID(),
		"cursor=" + restRandomUUID(), "limit=0", "limit=101", "limit=abc"} {
		r := alice.do("GET", "/v1/conversations?"+q, nil)
		restRequireError(t, r, http.StatusBadRequest, "")
	}
}

func TestConcurrentDirectCreateOneConversation(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	const n = 20
	results := make([]response, n)
	errs := make([]error, n)
	restConcurrently(n, func(i int) {
		me, other := alice, bob
		if i%2 == 1 {
			me, other = bob, alice
		}
		body, _ := json.Marshal(map[string]any{"participant_id": other.ID})
		results[i], errs[i] = restDo("POST", in.URL+"/v1/conversations", me.Token, "application/json", body)
	})
	statuses := map[int]int{}
	ids := map[string]bool{}
	for i, r := range results {
		require.NoError(t, errs[i])
		statuses[r.Status]++
		var c events.Conversation
		r.JSON(t, &c)
		ids[c.ID] = true
	}
	require.Equal(t, map[int]int{201: 1, 200: n - 1}, statuses)
	require.Len(t, ids, 1)
	for id := range ids {
		require.EqualValues(t, 1, restEventCount(t, in.Pool, id, "conversation"))
	}
}

// ---------------------------------------------------------------------------------------
// 10. Edit and delete

func TestEditDeleteSenderOnlyAndIdempotent(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob).ID
	r := alice.do("POST", "/v1/conversations/"+conv+"/messages", map[string]any{"body": "original", "client_id": "c-1"})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var m events.Message
	r.JSON(t, &m)
	theirs := bob.send(conv, "bob's")
	path := "/v1/conversations/" + conv + "/messages/" + m.ID
	theirPath := "/v1/conversations/" + conv + "/messages/" + theirs.ID

	before := restSnapshot(t, in.Pool, conv)
	restRequireError(t, bob.do("PATCH", path, map[string]any{"body": "not mine"}), http.StatusForbidden, "not_sender")
	restRequireError(t, bob.do("DELETE", path, nil), http.StatusForbidden, "not_sender")
	restRequireError(t, alice.do("PATCH", theirPath, map[string]any{"body": "not mine"}), http.StatusForbidden, "not_sender")
	restRequireError(t, alice.do("DELETE", theirPath, nil), http.StatusForbidden, "not_sender")
	require.Equal(t, before, restSnapshot(t, in.Pool, conv))

	r = alice.do("PATCH", path, map[string]any{"body": "edited"})
	require.Equal(t, 200, r.Status, "%s", r.Body)
	restRequireMessageObject(t, r.Body)
	var edited events.Message
	r.JSON(t, &edited)
	require.Equal(t, m.ID, edited.ID)
	require.Equal(t, m.Seq, edited.Seq)
	require.Equal(t, "edited", edited.Body)
	require.NotNil(t, edited.EditedAt)
	require.Nil(t, edited.DeletedAt)
	require.Equal(t, m.ClientID, edited.ClientID)
	require.EqualValues(t, 1, restEventCount(t, in.Pool, conv, "message_updated"))

	r = alice.do("DELETE", path, nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	restRequireMessageObject(t, r.Body)
	var deleted events.Message
	r.JSON(t, &deleted)
	require.Equal(t, m.ID, deleted.ID)
	require.Equal(t, "", deleted.Body)
	require.NotNil(t, deleted.DeletedAt)
	require.EqualValues(t, 1, restEventCount(t, in.Pool, conv, "message_deleted"))

	afterDelete := restSnapshot(t, in.Pool, conv)
	restRequireError(t, alice.do("PATCH", path, map[string]any{"body": "resurrect"}), http.StatusConflict, "")
	restRequireError(t, bob.do("DELETE", path, nil), http.StatusForbidden, "not_sender")
	r = alice.do("DELETE", path, nil)
	require.Equal(t, 200, r.Status, "deleting again is idempotent: %s", r.Body)
	var again events.Message
	r.JSON(t, &again)
	require.Equal(t, deleted, again)
	require.Equal(t, afterDelete, restSnapshot(t, in.Pool, conv), "no second message_deleted event, no change")
	require.EqualValues(t, 1, restEventCount(t, in.Pool, conv, "message_deleted"))
	require.EqualValues(t, 1, restEventCount(t, in.Pool, conv, "message_updated"))

	// The message keeps its place in history, empty and marked deleted.
	var p restMsgPage
	bob.do("GET", "/v1/conversations/"+conv+"/messages", nil).OK(t, &p)
	require.Equal(t, []events.Message{deleted, theirs}, p.Messages)
}

// ---------------------------------------------------------------------------------------
// 11. Rate limit

func TestRateLimitWritesGet429(t *testing.T) {
	t.Parallel()
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	in := newInstance(t, func(c *Config, _ *events.Config) {
		c.WriteRate, c.WriteBurst = 1, 2
		c.Now = func() time.Time { return time.Unix(0, clock.Load()) }
	})
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	r := alice.do("POST", "/v1/conversations", map[string]any{"participant_id": bob.ID}) // write 1
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var conv events.Conversation
	r.JSON(t, &conv)
	msgs := "/v1/conversations/" + conv.ID + "/messages"
	r = alice.do("POST", msgs, map[string]any{"body": "two"}) // write 2
	require.Equal(t, 201, r.Status, "%s", r.Body)

	r = alice.do("POST", msgs, map[string]any{"body": "three"})
	restRequireError(t, r, http.StatusTooManyRequests, "rate_limited")
	wait, err := strconv.Atoi(r.Header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After %q", r.Header.Get("Retry-After"))
	require.Positive(t, wait)
	restRequireError(t, alice.do("POST", "/v1/conversations/"+conv.ID+"/read", map[string]any{"seq": 1}), http.StatusTooManyRequests, "rate_limited")
	require.EqualValues(t, 1, restSnapshot(t, in.Pool, conv.ID).Messages, "a limited send stores nothing")

	// Reads are not limited, and the bucket is per user.
	require.Equal(t, 200, alice.do("GET", msgs, nil).Status)
	require.Equal(t, 201, bob.do("POST", msgs, map[string]any{"body": "bob's own bucket"}).Status)

	// After Retry-After the user may write again.
	clock.Add(int64(time.Duration(wait) * time.Second))
	r = alice.do("POST", msgs, map[string]any{"body": "later"})
	require.Equal(t, 201, r.Status, "%s", r.Body)
}

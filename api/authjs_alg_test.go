package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

// crafted is a JWE made with go-jose, as a forger or a library other than Auth.js might.
type crafted struct {
	alg    jose.KeyAlgorithm
	enc    jose.ContentEncryption
	key    []byte
	kid    string
	zip    bool
	header map[jose.HeaderKey]any
	claims map[string]any
}

func (c crafted) token(t testing.TB) string {
	t.Helper()
	opts := &jose.EncrypterOptions{ExtraHeaders: c.header}
	if c.zip {
		opts.Compression = jose.DEFLATE
	}
	e, err := jose.NewEncrypter(c.enc, jose.Recipient{Algorithm: c.alg, Key: c.key, KeyID: c.kid}, opts)
	require.NoError(t, err)
	payload, err := json.Marshal(c.claims)
	require.NoError(t, err)
	obj, err := e.Encrypt(payload)
	require.NoError(t, err)
	s, err := obj.CompactSerialize()
	require.NoError(t, err)
	return s
}

// authjsClaims are a session's claims, valid for an hour.
func authjsClaims(sub string) map[string]any {
	now := time.Now().Unix()
	return map[string]any{"sub": sub, "iat": now, "exp": now + 3600, "jti": "j1"}
}

// Only what Auth.js's decode accepts opens a session: alg "dir" and enc A256CBC-HS512 (or
// A256GCM, which decode also accepts), the key chosen by kid. The real tokens of
// TestAuthJSSessionTokensFromAuthCore show the key derivation; these craft the rest.
func TestAuthJSAlgorithmsOtherThanAuthJSAreRefused(t *testing.T) {
	const second = "an-older-secret-still-on-the-list"
	in := newInstance(t, withAuthJS(authjsSecret, second))
	cur, err := deriveAuthJSKey([]byte(authjsSecret), authjsCookie)
	require.NoError(t, err)
	old, err := deriveAuthJSKey([]byte(second), authjsCookie)
	require.NoError(t, err)
	cbc, gcm := cur.key[jose.A256CBC_HS512], cur.key[jose.A256GCM]
	sub := uniq("alice")
	good := crafted{alg: jose.DIRECT, enc: jose.A256CBC_HS512, key: cbc, kid: cur.kid[jose.A256CBC_HS512], claims: authjsClaims(sub)}

	accepted := map[string]crafted{
		"as Auth.js makes it": good,
		"A256GCM, which Auth.js's decode accepts": {alg: jose.DIRECT, enc: jose.A256GCM, key: gcm,
			kid: cur.kid[jose.A256GCM], claims: authjsClaims(sub)},
		"no kid: the first secret": {alg: jose.DIRECT, enc: jose.A256CBC_HS512, key: cbc, claims: authjsClaims(sub)},
	}
	for name, c := range accepted {
		require.Equal(t, http.StatusOK, call(t, "GET", in.URL+"/v1/unread", c.token(t), nil).Status, name)
	}

	withHeader := func(k string, v any) crafted {
		c := good
		c.header = map[jose.HeaderKey]any{jose.HeaderKey(k): v}
		return c
	}
	expired := good
	expired.claims = map[string]any{"sub": sub, "exp": time.Now().Add(-time.Minute).Unix()}
	noExp := good
	noExp.claims = map[string]any{"sub": sub}
	notYet := good
	notYet.claims = map[string]any{"sub": sub, "exp": time.Now().Add(time.Hour).Unix(), "nbf": time.Now().Add(time.Minute).Unix()}
	zipped := good
	zipped.zip = true
	refused := map[string]crafted{
		"enc A128CBC-HS256": {alg: jose.DIRECT, enc: jose.A128CBC_HS256, key: gcm, claims: authjsClaims(sub)},
		"enc A192GCM":       {alg: jose.DIRECT, enc: jose.A192GCM, key: gcm[:24], claims: authjsClaims(sub)},
		"enc A128GCM":       {alg: jose.DIRECT, enc: jose.A128GCM, key: gcm[:16], claims: authjsClaims(sub)},
		"alg A256KW":        {alg: jose.A256KW, enc: jose.A256CBC_HS512, key: gcm, claims: authjsClaims(sub)},
		"alg A256GCMKW":     {alg: jose.A256GCMKW, enc: jose.A256CBC_HS512, key: gcm, claims: authjsClaims(sub)},
		"no kid, second secret": {alg: jose.DIRECT, enc: jose.A256CBC_HS512, key: old.key[jose.A256CBC_HS512],
			claims: authjsClaims(sub)},
		"kid of another key":         {alg: jose.DIRECT, enc: jose.A256CBC_HS512, key: cbc, kid: old.kid[jose.A256CBC_HS512], claims: authjsClaims(sub)},
		"compressed":                 zipped,
		"critical header":            withHeader("crit", []string{"exp"}),
		"header sub differs":         withHeader("sub", "mallory"),
		"expired":                    expired,
		"without exp":                noExp,
		"not valid yet":              notYet,
		"claims not a JSON object":   {alg: jose.DIRECT, enc: jose.A256CBC_HS512, key: cbc, claims: nil},
		"sub with control character": {alg: jose.DIRECT, enc: jose.A256CBC_HS512, key: cbc, claims: authjsClaims("a\nb")},
	}
	for name, c := range refused {
		t.Run(name, func(t *testing.T) {
			restRequireError(t, call(t, "GET", in.URL+"/v1/unread", c.token(t), nil), 401, "unauthenticated")
		})
	}

	t.Run("the Auth.js secret is no HMAC secret", func(t *testing.T) {
		jws, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(authjsClaims(sub))).SignedString([]byte(authjsSecret))
		require.NoError(t, err)
		restRequireError(t, call(t, "GET", in.URL+"/v1/unread", jws, nil), 401, "unauthenticated")
	})
}

// FuzzAuthJSCookie feeds Cookie headers through chunk assembly and decryption: no input
// panics, an assembled token stays within its bound, and only a decryptable token with a
// sub is accepted.
func FuzzAuthJSCookie(f *testing.F) {
	v, err := NewVerifier(context.Background(), KeyConfig{AuthJSSecrets: [][]byte{[]byte(authjsSecret)}})
	require.NoError(f, err)
	key, err := deriveAuthJSKey([]byte(authjsSecret), authjsCookie)
	require.NoError(f, err)
	tok := crafted{alg: jose.DIRECT, enc: jose.A256CBC_HS512, key: key.key[jose.A256CBC_HS512],
		kid: key.kid[jose.A256CBC_HS512], claims: authjsClaims("alice")}.token(f)
	half := len(tok) / 2
	for _, s := range []string{
		authjsCookie + "=" + tok,
		authjsCookie + ".1=" + tok[half:] + "; " + authjsCookie + ".0=" + tok[:half],
		authjsCookie + ".0=" + tok[:half] + "; " + authjsCookie + ".2=" + tok[half:],
		authjsCookie + "=a; " + authjsCookie + ".0=b",
		authjsCookie + ".00=x; " + authjsCookie + ".-1=y; " + authjsCookie + ".999=z",
		authjsCookie + "x=1; " + authjsSecureCookie + ".0=" + tok,
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		req := &http.Request{Header: http.Header{"Cookie": {header}}}
		for _, name := range authjsSalts {
			token, present, err := authjsCookieToken(req.Cookies(), name)
			if err != nil || !present {
				require.Empty(t, token)
				continue
			}
			require.LessOrEqual(t, len(token), maxAuthJSTokenBytes)
			if id, err := v.VerifyAuthJS(token, name); err == nil {
				require.NotEmpty(t, id.Sub)
			}
		}
	})
}

// BenchmarkAuthJS measures what a request pays to be authenticated by an Auth.js token, and
// what a hostile one pays to be refused: the largest token accepted, and a Cookie header
// as large as the HTTP server admits, made of chunks.
func BenchmarkAuthJS(b *testing.B) {
	v, err := NewVerifier(context.Background(), KeyConfig{AuthJSSecrets: [][]byte{[]byte("retired-secret"), []byte(authjsSecret)}})
	require.NoError(b, err)
	key, err := deriveAuthJSKey([]byte(authjsSecret), authjsSecureCookie)
	require.NoError(b, err)
	mk := func(pad int) string {
		claims := authjsClaims("alice")
		claims["picture"] = strings.Repeat("p", pad)
		return crafted{alg: jose.DIRECT, enc: jose.A256CBC_HS512, key: key.key[jose.A256CBC_HS512],
			kid: key.kid[jose.A256CBC_HS512], claims: claims}.token(b)
	}
	for name, tok := range map[string]string{"typical session": mk(200), "largest accepted": mk(23_500)} {
		b.Run(name+" as Bearer", func(b *testing.B) {
			require.LessOrEqual(b, len(tok), maxAuthJSTokenBytes)
			for b.Loop() {
				if _, err := v.Verify(context.Background(), tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	var hdr strings.Builder
	for i := 0; hdr.Len() < 60<<10; i++ {
		fmt.Fprintf(&hdr, "%s.%d=%s; ", authjsSecureCookie, i%maxAuthJSChunks, strings.Repeat("x", 3936))
	}
	req := &http.Request{Header: http.Header{"Cookie": {hdr.String()}}}
	b.Run("60 KiB Cookie header refused", func(b *testing.B) {
		for b.Loop() {
			for _, name := range authjsSalts {
				if tok, present, err := authjsCookieToken(req.Cookies(), name); err == nil && present {
					_, err = v.VerifyAuthJS(tok, name)
					require.Error(b, err)
				}
			}
		}
	})
}

func TestAuthJSCookieAssembly(t *testing.T) {
	var chunks []string // nine full chunks of Auth.js's size: more than maxAuthJSTokenBytes
	for i := range maxAuthJSChunks {
		chunks = append(chunks, fmt.Sprintf("authjs.session-token.%d=%s", i, strings.Repeat("x", 3936)))
	}
	nineChunks := strings.Join(chunks, "; ")
	for _, tt := range []struct {
		name, header, want string
		present, ok        bool
	}{
		{"whole", "authjs.session-token=abc", "abc", true, true},
		{"chunks in index order", "authjs.session-token.1=def; authjs.session-token.0=abc", "abcdef", true, true},
		{"first of a name counts", "authjs.session-token=abc; authjs.session-token=zzz", "abc", true, true},
		{"other cookies alike in name", "authjs.session-tokenx=1; authjs.session-token.01=2; authjs.session-token.-1=3; authjs.session-token.a=4", "", false, true},
		{"empty value", "authjs.session-token=", "", false, true},
		{"a gap", "authjs.session-token.0=abc; authjs.session-token.2=ghi", "", true, false},
		{"whole beside chunks", "authjs.session-token=abc; authjs.session-token.0=def", "", true, false},
		{"index past the bound", "authjs.session-token.0=a; authjs.session-token.9=b", "", true, false},
		{"over the size bound", nineChunks, "", true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := &http.Request{Header: http.Header{"Cookie": {tt.header}}}
			got, present, err := authjsCookieToken(req.Cookies(), authjsCookie)
			require.Equal(t, tt.present, present)
			require.Equal(t, tt.ok, err == nil, "%v", err)
			require.Equal(t, tt.want, got)
		})
	}
}

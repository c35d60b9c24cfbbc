package api

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

// jwtNow is whole seconds because JWT times are.
var jwtNow = time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)

var jwtSecret = []byte("a-test-secret-of-reasonable-length-0123456789")

// jwtClock is a settable clock shared by the verifier and the test.
type jwtClock struct {
	mu sync.Mutex
	t  time.Time
}

func newJWTClock() *jwtClock { return &jwtClock{t: jwtNow} }

func (c *jwtClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *jwtClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type jwtKeyring struct {
	rsa, rsa2  *rsa.PrivateKey
	p256, p384 *ecdsa.PrivateKey
	ed         ed25519.PrivateKey
	rsaPEM     []byte
	p256PEM    []byte
	p384PEM    []byte
	edPEM      []byte
}

// jwtKeys generates the test keys once: RSA generation is slow enough to matter.
var jwtKeys = sync.OnceValue(func() jwtKeyring {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	var k jwtKeyring
	var err error
	k.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	k.rsa2, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	k.p256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	k.p384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	must(err)
	_, k.ed, err = ed25519.GenerateKey(rand.Reader)
	must(err)
	k.rsaPEM = jwtPEM(k.rsa.Public())
	k.p256PEM = jwtPEM(k.p256.Public())
	k.p384PEM = jwtPEM(k.p384.Public())
	k.edPEM = jwtPEM(k.ed.Public())
	return k
})

func jwtPEM(pub crypto.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// jwtClaims returns valid claims for alice, changed by mods.
func jwtClaims(mods ...func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{"sub": "alice", "iat": jwtNow.Unix(), "exp": jwtNow.Add(time.Hour).Unix()}
	for _, m := range mods {
		m(c)
	}
	return c
}

func withClaim(k string, v any) func(jwt.MapClaims) { return func(c jwt.MapClaims) { c[k] = v } }
func withoutClaim(k string) func(jwt.MapClaims)     { return func(c jwt.MapClaims) { delete(c, k) } }

func signJWT(t testing.TB, m jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return s
}

func newJWTVerifier(t testing.TB, cfg KeyConfig) *Verifier {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return jwtNow }
	}
	v, err := NewVerifier(context.Background(), cfg)
	require.NoError(t, err)
	return v
}

func TestVerifyRejectsAttacks(t *testing.T) {
	k := jwtKeys()
	secretOnly := KeyConfig{Secret: jwtSecret}
	rsaOnly := KeyConfig{PublicKeyPEM: k.rsaPEM}
	secretAndRSA := KeyConfig{Secret: jwtSecret, PublicKeyPEM: k.rsaPEM}
	valid := signJWT(t, jwt.SigningMethodHS256, jwtSecret, "", jwtClaims())
	parts := strings.Split(valid, ".")
	forgedPayload := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"mallory","exp":` +
		big.NewInt(jwtNow.Add(time.Hour).Unix()).String() + `}`))
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwtClaims()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	require.NoError(t, err)

	tests := []struct {
		name  string
		cfg   KeyConfig
		token string
	}{
		{"alg none", secretOnly, none},
		{"alg none with RSA configured", rsaOnly, none},
		{"HS256 signed with RSA PEM as secret, RSA configured", rsaOnly,
			signJWT(t, jwt.SigningMethodHS256, k.rsaPEM, "", jwtClaims())},
		{"HS256 signed with RSA PEM as secret, secret and RSA configured", secretAndRSA,
			signJWT(t, jwt.SigningMethodHS256, k.rsaPEM, "", jwtClaims())},
		{"HS256 when only RSA configured", rsaOnly, valid},
		{"RS256 when only secret configured", secretOnly, signJWT(t, jwt.SigningMethodRS256, k.rsa, "", jwtClaims())},
		{"RS256 signed by another RSA key", rsaOnly, signJWT(t, jwt.SigningMethodRS256, k.rsa2, "", jwtClaims())},
		{"bad signature", secretOnly, signJWT(t, jwt.SigningMethodHS256, []byte("other-secret"), "", jwtClaims())},
		{"payload swapped under a valid signature", secretOnly, parts[0] + "." + forgedPayload + "." + parts[2]},
		{"expired", secretOnly, signJWT(t, jwt.SigningMethodHS256, jwtSecret, "", jwtClaims(withClaim("exp", jwtNow.Add(-time.Second).Unix())))},
		{"nbf in the future", secretOnly, signJWT(t, jwt.SigningMethodHS256, jwtSecret, "", jwtClaims(withClaim("nbf", jwtNow.Add(time.Minute).Unix())))},
		{"missing exp", secretOnly, signJWT(t, jwt.SigningMethodHS256, jwtSecret, "", jwtClaims(withoutClaim("exp")))},
		{"missing sub", secretOnly, signJWT(t, jwt.SigningMethodHS256, jwtSecret, "", jwtClaims(withoutClaim("sub")))},
		{"empty sub", secretOnly, signJWT(t, jwt.SigningMethodHS256, jwtSecret, "", jwtClaims(withClaim("sub", "")))},
		{"sub over 255 bytes", secretOnly, signJWT(t, jwt.SigningMethodHS256, jwtSecret, "", jwtClaims(withClaim("sub", strings.Repeat("é", 128))))},
		{"sub with control character", secretOnly, signJWT(t, jwt.SigningMethodHS256, jwtSecret, "", jwtClaims(withClaim("sub", "ali\nce")))},
		{"sub not a string", secretOnly, signJWT(t, jwt.SigningMethodHS256, jwtSecret, "", jwtClaims(withClaim("sub", 42)))},
		{"wrong iss", KeyConfig{Secret: jwtSecret, Issuer: "https://auth.example"},
			signJWT(t, jwt.SigningMethodHS256, jwtSecret, "", jwtClaims(withClaim("iss", "https://evil.example")))},
		{"missing iss", KeyConfig{Secret: jwtSecret, Issuer: "https://auth.example"}, valid},
		{"wrong aud", KeyConfig{Secret: jwtSecret, Audience: "chatd"},
			signJWT(t, jwt.SigningMethodHS256, jwtSecret, "", jwtClaims(withClaim("aud", []string{"billing"})))},
		{"missing aud", KeyConfig{Secret: jwtSecret, Audience: "chatd"}, valid},
		{"expired 31s ago with 30s leeway", KeyConfig{Secret: jwtSecret, Leeway: 30 * time.Second},
			signJWT(t, jwt.SigningMethodHS256, jwtSecret, "", jwtClaims(withClaim("exp", jwtNow.Add(-31*time.Second).Unix())))},
		{"nbf 31s ahead with 30s leeway", KeyConfig{Secret: jwtSecret, Leeway: 30 * time.Second},
			signJWT(t, jwt.SigningMethodHS256, jwtSecret, "", jwtClaims(withClaim("nbf", jwtNow.Add(31*time.Second).Unix())))},
		{"ES384 token when P-256 key configured", KeyConfig{PublicKeyPEM: k.p256PEM},
			signJWT(t, jwt.SigningMethodES384, k.p384, "", jwtClaims())},
		{"RS256 token when EC key configured", KeyConfig{PublicKeyPEM: k.p256PEM},
			signJWT(t, jwt.SigningMethodRS256, k.rsa, "", jwtClaims())},
		{"ES256 token when Ed25519 key configured", KeyConfig{PublicKeyPEM: k.edPEM},
			signJWT(t, jwt.SigningMethodES256, k.p256, "", jwtClaims())},
		{"HS256 signed with Ed25519 PEM as secret", KeyConfig{PublicKeyPEM: k.edPEM},
			signJWT(t, jwt.SigningMethodHS256, k.edPEM, "", jwtClaims())},
		{"empty token", secretOnly, ""},
		{"two segments", secretOnly, parts[0] + "." + parts[1]},
		{"garbage segments", secretOnly, "a.b.c"},
		{"oversized token", secretOnly, parts[0] + "." + strings.Repeat("A", maxTokenBytes) + "." + parts[2]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newJWTVerifier(t, tt.cfg)
			id, err := v.Verify(context.Background(), tt.token)
			require.Error(t, err)
			require.Zero(t, id)
			t.Log(err)
			// Errors go to logs; the bearer credential must never be among them.
			if tt.token != "" {
				require.NotContains(t, err.Error(), tt.token)
			}
			if p := strings.Split(tt.token, "."); len(p) == 3 && len(p[2]) > 8 {
				require.NotContains(t, err.Error(), p[2])
			}
		})
	}
}

func TestVerifyAcceptsConfiguredAlgorithms(t *testing.T) {
	k := jwtKeys()
	tests := []struct {
		name     string
		cfg      KeyConfig
		token    string
		wantName string
	}{
		{"HS256", KeyConfig{Secret: jwtSecret}, signJWT(t, jwt.SigningMethodHS256, jwtSecret, "", jwtClaims()), ""},
		{"HS384", KeyConfig{Secret: jwtSecret}, signJWT(t, jwt.SigningMethodHS384, jwtSecret, "", jwtClaims()), ""},
		{"HS512", KeyConfig{Secret: jwtSecret}, signJWT(t, jwt.SigningMethodHS512, jwtSecret, "", jwtClaims()), ""},
		{"HS256 with secret and RSA configured", KeyConfig{Secret: jwtSecret, PublicKeyPEM: k.rsaPEM},
			signJWT(t, jwt.SigningMethodHS256, jwtSecret, "", jwtClaims()), ""},
		{"RS256 with secret and RSA configured", KeyConfig{Secret: jwtSecret, PublicKeyPEM: k.rsaPEM},
			signJWT(t, jwt.SigningMethodRS256, k.rsa, "", jwtClaims()), ""},
		{"RS256", KeyConfig{PublicKeyPEM: k.rsaPEM}, signJWT(t, jwt.SigningMethodRS256, k.rsa, "", jwtClaims()), ""},
		{"RS512", KeyConfig{PublicKeyPEM: k.rsaPEM}, signJWT(t, jwt.SigningMethodRS512, k.rsa, "", jwtClaims()), ""},
		{"PS256", KeyConfig{PublicKeyPEM: k.rsaPEM}, signJWT(t, jwt.SigningMethodPS256, k.rsa, "", jwtClaims()), ""},
		{"ES256", KeyConfig{PublicKeyPEM: k.p256PEM}, signJWT(t, jwt.SigningMethodES256, k.p256, "", jwtClaims()), ""},
		{"ES384", KeyConfig{PublicKeyPEM: k.p384PEM}, signJWT(t, jwt.SigningMethodES384, k.p384, "", jwtClaims()), ""},
		{"EdDSA", KeyConfig{PublicKeyPEM: k.edPEM}, signJWT(t, jwt.SigningMethodEdDSA, k.ed, "", jwtClaims()), ""},
		{"iss and aud when configured", KeyConfig{Secret: jwtSecret, Issuer: "https://auth.example", Audience: "chatd"},
			signJWT(t, jwt.SigningMethodHS256, jwtSecret, "", jwtClaims(withClaim("iss", "https://auth.example"), withClaim("aud", []string{"web", "chatd"}))), ""},
		{"expired 10s ago with 30s leeway", KeyConfig{Secret: jwtSecret, Leeway: 30 * time.Second},
			signJWT(t, jwt.SigningMethodHS256, jwtSecret, "", jwtClaims(withClaim("exp", jwtNow.Add(-10*time.Second).Unix()))), ""},
		{"nbf 10s ahead with 30s leeway", KeyConfig{Secret: jwtSecret, Leeway: 30 * time.Second},
			signJWT(t, jwt.SigningMethodHS256, jwtSecret, "", jwtClaims(withClaim("nbf", jwtNow.Add(10*time.Second).Unix()))), ""},
		{"name trimmed", KeyConfig{Secret: jwtSecret},
			signJWT(t, jwt.SigningMethodHS256, jwtSecret, "", jwtClaims(withClaim("name", "  Alice Liddell \t"))), "Alice Liddell"},
		{"name capped at 100 runes", KeyConfig{Secret: jwtSecret},
			signJWT(t, jwt.SigningMethodHS256, jwtSecret, "", jwtClaims(withClaim("name", strings.Repeat("ä", 150)))), strings.Repeat("ä", 100)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newJWTVerifier(t, tt.cfg)
			id, err := v.Verify(context.Background(), tt.token)
			require.NoError(t, err)
			require.Equal(t, "alice", id.Sub)
			require.Equal(t, tt.wantName, id.Name)
			require.False(t, id.Expires.IsZero())
		})
	}
}

func TestNewVerifierRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  KeyConfig
	}{
		{"no key", KeyConfig{}},
		{"PEM garbage", KeyConfig{PublicKeyPEM: []byte("not pem")}},
		{"PEM with bad body", KeyConfig{PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}})}},
		{"PEM private key", KeyConfig{PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})}},
		{"leeway over 30s", KeyConfig{Secret: jwtSecret, Leeway: 31 * time.Second}},
		{"negative leeway", KeyConfig{Secret: jwtSecret, Leeway: -time.Second}},
		{"JWKS URL not http", KeyConfig{JWKSURL: "ftp://auth.example/jwks"}},
		{"JWKS URL relative", KeyConfig{JWKSURL: "/jwks.json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewVerifier(context.Background(), tt.cfg)
			require.Error(t, err)
		})
	}
}

func TestSignHS256RoundTrip(t *testing.T) {
	tok, err := SignHS256(jwtSecret, "bob", "Bob", time.Hour, jwtNow)
	require.NoError(t, err)
	v := newJWTVerifier(t, KeyConfig{Secret: jwtSecret})
	id, err := v.Verify(context.Background(), tok)
	require.NoError(t, err)
	require.Equal(t, Identity{Sub: "bob", Name: "Bob", Expires: jwtNow.Add(time.Hour)}, Identity{Sub: id.Sub, Name: id.Name, Expires: id.Expires.UTC()})

	for name, f := range map[string]func() (string, error){
		"empty secret": func() (string, error) { return SignHS256(nil, "bob", "", time.Hour, jwtNow) },
		"empty sub":    func() (string, error) { return SignHS256(jwtSecret, "", "", time.Hour, jwtNow) },
		"zero ttl":     func() (string, error) { return SignHS256(jwtSecret, "bob", "", 0, jwtNow) },
	} {
		t.Run(name, func(t *testing.T) {
			_, err := f()
			require.Error(t, err)
		})
	}
}

func FuzzVerify(f *testing.F) {
	k := jwtKeys()
	srv := newJWKSServer(f, jwkFor("r1", k.rsa.Public()), jwkFor("e1", k.p256.Public()))
	v := newJWTVerifier(f, KeyConfig{Secret: jwtSecret, PublicKeyPEM: k.rsaPEM, JWKSURL: srv.URL})
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwtClaims()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	require.NoError(f, err)
	for _, s := range []string{
		signJWT(f, jwt.SigningMethodHS256, jwtSecret, "", jwtClaims(withClaim("name", "Alice"))),
		signJWT(f, jwt.SigningMethodRS256, k.rsa, "r1", jwtClaims()),
		signJWT(f, jwt.SigningMethodES256, k.p256, "e1", jwtClaims()),
		signJWT(f, jwt.SigningMethodHS256, k.rsaPEM, "", jwtClaims()),
		none,
		"",
		"..",
		"eyJhbGciOiJIUzI1NiJ9.e30.",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		id, err := v.Verify(context.Background(), token)
		if err == nil {
			require.NotEmpty(t, id.Sub)
		}
	})
}

func TestSignHS256ForCarriesIssuerAndAudience(t *testing.T) {
	v, err := NewVerifier(context.Background(), KeyConfig{Secret: []byte("s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t"), Issuer: "acme", Audience: "chat"})
	require.NoError(t, err)
	tok, err := SignHS256For([]byte("s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t"), "acme", "chat", "alice", "Alice", time.Hour, time.Now())
	require.NoError(t, err)
	id, err := v.Verify(context.Background(), tok)
	require.NoError(t, err)
	require.Equal(t, "alice", id.Sub)
	plain, err := SignHS256([]byte("s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t"), "alice", "", time.Hour, time.Now())
	require.NoError(t, err)
	_, err = v.Verify(context.Background(), plain)
	require.Error(t, err, "without iss and aud the configured verifier refuses it")
}

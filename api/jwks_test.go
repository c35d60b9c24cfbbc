package api

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

// jwksServer serves a replaceable JWKS document and counts requests.
type jwksServer struct {
	*httptest.Server
	hits atomic.Int32

	mu     sync.Mutex
	status int
	doc    []byte
}

func newJWKSServer(t testing.TB, keys ...map[string]any) *jwksServer {
	s := &jwksServer{status: http.StatusOK}
	s.setKeys(t, keys...)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		status, doc := s.status, s.doc
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(doc)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) setKeys(t testing.TB, keys ...map[string]any) {
	doc, err := json.Marshal(map[string]any{"keys": keys})
	require.NoError(t, err)
	s.mu.Lock()
	s.doc = doc
	s.mu.Unlock()
}

func (s *jwksServer) setStatus(code int) {
	s.mu.Lock()
	s.status = code
	s.mu.Unlock()
}

// jwkFor renders a public key as a JWK; extra fields (use, alg) override.
func jwkFor(kid string, pub crypto.PublicKey, extra ...string) map[string]any {
	b64 := base64.RawURLEncoding.EncodeToString
	j := map[string]any{"kid": kid}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		j["kty"], j["n"], j["e"] = "RSA", b64(k.N.Bytes()), b64(big.NewInt(int64(k.E)).Bytes())
	case *ecdsa.PublicKey:
		raw, err := k.Bytes()
		if err != nil {
			panic(err)
		}
		size := (len(raw) - 1) / 2
		j["kty"], j["crv"], j["x"], j["y"] = "EC", k.Curve.Params().Name, b64(raw[1:1+size]), b64(raw[1+size:])
	case ed25519.PublicKey:
		j["kty"], j["crv"], j["x"] = "OKP", "Ed25519", b64(k)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		j[extra[i]] = extra[i+1]
	}
	return j
}

func TestVerifierJWKSKeyTypes(t *testing.T) {
	k := jwtKeys()
	srv := newJWKSServer(t,
		jwkFor("r1", k.rsa.Public(), "use", "sig"),
		jwkFor("r2", k.rsa2.Public(), "alg", "RS256"),
		jwkFor("e1", k.p256.Public()),
		jwkFor("e2", k.p384.Public()),
		jwkFor("d1", k.ed.Public()),
		jwkFor("enc", k.rsa.Public(), "use", "enc"),
		map[string]any{"kty": "oct", "kid": "o1", "k": "c2VjcmV0"},
		map[string]any{"kty": "EC", "kid": "bad", "crv": "P-256", "x": "AAAA", "y": "AAAA"},
	)
	v := newJWTVerifier(t, KeyConfig{JWKSURL: srv.URL})

	tests := []struct {
		name  string
		token string
		ok    bool
	}{
		{"RS256 kid r1", signJWT(t, jwt.SigningMethodRS256, k.rsa, "r1", jwtClaims()), true},
		{"PS384 kid r1", signJWT(t, jwt.SigningMethodPS384, k.rsa, "r1", jwtClaims()), true},
		{"RS256 kid r2 (alg pinned)", signJWT(t, jwt.SigningMethodRS256, k.rsa2, "r2", jwtClaims()), true},
		{"ES256 kid e1", signJWT(t, jwt.SigningMethodES256, k.p256, "e1", jwtClaims()), true},
		{"ES384 kid e2", signJWT(t, jwt.SigningMethodES384, k.p384, "e2", jwtClaims()), true},
		{"EdDSA kid d1", signJWT(t, jwt.SigningMethodEdDSA, k.ed, "d1", jwtClaims()), true},
		{"RS256 without kid tries matching keys", signJWT(t, jwt.SigningMethodRS256, k.rsa, "", jwtClaims()), true},
		{"PS256 kid r2 whose JWK pins RS256", signJWT(t, jwt.SigningMethodPS256, k.rsa2, "r2", jwtClaims()), false},
		{"RS256 signed by r1's key under kid r2", signJWT(t, jwt.SigningMethodRS256, k.rsa, "r2", jwtClaims()), false},
		{"RS256 kid of an encryption key", signJWT(t, jwt.SigningMethodRS256, k.rsa, "enc", jwtClaims()), false},
		{"ES256 token naming an RSA kid", signJWT(t, jwt.SigningMethodES256, k.p256, "r1", jwtClaims()), false},
		{"HS256 kid of an oct key", signJWT(t, jwt.SigningMethodHS256, []byte("secret"), "o1", jwtClaims()), false},
		{"HS256 signed with the JWKS document", signJWT(t, jwt.SigningMethodHS256, srv.doc, "r1", jwtClaims()), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := v.Verify(context.Background(), tt.token)
			if !tt.ok {
				t.Log(err)
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, "alice", id.Sub)
		})
	}
}

func TestVerifierJWKSUnknownKidRefreshesOnce(t *testing.T) {
	k := jwtKeys()
	srv := newJWKSServer(t, jwkFor("r1", k.rsa.Public()))
	clk := newJWTClock()
	v := newJWTVerifier(t, KeyConfig{JWKSURL: srv.URL, Now: clk.Now})
	require.EqualValues(t, 1, srv.hits.Load(), "initial fetch")
	unknown := func(kid string) string { return signJWT(t, jwt.SigningMethodRS256, k.rsa, kid, jwtClaims()) }

	clk.Add(11 * time.Second)
	_, err := v.Verify(context.Background(), unknown("nope-1"))
	require.Error(t, err)
	require.EqualValues(t, 2, srv.hits.Load(), "an unknown kid refreshes once")

	_, err = v.Verify(context.Background(), unknown("nope-2"))
	require.Error(t, err)
	require.EqualValues(t, 2, srv.hits.Load(), "a second unknown kid within 10s does not refetch")

	// Many concurrent unknown kids after the interval make exactly one request.
	clk.Add(11 * time.Second)
	storm := make([]string, 32)
	for i := range storm {
		storm[i] = unknown("storm-" + big.NewInt(int64(i)).String())
	}
	errs := make(chan error, len(storm))
	var wg sync.WaitGroup
	for _, tok := range storm {
		wg.Go(func() {
			_, err := v.Verify(context.Background(), tok)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.Error(t, err)
	}
	require.EqualValues(t, 3, srv.hits.Load())

	// Known kids never wait on the endpoint while the cache is fresh.
	_, err = v.Verify(context.Background(), unknown("r1"))
	require.NoError(t, err)
	require.EqualValues(t, 3, srv.hits.Load())
}

func TestVerifierJWKSRotation(t *testing.T) {
	k := jwtKeys()
	srv := newJWKSServer(t, jwkFor("k1", k.rsa.Public()))
	clk := newJWTClock()
	v := newJWTVerifier(t, KeyConfig{JWKSURL: srv.URL, Now: clk.Now})
	// Tokens expire far enough out to survive the clock moves below.
	c := jwtClaims(withClaim("exp", jwtNow.Add(time.Hour).Unix()))
	tok1 := signJWT(t, jwt.SigningMethodRS256, k.rsa, "k1", c)
	tok2 := signJWT(t, jwt.SigningMethodES256, k.p256, "k2", c)

	_, err := v.Verify(context.Background(), tok1)
	require.NoError(t, err)

	// The issuer rotates to k2: the new kid is picked up, the retired one stops verifying.
	srv.setKeys(t, jwkFor("k2", k.p256.Public()))
	clk.Add(11 * time.Second)
	_, err = v.Verify(context.Background(), tok2)
	require.NoError(t, err)
	require.EqualValues(t, 2, srv.hits.Load())
	_, err = v.Verify(context.Background(), tok1)
	require.Error(t, err)

	// A removed key stops verifying once the cache is older than 5 minutes.
	srv.setKeys(t, jwkFor("k1", k.rsa.Public()))
	clk.Add(5*time.Minute + time.Second)
	_, err = v.Verify(context.Background(), tok2)
	require.Error(t, err)
	require.EqualValues(t, 3, srv.hits.Load())
}

func TestVerifierJWKSInitialFetchFailureIsNotFatal(t *testing.T) {
	k := jwtKeys()
	srv := newJWKSServer(t, jwkFor("k1", k.rsa.Public()))
	srv.setStatus(http.StatusServiceUnavailable)
	clk := newJWTClock()
	v := newJWTVerifier(t, KeyConfig{JWKSURL: srv.URL, Now: clk.Now})
	tok := signJWT(t, jwt.SigningMethodRS256, k.rsa, "k1", jwtClaims())

	_, err := v.Verify(context.Background(), tok)
	require.Error(t, err)
	require.EqualValues(t, 1, srv.hits.Load(), "the failed fetch is rate-limited too")

	srv.setStatus(http.StatusOK)
	clk.Add(11 * time.Second)
	_, err = v.Verify(context.Background(), tok)
	require.NoError(t, err)
	require.EqualValues(t, 2, srv.hits.Load())

	// A context that is already done bounds the initial fetch without failing construction.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = NewVerifier(ctx, KeyConfig{JWKSURL: srv.URL})
	require.NoError(t, err)
}

func TestVerifierJWKSOversizedDocumentKeepsPreviousKeys(t *testing.T) {
	k := jwtKeys()
	srv := newJWKSServer(t, jwkFor("k1", k.rsa.Public()))
	clk := newJWTClock()
	v := newJWTVerifier(t, KeyConfig{JWKSURL: srv.URL, Now: clk.Now})
	tok1 := signJWT(t, jwt.SigningMethodRS256, k.rsa, "k1", jwtClaims())
	tok2 := signJWT(t, jwt.SigningMethodES256, k.p256, "k2", jwtClaims())

	// A document over jwksMaxBytes is refused whole, even though it starts with a usable key.
	srv.setKeys(t, jwkFor("k2", k.p256.Public()), jwkFor("pad", k.ed.Public(), "pad", strings.Repeat("A", jwksMaxBytes)))
	clk.Add(11 * time.Second)
	_, err := v.Verify(context.Background(), tok2)
	require.Error(t, err)
	require.EqualValues(t, 2, srv.hits.Load())
	_, err = v.Verify(context.Background(), tok1)
	require.NoError(t, err, "the keys fetched before stay in use")
}

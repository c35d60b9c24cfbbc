package api

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

// ---------------------------------------------------------------------------------------
// 2. JWT attacks, end to end

func restSign(t testing.TB, m jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	require.NoError(t, err)
	return s
}

// attackClaims are valid claims for a user of this test run at now, changed by mods.
func attackClaims(now time.Time, mods ...func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{"sub": uniq("victim"), "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for _, m := range mods {
		m(c)
	}
	return c
}

// requireUnauthorizedGET requires a 401 error body for GET path with the Authorization
// header auth (none when ""), following no redirect.
func requireUnauthorizedGET(t *testing.T, in *instance, path, auth string) {
	t.Helper()
	req, err := http.NewRequest("GET", in.URL+path, nil)
	require.NoError(t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	res, err := restNoRedirect.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	restRequireError(t, response{Status: res.StatusCode, Header: res.Header, Body: b}, http.StatusUnauthorized, "")
}

// TestJWTAttacksOnHMACInstanceGet401 runs the attacks on an instance that verifies HS256 with a secret.
func TestJWTAttacksOnHMACInstanceGet401(t *testing.T) {
	t.Parallel()
	now := time.Now()
	claims := func(mods ...func(jwt.MapClaims)) jwt.MapClaims { return attackClaims(now, mods...) }
	set, del := withClaim, withoutClaim
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
		t.Run(tt.name, func(t *testing.T) { requireUnauthorizedGET(t, in, tt.path, tt.auth) })
	}
	r := restCall(t, "GET", in.URL+"/v1/unread", valid, "", nil)
	require.Equal(t, 200, r.Status, "the valid token itself works: %s", r.Body)
}

// TestJWTAttacksOnRSAInstanceGet401 runs the attacks that an instance verifying RS256 with a
// public key, an issuer and an audience must refuse: algorithm confusion among them.
func TestJWTAttacksOnRSAInstanceGet401(t *testing.T) {
	t.Parallel()
	now := time.Now()
	set, del := withClaim, withoutClaim
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
		return attackClaims(now, append([]func(jwt.MapClaims){set("iss", "iss"), set("aud", "aud")}, mods...)...)
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
}

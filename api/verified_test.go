package api

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

// A remembered token stands until its exp, not until verifiedTTL is up.
func TestVerifyRemembersATokenUntilItExpires(t *testing.T) {
	clk := newJWTClock()
	v := newJWTVerifier(t, KeyConfig{Secret: jwtSecret, Now: clk.Now})
	tok := signJWT(t, jwt.SigningMethodHS256, jwtSecret, "", jwtClaims(withClaim("exp", jwtNow.Add(30*time.Second).Unix())))
	id, err := v.Verify(context.Background(), tok)
	require.NoError(t, err)
	require.Equal(t, "alice", id.Sub)
	got, ok := v.verified.get(tok, 0, clk.Now())
	require.True(t, ok, "remembered")
	require.Equal(t, id, got)

	clk.Add(31 * time.Second)
	_, err = v.Verify(context.Background(), tok)
	require.Error(t, err, "expired, remembered or not")
}

// A remembered token is verified again after verifiedTTL.
func TestVerifyVerifiesAgainAfterAMinute(t *testing.T) {
	clk := newJWTClock()
	v := newJWTVerifier(t, KeyConfig{Secret: jwtSecret, Now: clk.Now})
	tok := signJWT(t, jwt.SigningMethodHS256, jwtSecret, "", jwtClaims())
	_, err := v.Verify(context.Background(), tok)
	require.NoError(t, err)
	clk.Add(verifiedTTL)
	_, ok := v.verified.get(tok, 0, clk.Now())
	require.False(t, ok)
}

// A token verified by a JWKS key is not taken on trust once the fetched keys are stale:
// the key may have been removed at the issuer, and a full verification would fetch them.
func TestVerifyTakesNoTokenOnTrustPastTheKeysAge(t *testing.T) {
	k := jwtKeys()
	srv := newJWKSServer(t, jwkFor("k1", k.rsa.Public()))
	clk := newJWTClock()
	v := newJWTVerifier(t, KeyConfig{JWKSURL: srv.URL, Now: clk.Now})
	tok := signJWT(t, jwt.SigningMethodRS256, k.rsa, "k1", jwtClaims())
	clk.Add(jwksMaxAge - 30*time.Second) // the keys fetched at start have 30 s left
	_, err := v.Verify(context.Background(), tok)
	require.NoError(t, err)

	srv.setKeys(t, jwkFor("k2", k.p256.Public())) // k1 removed at the issuer
	clk.Add(31 * time.Second)                     // within verifiedTTL, past the keys' age
	_, err = v.Verify(context.Background(), tok)
	require.Error(t, err)
}

// A refused token is never remembered: each attempt is checked in full.
func TestVerifyRemembersNoRefusal(t *testing.T) {
	v := newJWTVerifier(t, KeyConfig{Secret: jwtSecret})
	bad := signJWT(t, jwt.SigningMethodHS256, []byte("another-secret-of-reasonable-length-0123456"), "", jwtClaims())
	for range 2 {
		_, err := v.Verify(context.Background(), bad)
		require.Error(t, err)
	}
	v.verified.mu.Lock()
	defer v.verified.mu.Unlock()
	require.Empty(t, v.verified.cur)
}

// Memory stays bounded whatever the number of tokens, and a token in use stays.
func TestVerifiedTokensStayBounded(t *testing.T) {
	var c verifiedTokens
	id := Identity{Sub: "alice", Expires: jwtNow.Add(time.Hour)}
	c.put("in use", id, 0, jwtNow, time.Time{})
	for i := range 3 * verifiedMax {
		c.put(fmt.Sprint("token ", i), id, 0, jwtNow, time.Time{})
		if i%(verifiedMax/2) == 0 {
			_, ok := c.get("in use", 0, jwtNow)
			require.True(t, ok, "after %d others", i)
		}
	}
	require.LessOrEqual(t, len(c.cur)+len(c.prev), 2*verifiedMax)
	_, ok := c.get("token 0", 0, jwtNow)
	require.False(t, ok, "the oldest are gone")
}

// BenchmarkVerify: tokens verified in full (HS256, and RS256 and ES256 from a JWKS, as an
// identity provider signs them), and one remembered.
func BenchmarkVerify(b *testing.B) {
	k := jwtKeys()
	srv := newJWKSServer(b, jwkFor("r", k.rsa.Public()), jwkFor("e", k.p256.Public()))
	v := newJWTVerifier(b, KeyConfig{Secret: jwtSecret, JWKSURL: srv.URL})
	ctx := context.Background()
	for _, c := range []struct {
		name string
		tok  string
	}{
		{"HS256", signJWT(b, jwt.SigningMethodHS256, jwtSecret, "", jwtClaims())},
		{"RS256", signJWT(b, jwt.SigningMethodRS256, k.rsa, "r", jwtClaims())},
		{"ES256", signJWT(b, jwt.SigningMethodES256, k.p256, "e", jwtClaims())},
	} {
		b.Run(c.name+" in full", func(b *testing.B) {
			for b.Loop() {
				if _, err := v.verify(ctx, c.tok); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+" remembered", func(b *testing.B) {
			for b.Loop() {
				if _, err := v.Verify(ctx, c.tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package api

// A JWKS endpoint as a source of keys, cached and refreshed lazily with a rate limit.
//
// This cache is hand-written on purpose (issue 10 asked to prefer a JWKS client). We tried
// github.com/MicahParks/jwkset v0.11.4, the only version the module proxy serves, and
// keyfunc/v3, which is built on it. Neither can keep the behaviours below and the tests that
// guard them:
//   - One malformed key makes its HTTP storage reject the whole document. At start that
//     leaves no keys at all; later it means a rotation is never picked up. Here one odd key
//     is skipped and the others stay.
//   - For an unknown kid it waits on a rate.Limiter, and the same deadline also bounds the
//     fetch. With no deadline, callers block until their turn comes and then each one
//     fetches. With a short one, an issuer slower than that deadline is never refreshed.
//     Here, at most one fetch starts per jwksMinInterval, callers never queue for the
//     limiter, and callers that wait behind a running fetch get its result.
//   - Its refresh ticker and limiter read the wall clock (KeyConfig.Now cannot drive them),
//     it reads the body without a bound, and it starts a goroutine that the Verifier has no
//     way to stop.
//   - keyfunc would also return an "oct" JWK as an HMAC secret.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	// jwksMaxAge is how long fetched keys are trusted before a lookup refreshes them, so a
	// key removed at the issuer stops verifying within minutes.
	jwksMaxAge = 5 * time.Minute
	// jwksMinInterval rate-limits fetches: tokens with random kids must not let a caller
	// turn us into a load generator against the issuer's JWKS endpoint.
	jwksMinInterval = 10 * time.Second
	// jwksTimeout bounds one fetch even when the configured client has no timeout.
	jwksTimeout = 10 * time.Second
	// jwksMaxBytes bounds the JWKS document we are willing to read.
	jwksMaxBytes = 1 << 20
)

// keySet caches a JWKS. Lookups refresh it lazily: when it is older than jwksMaxAge or the
// kid is unknown, and never more often than jwksMinInterval.
type keySet struct {
	url    string
	logURL string // url without a password, for logs
	client *http.Client
	now    func() time.Time

	// fetchMu is held for a whole fetch, so at most one request to the endpoint is in flight
	// and callers queued behind it see its result instead of fetching again.
	fetchMu sync.Mutex

	gen atomic.Uint64 // counts successful fetches: tokens verified before one are verified again

	mu        sync.Mutex // guards the fields below
	keys      []pubKey
	fetchedAt time.Time // last successful fetch
	triedAt   time.Time // last attempt, successful or not, for the rate limit
}

// lookup returns the keys that may verify a token with kid and alg; an empty kid matches
// every key.
func (s *keySet) lookup(ctx context.Context, kid, alg string) []jwt.VerificationKey {
	keys, known, stale := s.snapshot(kid)
	if !known || stale {
		// Detach from the request: one impatient client must not fail a fetch that all
		// callers share (and that the rate limit would then block for jwksMinInterval).
		s.refresh(context.WithoutCancel(ctx))
		keys, _, _ = s.snapshot(kid)
	}
	var out []jwt.VerificationKey
	for _, k := range keys {
		if (kid == "" || k.kid == kid) && k.allows(alg) {
			out = append(out, k.key)
		}
	}
	return out
}

func (s *keySet) snapshot(kid string) (keys []pubKey, known, stale bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	known = slices.ContainsFunc(s.keys, func(k pubKey) bool { return kid == "" || k.kid == kid })
	return s.keys, known, s.now().Sub(s.fetchedAt) > jwksMaxAge
}

// state is the generation of the keys in use and when they go stale (a lookup then
// fetches them again).
func (s *keySet) state() (gen uint64, staleAt time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen.Load(), s.fetchedAt.Add(jwksMaxAge)
}

// refresh fetches the JWKS unless a fetch was attempted within jwksMinInterval. On failure
// the previous keys stay in use and the error is logged.
func (s *keySet) refresh(ctx context.Context) {
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()
	s.mu.Lock()
	if !s.triedAt.IsZero() && s.now().Sub(s.triedAt) < jwksMinInterval {
		s.mu.Unlock()
		return
	}
	s.triedAt = s.now()
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, jwksTimeout)
	defer cancel()
	keys, err := s.fetch(ctx)
	if err != nil {
		slog.Warn("jwks fetch failed; keeping previous keys", "url", s.logURL, "err", err)
		return
	}
	if len(keys) == 0 {
		slog.Warn("jwks has no usable signing keys", "url", s.logURL)
	}
	s.mu.Lock()
	s.gen.Add(1) // first: a token verified by the keys going out is not taken on trust after
	s.keys, s.fetchedAt = keys, s.now()
	s.mu.Unlock()
}

// jwk is the subset of RFC 7517/7518/8037 fields we read.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

func (s *keySet) fetch(ctx context.Context) ([]pubKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, jwksMaxBytes)).Decode(&doc); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	var keys []pubKey
	for _, j := range doc.Keys {
		if j.Use != "" && j.Use != "sig" {
			continue // encryption keys must never verify signatures
		}
		k, err := j.parse()
		if err != nil {
			// One odd key (a new kty, say) must not take the others down with it.
			slog.Debug("jwks: skipping key", "kid", j.Kid, "kty", j.Kty, "err", err)
			continue
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func (j jwk) parse() (pubKey, error) {
	var key crypto.PublicKey
	switch j.Kty {
	case "RSA":
		n, e := b64(j.N), b64(j.E)
		if len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return pubKey{}, errors.New("bad RSA n or e")
		}
		exp := int(new(big.Int).SetBytes(e).Int64())
		if exp < 3 {
			return pubKey{}, errors.New("bad RSA exponent")
		}
		key = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}
	case "EC":
		curve := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}[j.Crv]
		if curve == nil {
			return pubKey{}, fmt.Errorf("unsupported crv %q", j.Crv)
		}
		size := (curve.Params().BitSize + 7) / 8
		x, y := b64(j.X), b64(j.Y)
		if len(x) != size || len(y) != size {
			return pubKey{}, errors.New("bad EC x or y")
		}
		k, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
		if err != nil {
			return pubKey{}, err
		}
		key = k
	case "OKP":
		x := b64(j.X)
		if j.Crv != "Ed25519" || len(x) != ed25519.PublicKeySize {
			return pubKey{}, errors.New("unsupported OKP key")
		}
		key = ed25519.PublicKey(x)
	default:
		return pubKey{}, fmt.Errorf("unsupported kty %q", j.Kty)
	}
	return newPubKey(j.Kid, key, j.Alg)
}

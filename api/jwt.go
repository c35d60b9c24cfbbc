package api

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

const (
	// maxLeeway is the contract's ceiling on clock leeway (API.md, "Details that clients rely on").
	maxLeeway = 30 * time.Second
	// maxTokenBytes bounds the work an unauthenticated caller can make us do; real tokens are
	// a few hundred bytes to a few KiB.
	maxTokenBytes = 16 << 10
	// maxSubBytes keeps user ids small enough to index and to show; issuers use far less.
	maxSubBytes = 255
	// maxNameRunes caps the display name so one user cannot flood every client's layout.
	maxNameRunes = 100

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

// The algorithm families. A token's alg only chooses among the keys that the configuration
// already allows for that alg; it never chooses how a key is interpreted.
var (
	hmacAlgs = []string{"HS256", "HS384", "HS512"}
	rsaAlgs  = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	// asymAlgs is every algorithm some public key may accept; the key itself narrows it.
	asymAlgs = append(slices.Clone(rsaAlgs), "ES256", "ES384", "ES512", "EdDSA")
)

// KeyConfig says which keys verify tokens and which claims are enforced.
type KeyConfig struct {
	// Secret is the HMAC secret (HS256/384/512): the literal bytes of CHAT_JWT_SECRET. May be empty.
	Secret []byte
	// PublicKeyPEM is a PEM public key: RSA (RS*, PS*), ECDSA (the ES* of its curve) or
	// Ed25519 (EdDSA). May be empty.
	PublicKeyPEM []byte
	// JWKSURL is the issuer's JWKS endpoint. May be empty.
	JWKSURL string
	// Issuer is enforced against iss when non-empty.
	Issuer string
	// Audience is enforced against aud when non-empty.
	Audience string
	// Leeway is the clock leeway for exp and nbf; NewVerifier rejects more than 30s.
	Leeway time.Duration
	// HTTPClient fetches the JWKS; nil means a client with a 10s timeout.
	HTTPClient *http.Client
	// Now is the clock; nil means time.Now. Tests inject it.
	Now func() time.Time
}

// Identity is who a verified token speaks for.
type Identity struct {
	// Sub is the token's sub claim: the user id.
	Sub string
	// Name is the optional name claim, trimmed and capped; "" when absent.
	Name string
	// Expires is the token's exp; streams authenticated by it end then.
	Expires time.Time
}

// Verifier checks tokens against the configured keys. It is safe for concurrent use.
type Verifier struct {
	secret []byte
	pem    *pubKey // nil when no PEM key is configured
	jwks   *keySet // nil when no JWKS URL is configured
	parser *jwt.Parser
}

// tokenClaims is what we read from a token: the registered claims plus the display name.
type tokenClaims struct {
	jwt.RegisteredClaims
	Name string `json:"name,omitempty"`
}

// NewVerifier builds a Verifier from cfg. It fails on configuration that can never verify
// anything (no key, unreadable PEM, bad JWKS URL, excessive leeway). A failed initial JWKS
// fetch (bounded by ctx) is only logged: the issuer may start after us, and lookups retry.
func NewVerifier(ctx context.Context, cfg KeyConfig) (*Verifier, error) {
	if len(cfg.Secret) == 0 && len(cfg.PublicKeyPEM) == 0 && cfg.JWKSURL == "" {
		return nil, errors.New("jwt: no key configured: set a secret, a PEM public key or a JWKS URL")
	}
	if cfg.Leeway < 0 || cfg.Leeway > maxLeeway {
		return nil, fmt.Errorf("jwt: leeway %v out of range [0, %v]", cfg.Leeway, maxLeeway)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	v := &Verifier{secret: cfg.Secret}

	var methods []string
	if len(cfg.Secret) > 0 {
		methods = append(methods, hmacAlgs...)
	}
	if len(cfg.PublicKeyPEM) > 0 {
		k, err := parsePEM(cfg.PublicKeyPEM)
		if err != nil {
			return nil, err
		}
		v.pem = &k
		methods = append(methods, k.algs...)
	}
	if cfg.JWKSURL != "" {
		u, err := url.Parse(cfg.JWKSURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, errors.New("jwt: JWKS URL must be an absolute http(s) URL")
		}
		client := cfg.HTTPClient
		if client == nil {
			client = &http.Client{Timeout: jwksTimeout}
		}
		v.jwks = &keySet{url: cfg.JWKSURL, logURL: u.Redacted(), client: client, now: now}
		v.jwks.refresh(ctx)
		methods = append(methods, asymAlgs...)
	}

	opts := []jwt.ParserOption{
		jwt.WithValidMethods(dedupe(methods)),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(now),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// Verify checks token and returns who it speaks for. The error is for logs only (callers
// answer a generic 401); it never contains the token.
func (v *Verifier) Verify(ctx context.Context, token string) (Identity, error) {
	if len(token) > maxTokenBytes {
		return Identity{}, errors.New("jwt: token too large")
	}
	var c tokenClaims
	if _, err := v.parser.ParseWithClaims(token, &c, v.keyfunc(ctx)); err != nil {
		return Identity{}, fmt.Errorf("jwt: %w", err)
	}
	if err := checkSub(c.Subject); err != nil {
		return Identity{}, err
	}
	return Identity{Sub: c.Subject, Name: cleanName(c.Name), Expires: c.ExpiresAt.Time}, nil
}

// keyfunc returns the keys that may verify a token with the given alg. HMAC algs get the
// secret and nothing else, so PEM bytes can never act as an HMAC secret; other algs get
// only typed public keys whose own alg list names the token's alg.
func (v *Verifier) keyfunc(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		alg := t.Method.Alg()
		if slices.Contains(hmacAlgs, alg) {
			if len(v.secret) == 0 {
				return nil, errors.New("no HMAC secret configured")
			}
			return v.secret, nil
		}
		var keys []jwt.VerificationKey
		if v.pem != nil && v.pem.allows(alg) {
			keys = append(keys, v.pem.key)
		}
		if v.jwks != nil {
			kid, _ := t.Header["kid"].(string)
			keys = append(keys, v.jwks.lookup(ctx, kid, alg)...)
		}
		if len(keys) == 0 {
			return nil, errors.New("no configured key accepts this alg and kid")
		}
		return jwt.VerificationKeySet{Keys: keys}, nil
	}
}

// SignHS256 mints an HS256 token for `chatd token` and tests: sub, optional name, iat and
// exp = now+ttl.
func SignHS256(secret []byte, sub, name string, ttl time.Duration, now time.Time) (string, error) {
	return SignHS256For(secret, "", "", sub, name, ttl, now)
}

// SignHS256For is SignHS256 with iss and aud set when non-empty, for a service configured
// to require them.
func SignHS256For(secret []byte, issuer, audience, sub, name string, ttl time.Duration, now time.Time) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("jwt: empty secret")
	}
	if err := checkSub(sub); err != nil {
		return "", err
	}
	if ttl <= 0 {
		return "", errors.New("jwt: ttl must be positive")
	}
	c := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   sub,
			Issuer:    issuer,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Name: name,
	}
	if audience != "" {
		c.Audience = jwt.ClaimStrings{audience}
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}

// checkSub enforces what the rest of the service assumes about user ids.
func checkSub(sub string) error {
	switch {
	case sub == "":
		return errors.New("jwt: sub claim is required")
	case len(sub) > maxSubBytes:
		return errors.New("jwt: sub claim longer than 255 bytes")
	case !utf8.ValidString(sub):
		return errors.New("jwt: sub claim is not valid UTF-8")
	case strings.IndexFunc(sub, unicode.IsControl) >= 0:
		return errors.New("jwt: sub claim contains control characters")
	}
	return nil
}

// cleanName makes the optional display name safe to show: no control characters, no
// surrounding space, at most maxNameRunes runes.
func cleanName(name string) string {
	name = strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(name, "\uFFFD")))
	if utf8.RuneCountInString(name) > maxNameRunes {
		name = strings.TrimSpace(string([]rune(name)[:maxNameRunes]))
	}
	return name
}

// pubKey is one public key and the only algs it may verify.
type pubKey struct {
	kid  string
	key  crypto.PublicKey
	algs []string
}

func (k pubKey) allows(alg string) bool { return slices.Contains(k.algs, alg) }

// newPubKey fixes a key's algs from its type (and curve), optionally narrowed by a JWK's
// declared alg, which must agree.
func newPubKey(kid string, key crypto.PublicKey, declared string) (pubKey, error) {
	var algs []string
	switch k := key.(type) {
	case *rsa.PublicKey:
		algs = rsaAlgs
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			algs = []string{"ES256"}
		case elliptic.P384():
			algs = []string{"ES384"}
		case elliptic.P521():
			algs = []string{"ES512"}
		default:
			return pubKey{}, errors.New("unsupported EC curve")
		}
	case ed25519.PublicKey:
		algs = []string{"EdDSA"}
	default:
		return pubKey{}, fmt.Errorf("unsupported public key type %T", key)
	}
	if declared == "Ed25519" {
		declared = "EdDSA" // RFC 9864's name for the same algorithm
	}
	if declared != "" {
		if !slices.Contains(algs, declared) {
			return pubKey{}, fmt.Errorf("alg %q does not match the key type", declared)
		}
		algs = []string{declared}
	}
	return pubKey{kid: kid, key: key, algs: algs}, nil
}

// parsePEM reads one PKIX ("PUBLIC KEY"), PKCS#1 ("RSA PUBLIC KEY") or certificate block.
func parsePEM(data []byte) (pubKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return pubKey{}, errors.New("jwt: public key is not PEM")
	}
	var key crypto.PublicKey
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = cert.PublicKey
		}
	default:
		return pubKey{}, fmt.Errorf("jwt: unsupported PEM block %q (want PUBLIC KEY)", block.Type)
	}
	if err != nil {
		return pubKey{}, fmt.Errorf("jwt: parse PEM public key: %w", err)
	}
	k, err := newPubKey("", key, "")
	if err != nil {
		return pubKey{}, fmt.Errorf("jwt: PEM: %w", err)
	}
	return k, nil
}

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

// b64 decodes base64url, with or without padding; nil on error, which callers reject.
func b64(s string) []byte {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil
	}
	return b
}

func dedupe(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}

package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
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
	// AuthJSSecrets are the Auth.js application's AUTH_SECRET values, current first, whose
	// encrypted session tokens are accepted (authjs.go). May be empty.
	AuthJSSecrets [][]byte
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
	signed bool        // whether any key verifies signed tokens (JWS)
	authjs *authjsKeys // nil when no Auth.js secret is configured
	now    func() time.Time

	verified verifiedTokens
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
	signed := len(cfg.Secret) > 0 || len(cfg.PublicKeyPEM) > 0 || cfg.JWKSURL != ""
	if !signed && len(cfg.AuthJSSecrets) == 0 {
		return nil, errors.New("jwt: no key configured: set a secret, a PEM public key, a JWKS URL or an Auth.js secret")
	}
	if cfg.Leeway < 0 || cfg.Leeway > maxLeeway {
		return nil, fmt.Errorf("jwt: leeway %v out of range [0, %v]", cfg.Leeway, maxLeeway)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	v := &Verifier{secret: cfg.Secret, signed: signed, now: now}
	if len(cfg.AuthJSSecrets) > 0 {
		k, err := newAuthJSKeys(cfg.AuthJSSecrets, authjsValidator(cfg.Leeway, now))
		if err != nil {
			return nil, err
		}
		v.authjs = k
	}

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
//
// A compact JWE is an Auth.js session token, tried with both cookie names as salt (see
// authjsSalts); anything else is a signed JWT. A token verified lately is taken on trust
// until its exp, for a minute at most, while the keys are the same (verified.go).
func (v *Verifier) Verify(ctx context.Context, token string) (Identity, error) {
	if len(token) > max(maxTokenBytes, maxAuthJSTokenBytes) {
		return Identity{}, errors.New("jwt: token too large")
	}
	keys, staleAt := v.keyState() // before verifying: a refresh meanwhile ends the entry
	if id, ok := v.verified.get(token, keys, v.now()); ok {
		return id, nil
	}
	id, err := v.verify(ctx, token)
	if err == nil {
		v.verified.put(token, id, keys, v.now(), staleAt)
	}
	return id, err
}

// keyState is the generation of the keys in use, which changes whenever the JWKS is
// fetched anew, and when they go stale: a token is not taken on trust past that, since
// its key may have been removed at the issuer. The secret, the PEM key and the Auth.js
// secrets never change (generation 0, never stale).
func (v *Verifier) keyState() (gen uint64, staleAt time.Time) {
	if v.jwks == nil {
		return 0, time.Time{}
	}
	return v.jwks.state()
}

// verify is Verify without the memory of tokens verified lately.
func (v *Verifier) verify(ctx context.Context, token string) (Identity, error) {
	if len(token) <= maxAuthJSTokenBytes && isJWE(token) {
		return v.VerifyAuthJS(token, authjsSalts...)
	}
	if len(token) > maxTokenBytes {
		return Identity{}, errors.New("jwt: token too large")
	}
	if !v.signed {
		return Identity{}, errors.New("jwt: no key for signed tokens is configured")
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

// VerifyAuthJS reads an Auth.js session token whose key was derived with one of salts (the
// name of the cookie it came in, or both names for a Bearer token).
func (v *Verifier) VerifyAuthJS(token string, salts ...string) (Identity, error) {
	if v.authjs == nil {
		return Identity{}, errors.New("authjs: no Auth.js secret is configured")
	}
	return v.authjs.decrypt(token, salts)
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

func dedupe(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}

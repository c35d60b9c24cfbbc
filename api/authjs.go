package api

// Auth.js v5 session tokens, read as Auth.js itself reads them (@auth/core/jwt `decode`, the
// version pinned in web/e2e/package.json): a compact JWE with alg "dir" and enc
// "A256CBC-HS512" (decode also takes "A256GCM"), whose key is derived from the application's
// AUTH_SECRET by HKDF-SHA256 with the cookie name as salt. Auth.js puts a "kid" in the header,
// the JWK thumbprint of the derived key, and picks the secret of a rotated list by it; a token
// without a kid is tried with the first secret only, as Auth.js does.

import (
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// The cookies Auth.js keeps its session token in: the second where the app uses secure
// cookies (https), the first otherwise. Each name is also the HKDF salt of its token.
const (
	authjsCookie       = "authjs.session-token"
	authjsSecureCookie = "__Secure-authjs.session-token"
)

// authjsSalts are the salts a Bearer token may have been made with: a token taken from
// either cookie can be sent as a Bearer token, and nothing in it says which cookie it was.
var authjsSalts = []string{authjsCookie, authjsSecureCookie}

// maxAuthJSTokenBytes bounds the token, chunks assembled: eight of Auth.js's cookie chunks,
// far more than a session needs, and half the HTTP server's header limit.
const maxAuthJSTokenBytes = 32 << 10

// The algorithms Auth.js's decode accepts: anything else is refused before any key is used.
var (
	authjsAlgs = []jose.KeyAlgorithm{jose.DIRECT}
	authjsEncs = []jose.ContentEncryption{jose.A256CBC_HS512, jose.A256GCM}
)

// authjsKey is one secret's key for one salt, per content encryption, with its kid.
type authjsKey struct {
	key map[jose.ContentEncryption][]byte
	kid map[jose.ContentEncryption]string
}

// authjsKeys decrypts Auth.js session tokens with the configured secrets. The keys are
// derived once, so a request costs one decryption, not one HKDF per secret.
type authjsKeys struct {
	bySalt    map[string][]authjsKey // in the order of the secrets: the first is the current one
	validator *jwt.Validator
}

// newAuthJSKeys derives the keys of every secret for both cookie names.
func newAuthJSKeys(secrets [][]byte, validator *jwt.Validator) (*authjsKeys, error) {
	k := &authjsKeys{bySalt: make(map[string][]authjsKey), validator: validator}
	for _, salt := range authjsSalts {
		for i, secret := range secrets {
			if len(secret) == 0 {
				return nil, fmt.Errorf("authjs: secret %d is empty", i+1)
			}
			key, err := deriveAuthJSKey(secret, salt)
			if err != nil {
				return nil, err
			}
			k.bySalt[salt] = append(k.bySalt[salt], key)
		}
	}
	return k, nil
}

// deriveAuthJSKey is Auth.js's getDerivedEncryptionKey for both encryptions, and the kid
// its encode writes: the RFC 7638 thumbprint of the key as an "oct" JWK, hashed with
// SHA-512 for the 64-byte key and SHA-256 for the 32-byte one (jose's calculateJwkThumbprint
// with `sha${bits}`).
func deriveAuthJSKey(secret []byte, salt string) (authjsKey, error) {
	info := "Auth.js Generated Encryption Key (" + salt + ")"
	k := authjsKey{key: make(map[jose.ContentEncryption][]byte), kid: make(map[jose.ContentEncryption]string)}
	for enc, size := range map[jose.ContentEncryption]int{jose.A256CBC_HS512: 64, jose.A256GCM: 32} {
		key, err := hkdf.Key(sha256.New, secret, []byte(salt), info, size)
		if err != nil {
			return authjsKey{}, fmt.Errorf("authjs: %w", err)
		}
		// The members of an "oct" JWK in lexicographic order, without spaces (RFC 7638 §3.2).
		jwk := `{"k":"` + base64.RawURLEncoding.EncodeToString(key) + `","kty":"oct"}`
		var sum []byte
		if size == 64 {
			s := sha512.Sum512([]byte(jwk))
			sum = s[:]
		} else {
			s := sha256.Sum256([]byte(jwk))
			sum = s[:]
		}
		k.key[enc], k.kid[enc] = key, base64.RawURLEncoding.EncodeToString(sum)
	}
	return k, nil
}

// decrypt reads an Auth.js session token made with one of salts. The error is for logs only.
func (k *authjsKeys) decrypt(token string, salts []string) (Identity, error) {
	if len(token) > maxAuthJSTokenBytes {
		return Identity{}, errors.New("authjs: token too large")
	}
	obj, err := jose.ParseEncryptedCompact(token, authjsAlgs, authjsEncs)
	if err != nil {
		return Identity{}, fmt.Errorf("authjs: %w", err)
	}
	// jose, which Auth.js uses, supports no compression; go-jose would inflate.
	if _, ok := obj.Header.ExtraHeaders["zip"]; ok {
		return Identity{}, errors.New("authjs: compressed tokens are not accepted")
	}
	enc, _ := obj.Header.ExtraHeaders["enc"].(string)
	plain, err := k.open(obj, jose.ContentEncryption(enc), salts)
	if err != nil {
		return Identity{}, err
	}
	return k.identity(plain, obj.Header.ExtraHeaders)
}

// open decrypts with the key the kid names (or, without a kid, the first secret's key) for
// each salt in turn; the first that opens the token wins.
func (k *authjsKeys) open(obj *jose.JSONWebEncryption, enc jose.ContentEncryption, salts []string) ([]byte, error) {
	kid := obj.Header.KeyID
	for _, salt := range salts {
		for _, key := range k.bySalt[salt] {
			if kid != "" && kid != key.kid[enc] {
				continue
			}
			if plain, err := obj.Decrypt(key.key[enc]); err == nil {
				return plain, nil
			}
			break // a kid names one key; without one, only the first secret is tried
		}
	}
	return nil, errors.New("authjs: no configured secret decrypts the token")
}

// identity checks the decrypted claims as the JWT verifier checks a signed token's
// (exp required, nbf, leeway) and as jose's jwtDecrypt does for the header copies of
// iss, sub and aud (they must match the payload's).
func (k *authjsKeys) identity(plain []byte, header map[jose.HeaderKey]any) (Identity, error) {
	var c tokenClaims
	if err := json.Unmarshal(plain, &c); err != nil {
		return Identity{}, fmt.Errorf("authjs: claims: %w", err)
	}
	if err := k.validator.Validate(c); err != nil {
		return Identity{}, fmt.Errorf("authjs: %w", err)
	}
	var payload map[string]any // read only when the header copies a claim: Auth.js's never does
	for _, name := range []string{"iss", "sub", "aud"} {
		v, ok := header[jose.HeaderKey(name)]
		if !ok {
			continue
		}
		if payload == nil {
			if err := json.Unmarshal(plain, &payload); err != nil {
				return Identity{}, fmt.Errorf("authjs: claims: %w", err)
			}
		}
		if !reflect.DeepEqual(v, payload[name]) {
			return Identity{}, fmt.Errorf("authjs: header %s does not match the claim", name)
		}
	}
	if err := checkSub(c.Subject); err != nil {
		return Identity{}, err
	}
	return Identity{Sub: c.Subject, Name: cleanName(c.Name), Expires: c.ExpiresAt.Time}, nil
}

// isJWE tells a compact JWE (five dot-separated parts) from a compact JWS (three): the
// form, not a guess from the content, chooses how a Bearer token is read. Callers bound the
// token's length first.
func isJWE(token string) bool { return strings.Count(token, ".") == 4 }

// authjsValidator checks the registered claims of a decrypted token with the options the
// JWT parser uses.
func authjsValidator(leeway time.Duration, now func() time.Time) *jwt.Validator {
	return jwt.NewValidator(jwt.WithExpirationRequired(), jwt.WithLeeway(leeway), jwt.WithTimeFunc(now))
}

package api

// Public keys that verify tokens: each key fixes the algorithms it accepts, from its own
// type, never from the token. PEM files are read here; JWKS in jwks.go.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
)

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

// b64 decodes base64url, with or without padding; nil on error, which callers reject.
func b64(s string) []byte {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil
	}
	return b
}

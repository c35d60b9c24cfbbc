package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
)

// secretPrefix marks a secret given the way the Standard Webhooks specification writes
// them: "whsec_" and the key in base64.
const secretPrefix = "whsec_"

// minSecretBytes is the shortest key accepted: the specification asks for 24 to 64 random
// bytes; below 16 an HMAC key is guessable.
const minSecretBytes = 16

// ParseSecret returns the signing key of CHAT_WEBHOOK_SECRET: the bytes after "whsec_"
// decoded from base64 (standard alphabet, as the specification's libraries decode it), or
// the text itself when it has no such prefix.
func ParseSecret(s string) ([]byte, error) {
	key := []byte(s)
	if rest, ok := strings.CutPrefix(s, secretPrefix); ok {
		var err error
		if key, err = base64.StdEncoding.DecodeString(rest); err != nil {
			return nil, errors.New("webhook secret: the part after whsec_ is not base64")
		}
	}
	if len(key) < minSecretBytes {
		return nil, errors.New("webhook secret: at least 16 bytes are needed")
	}
	return key, nil
}

// Sign returns the webhook-signature header value for one attempt: "v1," and the base64
// HMAC-SHA256 of "id.timestamp.body" under key (Standard Webhooks, "Signature scheme").
func Sign(key []byte, id, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

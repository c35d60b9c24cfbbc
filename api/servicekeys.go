package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"strings"

	"github.com/gin-gonic/gin"
)

// Service keys authenticate the application's backend on the server API (/v1/server). They
// are a credential of their own kind: a service key is never accepted as a user's token,
// and a user's token never opens the server API.

// MinServiceKeyLen is the shortest service key accepted: 32 characters, as many as a
// random 192-bit key in base64, so that no key can be guessed.
const MinServiceKeyLen = 32

// maxServiceKeyName bounds a key's name, which goes into every log line of its requests.
const maxServiceKeyName = 64

// ServiceKeys are the configured service keys. Only SHA-256 hashes of the keys are kept, so
// the keys themselves do not linger in memory (or in a core dump) after parsing.
type ServiceKeys struct {
	keys []serviceKey
}

type serviceKey struct {
	name string
	hash [sha256.Size]byte
}

// ParseServiceKeys reads CHAT_SERVICE_KEYS: comma-separated name:key pairs. A name is
// letters, digits, '-', '_' and '.'; a key is at least MinServiceKeyLen characters without
// spaces or commas. Names and keys must be unique. Errors never quote a key.
func ParseServiceKeys(s string) (*ServiceKeys, error) {
	out := &ServiceKeys{}
	seen := map[string]bool{}
	for i, pair := range strings.Split(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		name, key, ok := strings.Cut(pair, ":")
		switch {
		case !ok:
			return nil, fmt.Errorf("service key %d is not name:key", i+1)
		case !validKeyName(name):
			return nil, fmt.Errorf("service key %d: the name must be 1 to %d letters, digits, '-', '_' or '.'", i+1, maxServiceKeyName)
		case seen[name]:
			return nil, fmt.Errorf("service key %q: the name is used twice", name)
		case len(key) < MinServiceKeyLen:
			return nil, fmt.Errorf("service key %q is shorter than %d characters", name, MinServiceKeyLen)
		case strings.ContainsFunc(key, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			return nil, fmt.Errorf("service key %q contains a space or a control character", name)
		}
		seen[name] = true
		h := sha256.Sum256([]byte(key))
		for _, k := range out.keys {
			if k.hash == h {
				return nil, fmt.Errorf("service keys %q and %q are the same key", k.name, name)
			}
		}
		out.keys = append(out.keys, serviceKey{name: name, hash: h})
	}
	return out, nil
}

func validKeyName(s string) bool {
	if s == "" || len(s) > maxServiceKeyName {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	})
}

// Len is the number of configured keys.
func (k *ServiceKeys) Len() int {
	if k == nil {
		return 0
	}
	return len(k.keys)
}

// match returns the name of the key presented, or "" when it is none of them. Every key's
// hash is compared, in constant time, whatever matches: the time taken tells nothing of
// which key, or how much of one, was right.
func (k *ServiceKeys) match(presented string) string {
	if k == nil {
		return ""
	}
	h := sha256.Sum256([]byte(presented))
	name := ""
	for _, c := range k.keys {
		if subtle.ConstantTimeCompare(h[:], c.hash[:]) == 1 {
			name = c.name
		}
	}
	return name
}

// ctxService is the name of the service key that authenticated a server API request.
const ctxService = "chatd.service"

func service(c *gin.Context) string { return c.GetString(ctxService) }

// bearer is the token of an "Authorization: Bearer <token>" header, "" without one.
func bearer(c *gin.Context) string {
	scheme, token, ok := strings.Cut(c.GetHeader("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// authenticateService admits a server API request only with a service key as its Bearer
// token. Nothing else counts here: not a user's token, not a cookie, not a ticket.
func (s *Server) authenticateService(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	name := s.cfg.ServiceKeys.match(bearer(c))
	if name == "" {
		s.renderError(c, errUnauthenticated)
		c.Abort()
		return
	}
	c.Set(ctxService, name)
	c.Next()
}

// refuseServiceKey keeps service keys off the user routes: a Bearer token that is a
// service key is refused before it could be taken for a user's token.
func (s *Server) refuseServiceKey(c *gin.Context) {
	if t := bearer(c); t != "" && s.cfg.ServiceKeys.match(t) != "" {
		s.renderError(c, errorf("unauthenticated", "a service key is not a user's token; it opens /v1/server only"))
		c.Abort()
		return
	}
	c.Next()
}

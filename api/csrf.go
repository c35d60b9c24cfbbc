package api

import (
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"
)

// chatRequestHeader marks a request a script made on purpose. A cross-site form cannot send
// a header, and a cross-site script can only after a CORS preflight, which chatd answers for
// the origins of CHAT_ALLOWED_ORIGINS alone.
const chatRequestHeader = "X-Chat-Request"

// cookieMayAuthenticate says whether a cookie (chat_session or an Auth.js session) may
// authenticate this request. Safe methods: always (they change nothing). Any other method:
// only with `X-Chat-Request: 1` and an Origin that is the service's own or listed in
// CHAT_ALLOWED_ORIGINS ("*" lists no origin here: it never admits credentials). Otherwise
// the cookie is ignored and the request needs other credentials.
func (s *Server) cookieMayAuthenticate(c *gin.Context) bool {
	if m := c.Request.Method; m == http.MethodGet || m == http.MethodHead {
		return true
	}
	if c.GetHeader(chatRequestHeader) != "1" {
		return false
	}
	origin := c.GetHeader("Origin")
	if origin == "" || origin == "null" {
		return false
	}
	return strings.EqualFold(origin, ownOrigin(c.Request)) || slices.Contains(s.cfg.AllowedOrigins, origin)
}

// ownOrigin is the origin the request was addressed to, as a browser writes it: the scheme
// and the Host header. Behind a proxy that is the public origin when the proxy passes the
// Host header on (nginx: `proxy_set_header Host $host`) and, if TLS ends at the proxy, says
// so in X-Forwarded-Proto. A proxy that rewrites Host needs the public origin listed in
// CHAT_ALLOWED_ORIGINS instead. Trusting X-Forwarded-Proto admits nothing a browser could
// forge: a page can set that header on a cross-origin request only after a preflight,
// which foreign origins do not pass.
func ownOrigin(r *http.Request) string {
	scheme := "http"
	proto, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ",")
	if r.TLS != nil || strings.EqualFold(strings.TrimSpace(proto), "https") {
		scheme = "https"
	}
	host := r.Host
	// Browsers leave the scheme's default port out of Origin; some clients write it in Host.
	if p := map[string]string{"http": ":80", "https": ":443"}[scheme]; strings.HasSuffix(host, p) {
		host = strings.TrimSuffix(host, p)
	}
	return scheme + "://" + host
}

package api

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
)

// webCSP lets the page load its own scripts, styles and images and talk to its own origin,
// and nothing else: an injected script or a foreign frame has nowhere to go.
const webCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// webHeaders protects the browser client's files: no framing (clickjacking), a strict CSP,
// no content sniffing.
func webHeaders(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", webCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	c.Next()
}

// webIndex serves the browser client's page.
func (s *Server) webIndex(c *gin.Context) error {
	c.Header("Cache-Control", "no-cache")
	c.FileFromFS("/", s.cfg.Web)
	return nil
}

type devTokenRequest struct {
	Sub  string `json:"sub"`
	Name string `json:"name"`
}

// devTokenTTL is the life of a demo token: a working day of clicking around.
const devTokenTTL = 12 * time.Hour

// devToken mints a token for any name. It exists only under `chatd serve -dev`, which
// says so loudly at startup; it is never routed otherwise.
func (s *Server) devToken(c *gin.Context) error {
	var req devTokenRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	if !validUserID(req.Sub) {
		return errorf("invalid_sub", "sub must be 1 to 255 bytes of text")
	}
	token, err := SignHS256For(s.cfg.DevSecret, s.cfg.DevIssuer, s.cfg.DevAudience, req.Sub, req.Name, devTokenTTL, s.now())
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, gin.H{"token": token, "expires_in": int(devTokenTTL.Seconds())})
	return nil
}

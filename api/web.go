package api

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// webCSP lets the page load its own scripts, styles and images and talk to its own origin,
// and nothing else: an injected script or a foreign frame has nowhere to go. Images may
// also come from the attachment hosts, exactly those (https, host and port as listed), so
// the browser itself refuses an image from anywhere else, whatever the page asks for.
func webCSP(attachmentHosts []string) string {
	img := "'self' data:"
	for _, h := range attachmentHosts {
		img += " https://" + h // ParseAttachmentHosts admits no character CSP gives meaning to
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src " + img + "; " +
		"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}

// webHeaders protects the browser client's files: no framing (clickjacking), a strict CSP,
// no content sniffing.
func (s *Server) webHeaders(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", s.csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	c.Next()
}

// hostsMeta is the placeholder in index.html that webIndex fills with the attachment hosts,
// so the page shows images only from them (and links to the others) without asking.
const hostsMeta = `<meta name="chatd-attachment-hosts" content="">`

// webIndex serves the browser client's page, told the attachment hosts.
func (s *Server) webIndex(c *gin.Context) error {
	s.pageOnce.Do(func() {
		f, err := s.cfg.Web.Open("/index.html")
		if err != nil {
			s.pageErr = err
			return
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		meta := `<meta name="chatd-attachment-hosts" content="` + strings.Join(s.cfg.AttachmentHosts, " ") + `">`
		s.page, s.pageErr = bytes.Replace(b, []byte(hostsMeta), []byte(meta), 1), err
	})
	if s.pageErr != nil {
		return s.pageErr
	}
	c.Header("Cache-Control", "no-cache")
	c.Data(http.StatusOK, "text/html; charset=utf-8", s.page)
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

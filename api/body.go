package api

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
)

// ctxBody holds the request's guardedBody, when it has one.
const ctxBody = "chatd.body"

// guardBody puts a deadline on reading the request body: a client that announces a body and
// never sends it would otherwise hold its connection (and a file) forever, without even a
// token. The deadline is lifted once the body has been read, so the rest of the request,
// and a stream (which has no body), are not cut short by it.
func (s *Server) guardBody(c *gin.Context) {
	r := c.Request
	if s.cfg.BodyTimeout <= 0 || r.Body == nil || r.Body == http.NoBody {
		c.Next()
		return
	}
	rc := http.NewResponseController(c.Writer)
	if err := rc.SetReadDeadline(time.Now().Add(spread(s.cfg.BodyTimeout))); err != nil { // a real clock: the socket's
		c.Next() // a ResponseWriter without deadlines (tests' recorders)
		return
	}
	b := &guardedBody{ReadCloser: r.Body, rc: rc}
	r.Body = b
	c.Set(ctxBody, b)
	c.Next()
}

// spread returns a time between 90 % and 100 % of d. Deadlines set at once (a client that
// opens thousands of connections together) then do not all expire at once: their answers,
// closes and the client's reconnections reach the server over a tenth of d instead of in
// one burst that delays everyone else's requests.
func spread(d time.Duration) time.Duration { return d - rand.N(d/10+1) }

// guardedBody is a request body read under a deadline.
type guardedBody struct {
	io.ReadCloser
	rc       *http.ResponseController
	ended    bool // read to its end, or failed
	timedOut bool
}

func (b *guardedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !b.ended {
		b.ended = true
		var ne net.Error
		b.timedOut = errors.As(err, &ne) && ne.Timeout()
		if err == io.EOF {
			_ = b.rc.SetReadDeadline(time.Time{})
		}
	}
	return n, err
}

// refuseUnreadBody is called before an error answer: if the request's body was not read to
// its end, the connection closes after the answer instead of waiting to drain what the
// client may never send.
func refuseUnreadBody(c *gin.Context) {
	v, ok := c.Get(ctxBody)
	if b, _ := v.(*guardedBody); ok && b != nil && !b.ended {
		c.Header("Connection", "close")
		_ = b.rc.SetReadDeadline(time.Unix(1, 0)) // the drain net/http does ends at once
	}
}

// bodyReadError is the answer to a body that could not be read.
func bodyReadError(c *gin.Context) error {
	if v, ok := c.Get(ctxBody); ok && v.(*guardedBody).timedOut {
		return errorf("request_timeout", "the request body did not arrive in time")
	}
	return errorf("bad_request", "could not read the request body")
}

package api

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Limits of one instance's connections, applied below HTTP so that a flood of connections
// that never send a request, or never finish one, cannot exhaust the process's files.
type ConnLimits struct {
	// Max is how many connections the instance holds at once, streams included; one more
	// is answered 503 with Retry-After and closed. 0 means no cap.
	Max int
	// PerAddr is how many of them one remote address may hold; 0 means no cap. Set it only
	// where clients connect directly: behind a load balancer every connection comes from
	// the balancer's address.
	PerAddr int
	// RetryAfter is what the refusal tells the client to wait.
	RetryAfter time.Duration
}

// LimitListener wraps ln so that it holds at most limits' connections.
func LimitListener(ln net.Listener, limits ConnLimits) net.Listener {
	return &limitListener{Listener: ln, limits: limits, conns: newSlots(limits.Max, limits.PerAddr)}
}

type limitListener struct {
	net.Listener
	limits ConnLimits
	conns  *slots // per remote address
}

// Accept returns the next connection within the limits; the others are refused on their
// own goroutine, so a flood of them never holds up the accept loop.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := remoteHost(c)
		if l.conns.take(addr) == slotTaken {
			return &limitedConn{Conn: c, release: func() { l.conns.give(addr) }}, nil
		}
		go refuse(c, l.limits.RetryAfter)
	}
}

func remoteHost(c net.Conn) string {
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}

// refuse answers a connection over the limits with a 503 that load balancers and clients
// understand, without reading its request, and closes it.
func refuse(c net.Conn, retry time.Duration) {
	defer c.Close()
	body := `{"error":{"code":"too_many_connections","message":"this instance holds as many connections as it may; try again (another instance may answer)"}}`
	msg := "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n" +
		"Retry-After: " + strconv.Itoa(max(1, int(retry.Seconds()))) + "\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return
	}
	// Closing with the client's request unread would reset the connection, and a reset can
	// destroy the answer before the client reads it: say we are done, then read what the
	// client sent until it closes too (or the deadline passes).
	if tc, ok := c.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
}

// limitedConn gives its slot back when closed, however often Close is called (net/http
// and a hijacking stream may both close it).
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// NewHTTPServer is the http.Server every instance runs handler with. Request headers must
// arrive within 10 s and bodies within the handler's BodyTimeout (see Server.guardBody);
// there is no WriteTimeout, which would cut every stream: streams set a deadline per write.
func NewHTTPServer(handler http.Handler) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10, // tokens and cookies fit many times over
	}
}

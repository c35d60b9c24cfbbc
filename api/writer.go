package api

// The writers of a stream's body: one that stays in its handler (HTTP/2, and wherever the
// connection cannot be taken over), and one that writes HTTP/1.1 chunks straight to a
// hijacked connection.

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
)

// streamWriter sends framed bytes to a client, each call one write and one flush under a
// write deadline, so a client that stops reading is cut off instead of pinning memory. The
// deadline is the write timeout spread per stream (see spread): streams that fell behind
// together are not all cut, and reconnected, in the same instant. The frames may be shared
// with other streams: a writer never modifies or keeps them.
type streamWriter interface {
	send(frames ...[]byte) error
	close()
}

// startResponse sends the stream's status and headers. Over HTTP/1.1 it takes the
// connection over from net/http (see stream) and returns a channel closed when the client
// goes away; otherwise gone is nil and the request's context tells.
func (s *Server) startResponse(c *gin.Context) (out streamWriter, gone <-chan struct{}, err error) {
	// gin's writer always claims to hijack (and panics when the connection beneath cannot,
	// as under HTTP/2), so ask the writer beneath it.
	var beneath http.ResponseWriter = c.Writer
	if u, ok := beneath.(interface{ Unwrap() http.ResponseWriter }); ok {
		beneath = u.Unwrap()
	}
	_, canHijack := beneath.(http.Hijacker)
	if !canHijack || !c.Request.ProtoAtLeast(1, 1) || c.Request.ProtoAtLeast(2, 0) {
		c.Writer.WriteHeader(http.StatusOK)
		w := &sseOut{w: c.Writer, rc: http.NewResponseController(c.Writer), timeout: spread(s.cfg.WriteTimeout)}
		return w, nil, nil
	}
	header := c.Writer.Header().Clone()
	conn, _, err := c.Writer.Hijack()
	if err != nil {
		return nil, nil, err
	}
	b := []byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nDate: ")
	b = append(time.Now().UTC().AppendFormat(b, http.TimeFormat), "\r\n"...)
	for k, vs := range header {
		for _, v := range vs {
			b = append(append(append(append(b, k...), ": "...), v...), "\r\n"...)
		}
	}
	b = append(b, "\r\n"...)
	raw := &hijackedOut{conn: conn, w: conn, timeout: spread(s.cfg.WriteTimeout)}
	if lc, ok := conn.(*limitedConn); ok {
		// Write to the connection beneath the listener's wrapper: only the net package's
		// own connections send net.Buffers with one writev instead of a write per frame.
		raw.w = lc.Conn
	}
	if tc, ok := raw.w.(*net.TCPConn); ok {
		raw.tcp = tc
		// A small send buffer: with the kernel's autotuning (up to 4 MiB) a client that
		// stops reading absorbs most of a megabyte before a write blocks, so thousands of
		// them pin gigabytes of kernel memory and the write timeout starts late. A stream
		// sends a few kilobytes at a time; 64 KiB (the kernel doubles it) is plenty.
		_ = tc.SetWriteBuffer(streamSendBuffer)
		limitUnsent(tc)
	}
	if err := raw.write(b); err != nil {
		conn.Close()
		return nil, nil, err
	}
	closed := make(chan struct{})
	go func() {
		// The client sends nothing more on a stream; a read returns only when the
		// connection ends, which is how a departed client is noticed.
		defer close(closed)
		var buf [64]byte
		for {
			if _, err := conn.Read(buf[:]); err != nil {
				return
			}
		}
	}()
	return raw, closed, nil
}

// sseOut writes to a stream that stays in its handler.
type sseOut struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (o *sseOut) send(frames ...[]byte) error {
	// Not every ResponseWriter supports deadlines (httptest's recorder does not); the
	// write itself still fails once the client is gone.
	_ = o.rc.SetWriteDeadline(time.Now().Add(o.timeout))
	for _, b := range frames {
		if _, err := o.w.Write(b); err != nil {
			return err
		}
	}
	return o.rc.Flush()
}

func (o *sseOut) close() {} // the response ends when the handler returns

// streamSendBuffer is the socket send buffer of a hijacked stream (see startResponse).
const streamSendBuffer = 64 << 10

// streamUnsentLimit is how much a hijacked stream's socket may hold that it has not yet
// sent (TCP_NOTSENT_LOWAT): the kernel takes more of a write only while less than this
// waits. A client that stops reading still gets what its receive window takes, then this,
// and the writer blocks: on loopback 174,200 bytes written before a write blocked instead
// of 276,600 with the send buffer alone, and each of those bytes was a copy made for
// nobody, which thousands of non-reading streams turn into bursts of CPU that delay the
// streams that do read. Only unsent data is limited: what is in flight to a distant
// client is not, so a stream over a long round trip keeps its pace.
const streamUnsentLimit = 16 << 10

// hijackedOut writes a stream's body as HTTP/1.1 chunks straight to the connection.
type hijackedOut struct {
	conn    net.Conn     // deadlines and Close (which gives the listener its slot back)
	w       io.Writer    // the same connection, unwrapped for writev
	tcp     *net.TCPConn // the same connection, when it is TCP: to reset it (close)
	timeout time.Duration
	failed  bool // a write failed: the client is gone or not reading
}

func (o *hijackedOut) write(b []byte) error {
	_ = o.conn.SetWriteDeadline(time.Now().Add(o.timeout))
	_, err := o.conn.Write(b)
	o.failed = o.failed || err != nil
	return err
}

// send writes frames as one chunk with one system call (writev), without copying them.
func (o *hijackedOut) send(frames ...[]byte) error {
	n := 0
	for _, b := range frames {
		n += len(b)
	}
	if n == 0 {
		return nil // a chunk of length 0 is the end of the body
	}
	size := strconv.AppendInt(make([]byte, 0, 20), int64(n), 16)
	bufs := make(net.Buffers, 0, len(frames)+2)
	bufs = append(append(append(bufs, append(size, "\r\n"...)), frames...), crlf)
	_ = o.conn.SetWriteDeadline(time.Now().Add(o.timeout))
	_, err := bufs.WriteTo(o.w)
	o.failed = o.failed || err != nil
	return err
}

var crlf = []byte("\r\n")

// close ends the body properly (the last chunk) and the connection: the client sees a
// clean end of stream and reconnects. After a failed write there is no one to tell, and
// a client that reads gets the last chunk at once: neither waits another write timeout.
//
// A stream cut because its client stopped reading is reset instead (SO_LINGER 0, as
// nginx's reset_timedout_connection does). A plain close leaves the kernel an orphan
// socket in FIN_WAIT1 holding the bytes the client has not taken (32 KB in
// TestACutStreamIsReset, up to the send buffer) for as long as the client stays and
// answers the kernel's zero-window probes (still there after 2.5 minutes when measured),
// outside CHAT_MAX_CONNS, since its descriptor is closed: a client that never reads and
// reconnects each time it is cut would pile them up. The reset frees them at once; a
// client that does come back resumes as after any cut.
func (o *hijackedOut) close() {
	if !o.failed {
		_ = o.conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, err := o.conn.Write([]byte("0\r\n\r\n"))
		o.failed = err != nil
	}
	if o.failed && o.tcp != nil {
		_ = o.tcp.SetLinger(0)
	}
	o.conn.Close()
}

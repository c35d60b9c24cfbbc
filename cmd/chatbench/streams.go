package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// lineBufSize is each stream's SSE line buffer: a message event's data line is a few
	// hundred bytes; longer lines are gathered separately (rare, and allocates).
	lineBufSize = 4096
	// connBufSize buffers the response head and chunk-size lines; chunk data is read
	// straight into the line buffer, past this one.
	connBufSize = 1024
	// openConcurrency bounds the streams connecting at once when streams are first opened
	// (not in the storm, whose point is that they all come back at once).
	openConcurrency = 256
)

// tracker is what every stream of a phase shares: deliveries per message index and the
// counters the main goroutine watches while the phase runs.
type tracker struct {
	nconv      int
	deliveries []atomic.Int32 // per message index: streams it arrived on
	latency    []int64        // two slots per message index: arrival - scheduled send, ns
	slotInst   []uint8        // the instance (index in -url) of the stream that filled each slot
	slotSide   []uint8        // the participant (0 or 1) whose stream filled each slot

	ready     atomic.Int64 // streams that got `event: ready`
	failed    atomic.Int64 // streams that could not open (no `ready`)
	drops     atomic.Int64 // streams that ended while the phase still wanted them
	delivered atomic.Int64 // message events, all streams
	dups      atomic.Int64 // message events beyond the two expected per message
	misrouted atomic.Int64 // a message of another conversation
	seqErrs   atomic.Int64 // seq not exactly one more than the stream's previous one
	unparsed  atomic.Int64 // a message event whose body is not chatbench's
	resets    atomic.Int64 // `event: reset`
	pings     atomic.Int64 // heartbeats, all streams
	caughtUp  atomic.Int64 // storm: streams that received all they expected

	start int64 // storm: unix nanos of the reconnection

	// record keeps, per stream, the index and arrival time of every message event (-mode
	// faults checks each recipient's own copy, not only the totals).
	record bool

	errMu    sync.Mutex
	firstErr string
}

func newTracker(nconv, messages int) *tracker {
	return &tracker{nconv: nconv, deliveries: make([]atomic.Int32, messages), latency: make([]int64, 2*messages),
		slotInst: make([]uint8, 2*messages), slotSide: make([]uint8, 2*messages)}
}

func (t *tracker) noteErr(err error) {
	t.errMu.Lock()
	if t.firstErr == "" {
		t.firstErr = err.Error()
	}
	t.errMu.Unlock()
}

// stream is one participant's event stream. Its fields are owned by the goroutine reading
// the stream while it runs, and read by the main goroutine only after it has ended.
type stream struct {
	conv   int
	user   *user
	addr   string // host:port to dial
	host   string // Host header
	inst   uint8  // index of its instance in -url
	side   uint8  // which participant of its conversation (0 or 1: users[side])
	dialer *net.Dialer

	// Carried over reconnections.
	lastID  []byte // the last `id:` received: the resume cursor
	lastSeq int64  // seq of the last message event
	expect  int32  // storm: message events this connection must deliver

	// One connection.
	kind       evKind
	data       []byte
	readyAt    int64 // unix nanos
	lastPing   int64
	maxGap     int64 // longest heartbeat gap, ns (from ready, and to the end)
	msgs       int32
	caughtUpAt int64 // storm: unix nanos of the expected last message

	// With tracker.record, every message event over all connections: its index and
	// arrival (unix nanos).
	got   []int32
	gotAt []int64
}

// streamGroup is the streams of one phase, all ended by close.
type streamGroup struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	t      *tracker
	closed atomic.Bool
}

// close ends every stream of the group and waits for their goroutines.
func (g *streamGroup) close() {
	g.closed.Store(true)
	g.cancel()
	g.wg.Wait()
}

// openStreams starts one goroutine per stream. With gate, at most openConcurrency are
// connecting at any moment; without (the storm), all connect at once. resume sends each
// stream's last id as Last-Event-ID.
func (b *bench) openStreams(ctx context.Context, t *tracker, resume, gate bool) *streamGroup {
	ctx, cancel := context.WithCancel(ctx)
	g := &streamGroup{cancel: cancel, t: t}
	var sem chan struct{}
	if gate {
		sem = make(chan struct{}, openConcurrency)
	}
	g.wg.Add(len(b.streams))
	go func() {
		for _, s := range b.streams {
			release := func() {}
			if sem != nil {
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
				}
				var once sync.Once
				release = func() { once.Do(func() { <-sem }) }
			}
			go func(s *stream) {
				defer g.wg.Done()
				defer release()
				err := s.run(ctx, t, resume, release)
				if err != nil && !g.closed.Load() && ctx.Err() == nil {
					t.noteErr(err)
				}
			}(s)
		}
	}()
	return g
}

// waitReady waits until every stream is ready or has failed, or timeout.
func (b *bench) waitReady(ctx context.Context, t *tracker, timeout time.Duration) error {
	n := int64(len(b.streams))
	deadline := time.Now().Add(timeout)
	last := time.Now()
	for t.ready.Load()+t.failed.Load() < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d streams ready after %s (%d failed: %s)", t.ready.Load(), n, timeout, t.failed.Load(), t.firstErr)
		}
		if time.Since(last) > 2*time.Second {
			logf("streams: %d/%d ready", t.ready.Load(), n)
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	if f := t.failed.Load(); f > 0 {
		return fmt.Errorf("%d of %d streams failed to open: %s", f, n, t.firstErr)
	}
	return nil
}

// run opens the stream once and reads it until the connection ends; the end of ctx closes
// it. release is called when the stream is ready or has failed.
func (s *stream) run(ctx context.Context, t *tracker, resume bool, release func()) (err error) {
	s.kind, s.data = evNone, s.data[:0]
	s.readyAt, s.lastPing, s.maxGap, s.msgs, s.caughtUpAt = 0, 0, 0, 0, 0
	defer func() {
		if s.readyAt == 0 {
			t.failed.Add(1)
			return
		}
		// The time since the last heartbeat counts as a gap too: a stream that stopped
		// getting them shows up even if none ever came.
		if gap := time.Now().UnixNano() - s.lastPing; gap > s.maxGap {
			s.maxGap = gap
		}
		if ctx.Err() == nil {
			t.drops.Add(1)
			if err == nil {
				err = errors.New("stream ended by the server")
			}
		}
	}()

	conn, err := s.dialer.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	var lastID []byte
	if resume {
		lastID = s.lastID
	}
	if _, err := conn.Write(streamRequest(s.host, s.user.token, lastID)); err != nil {
		return err
	}
	br := bufio.NewReaderSize(conn, connBufSize)
	body, err := readHead(br)
	if err != nil {
		return err
	}
	lines := bufio.NewReaderSize(body, lineBufSize)
	for {
		line, err := lines.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			long := append([]byte(nil), line...)
			for err == bufio.ErrBufferFull {
				line, err = lines.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if err == io.EOF {
				return errors.New("stream ended by the server")
			}
			return err
		}
		line = line[:len(line)-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if s.line(line, t) && release != nil {
			release()
			release = nil
		}
	}
}

// streamRequest is the request that opens a stream, resuming after lastID when it is not
// empty.
func streamRequest(host, token string, lastID []byte) []byte {
	req := make([]byte, 0, 192+len(token)+len(lastID))
	req = append(req, "GET /v1/events HTTP/1.1\r\nHost: "...)
	req = append(req, host...)
	req = append(req, "\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nAuthorization: Bearer "...)
	req = append(req, token...)
	if len(lastID) > 0 {
		req = append(req, "\r\nLast-Event-ID: "...)
		req = append(req, lastID...)
	}
	return append(req, "\r\n\r\n"...)
}

// readHead reads the response status and headers and returns the body reader, or an
// error with the server's answer when the status is not 200 text/event-stream.
func readHead(br *bufio.Reader) (io.Reader, error) {
	status, err := br.ReadSlice('\n')
	if err != nil {
		return nil, fmt.Errorf("reading the response: %w", err)
	}
	if len(status) < 12 || !bytes.HasPrefix(status, []byte("HTTP/1.")) {
		return nil, fmt.Errorf("not an HTTP/1 response: %q", status)
	}
	code, err := strconv.Atoi(string(status[9:12]))
	if err != nil {
		return nil, fmt.Errorf("bad status line %q", status)
	}
	chunked, eventStream, length, retryAfter := false, false, int64(-1), ""
	for {
		line, err := br.ReadSlice('\n')
		for err == bufio.ErrBufferFull { // a header line longer than the buffer: skip it
			_, err = br.ReadSlice('\n')
			line = nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the response head: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Content-Type")):
			eventStream = bytes.HasPrefix(value, []byte("text/event-stream"))
		case bytes.EqualFold(name, []byte("Content-Length")):
			length, _ = strconv.ParseInt(string(value), 10, 64)
		case bytes.EqualFold(name, []byte("Retry-After")):
			retryAfter = string(value)
		}
	}
	var body io.Reader = br
	switch {
	case chunked:
		body = httputil.NewChunkedReader(br)
	case length >= 0:
		body = io.LimitReader(br, length)
	}
	if code != 200 || !eventStream {
		msg, _ := io.ReadAll(io.LimitReader(body, 512))
		return nil, &openError{status: code, body: string(bytes.TrimSpace(msg)), retryAfter: retryAfter}
	}
	return body, nil
}

// openError is a refused stream: the server's status and the start of its answer.
type openError struct {
	status     int
	body       string
	retryAfter string // the Retry-After header, if any
}

func (e *openError) Error() string {
	s := fmt.Sprintf("GET /v1/events: HTTP %d: %s", e.status, e.body)
	if e.status == 429 {
		s += " (too many streams for one user? CHAT_STREAMS_PER_USER)"
	}
	return s
}

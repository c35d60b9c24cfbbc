package main

import (
	"io"
	"sync"
)

// logWriter takes log lines off the request path: Write copies the line and hands it to
// one goroutine that writes what has gathered in one call. slog's handler holds its lock
// across Write, so with the log written directly every request waited its turn for a
// system call before its answer was complete (net/http sends a small answer when the
// handler returns, after the access line); under thousands of concurrent connections
// that queue delayed everyone's answers. Nothing is dropped: when lineBuffer lines wait,
// Write waits too. The price: lines still queued when the process dies of a panic (the
// goroutine writes within moments of a Write) are lost with it.
type logWriter struct {
	out    io.Writer
	lines  chan []byte
	done   chan struct{}
	mu     sync.RWMutex // Write holds it shared, Close alone
	closed bool
}

// lineBuffer is how many lines may wait for the writer goroutine; maxWrite is about the
// most one write carries.
const (
	lineBuffer = 4096
	maxWrite   = 64 << 10
)

func newLogWriter(out io.Writer) *logWriter {
	w := &logWriter{out: out, lines: make(chan []byte, lineBuffer), done: make(chan struct{})}
	go w.run()
	return w
}

// Write queues a copy of p (the caller reuses its buffer); after Close it writes p itself,
// so a goroutine that logs late loses nothing either.
func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return w.out.Write(p)
	}
	w.lines <- append([]byte(nil), p...)
	return len(p), nil
}

// run writes the lines in the order they came, each batch in one call.
func (w *logWriter) run() {
	defer close(w.done)
	var buf []byte
	for line := range w.lines {
		buf = append(buf[:0], line...)
	more:
		for len(buf) < maxWrite {
			select {
			case l, ok := <-w.lines:
				if !ok {
					break more
				}
				buf = append(buf, l...)
			default:
				break more
			}
		}
		_, _ = w.out.Write(buf) // a log that cannot be written has nowhere to say so
	}
}

// Close writes every queued line and stops the goroutine; later Writes go straight out.
func (w *logWriter) Close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.lines)
	}
	w.mu.Unlock()
	<-w.done
}

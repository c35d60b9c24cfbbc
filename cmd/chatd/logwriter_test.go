package main

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// blockingWriter holds every write until released, as a stalled terminal or pipe would.
type blockingWriter struct {
	release chan struct{}
	mu      sync.Mutex
	buf     bytes.Buffer
	writes  int
}

func (b *blockingWriter) Write(p []byte) (int, error) {
	<-b.release
	b.mu.Lock()
	defer b.mu.Unlock()
	b.writes++
	return b.buf.Write(p)
}

// A Write returns while the output is stalled (the caller reuses its buffer at once), the
// lines come out whole and in order once it moves, in fewer writes than lines, and Close
// writes everything queued.
func TestLogWriterKeepsWritesOffTheCallerAndLosesNothing(t *testing.T) {
	out := &blockingWriter{release: make(chan struct{})}
	w := newLogWriter(out)
	line := []byte("0000\n")
	for i := range 1000 {
		copy(line, fmt.Sprintf("%04d", i)) // the caller's buffer, reused as slog does
		n, err := w.Write(line)
		require.NoError(t, err)
		require.Equal(t, len(line), n)
	}
	close(out.release)
	w.Close()
	got := strings.Split(strings.TrimSuffix(out.buf.String(), "\n"), "\n")
	require.Len(t, got, 1000)
	for i, l := range got {
		require.Equal(t, fmt.Sprintf("%04d", i), l)
	}
	require.Less(t, out.writes, 1000, "lines gathered while the output was stalled go out together")
	_, err := w.Write([]byte("late\n"))
	require.NoError(t, err, "a line after Close is written, not a panic")
	require.True(t, strings.HasSuffix(out.buf.String(), "0999\nlate\n"))
}

// Lines written from many goroutines come out whole, none lost.
func TestLogWriterConcurrentLinesStayWhole(t *testing.T) {
	out := &blockingWriter{release: make(chan struct{})}
	close(out.release)
	w := newLogWriter(out)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				_, _ = w.Write([]byte(fmt.Sprintf("g%d-%03d\n", g, i)))
			}
		})
	}
	wg.Wait()
	w.Close()
	seen := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSuffix(out.buf.String(), "\n"), "\n") {
		require.Regexp(t, `^g\d-\d{3}$`, l)
		seen[l] = true
	}
	require.Len(t, seen, 8*500)
}

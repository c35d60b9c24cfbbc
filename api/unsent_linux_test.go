package api

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

// A stream whose client stops reading stops taking data once its socket holds a little
// unsent (streamUnsentLimit), instead of filling the whole send buffer: each byte queued for
// a client that does not read is a copy made for nobody. The server's side of the
// connection is read from /proc/net/tcp: its tx_queue is what the client has not taken.
func TestNonReadingStreamHoldsLittleUnsent(t *testing.T) {
	in := newInstance(t, func(c *Config, _ *events.Config) { c.MaxMessageBytes = 16 << 10 })
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)
	conn := openNotReading(t, in.URL, bob.Token)
	// From here on bob reads nothing. 30 messages of 16,000 bytes are about 480 KB: more
	// than bob's receive window and the server's send buffer (128 KiB) together.
	var readErr atomic.Value
	unsent := func() int {
		sides, err := serverSides(in.URL)
		if err != nil {
			readErr.Store(err)
		}
		return sides[procTCPAddr(conn.LocalAddr().(*net.TCPAddr))].tx
	}
	body := strings.Repeat("x", 16000)
	for range 30 {
		alice.send(conv.ID, body)
	}
	require.Eventually(t, func() bool { return unsent() >= streamUnsentLimit }, wait, 10*time.Millisecond,
		"the stream's socket backs up: bob is not reading")
	// The kernel checks the limit before each new segment, so one more segment (at most
	// 64 KiB on loopback) may follow it; the send buffer alone held 149,504 bytes here.
	require.Never(t, func() bool { return unsent() > streamUnsentLimit+64<<10 }, time.Second, 10*time.Millisecond,
		"the socket takes more only while less than %d bytes wait unsent", streamUnsentLimit)
	require.Nil(t, readErr.Load(), "reading /proc/net/tcp")
}

// A stream cut because its client stopped reading is reset, not closed: a plain close
// leaves the server's kernel an orphan socket in FIN_WAIT1 that holds the bytes the client
// never took and waits on its zero window, for as long as the client stays. After the
// reset nothing of the connection is left on the server, and the client, should it read
// again, learns of the reset after what it had received.
func TestACutStreamIsReset(t *testing.T) {
	in := newInstance(t, func(c *Config, _ *events.Config) {
		c.MaxMessageBytes, c.WriteTimeout = 16<<10, 300*time.Millisecond
	})
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)
	conn := openNotReading(t, in.URL, bob.Token)
	client := procTCPAddr(conn.LocalAddr().(*net.TCPAddr))
	body := strings.Repeat("x", 16000)
	for range 30 { // about 480 KB: the stream's writer blocks and is cut 270–300 ms later
		alice.send(conv.ID, body)
	}
	var readErr atomic.Value
	var left tcpSide
	var present bool
	require.Eventually(t, func() bool {
		sides, err := serverSides(in.URL)
		if err != nil {
			readErr.Store(err)
			return false
		}
		left, present = sides[client]
		return !present || !left.established()
	}, wait, 5*time.Millisecond, "the server cuts the stream")
	require.Nil(t, readErr.Load(), "reading /proc/net/tcp")
	require.False(t, present, "after the cut the server keeps a socket for the client: state %s, %d bytes queued", left.state, left.tx)

	require.NoError(t, conn.SetReadDeadline(time.Now().Add(wait)))
	_, err := io.Copy(io.Discard, conn)
	require.ErrorIs(t, err, syscall.ECONNRESET, "the client reads to a reset, not to a clean end")
}

type tcpSide struct {
	tx    int    // tx_queue: bytes the server has queued that the client has not taken
	state string // st as /proc writes it: 01 ESTABLISHED, 04 FIN_WAIT1, ...
}

// established: not yet closed by the server.
func (s tcpSide) established() bool { return s.state == "01" }

// serverSides reads the server's sides (listening at url) of its connections from
// /proc/net/tcp, by their client's address as /proc writes it (procTCPAddr). It reports
// errors instead of failing the test: the conditions of require.Eventually run on another
// goroutine.
func serverSides(url string) (map[string]tcpSide, error) {
	server, err := net.ResolveTCPAddr("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		return nil, err
	}
	local := procTCPAddr(server)
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return nil, err
	}
	sides := map[string]tcpSide{}
	for _, l := range strings.Split(string(data), "\n") {
		// sl local_address rem_address st tx_queue:rx_queue ...; st 01 is ESTABLISHED.
		f := strings.Fields(l)
		if len(f) > 4 && f[1] == local {
			q, _, _ := strings.Cut(f[4], ":")
			n, err := strconv.ParseInt(q, 16, 64)
			if err != nil {
				return nil, err
			}
			sides[f[2]] = tcpSide{tx: int(n), state: f[3]}
		}
	}
	return sides, nil
}

// Streams that fell behind together are not all cut together: each stream's write timeout
// is spread over its last tenth (see spread), so their closes, and their clients'
// reconnections, come over a tenth of the timeout instead of in one instant.
func TestNonReadingStreamsAreCutSpreadOverATenth(t *testing.T) {
	const timeout = 3 * time.Second // a tenth of it (300 ms) stands out of a slow machine's noise
	in := newInstance(t, func(c *Config, _ *events.Config) { c.MaxMessageBytes, c.WriteTimeout = 16<<10, timeout })
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)
	const n = 20
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = openNotReading(t, in.URL, bob.Token)
	}
	// Every write deadline that cuts a stream is set after this: its write blocked on one
	// of the messages sent next.
	sending := time.Now()
	body := strings.Repeat("x", 16000)
	for range 20 { // 320 KB: every stream's socket backs up and its writer blocks
		alice.send(conv.ID, body)
	}
	// One read of /proc/net/tcp per round sees every stream: backed up (blocked), then cut.
	blocked, cut := make([]bool, n), make([]time.Duration, n)
	var unseen atomic.Int32 // streams cut before they were seen backed up
	var readErr atomic.Value
	require.Eventually(t, func() bool {
		sides, err := serverSides(in.URL)
		if err != nil {
			readErr.Store(err)
			return false
		}
		now, open := time.Now(), 0
		for i, c := range conns {
			s, ok := sides[procTCPAddr(c.LocalAddr().(*net.TCPAddr))]
			switch {
			case ok && s.established():
				open++
				blocked[i] = blocked[i] || s.tx >= streamUnsentLimit
			case cut[i] == 0 && !blocked[i]:
				unseen.Add(1)
				cut[i] = -1
			case cut[i] == 0:
				cut[i] = now.Sub(sending)
			}
		}
		return open == 0
	}, 3*timeout, 5*time.Millisecond, "every non-reading stream is cut")
	require.Nil(t, readErr.Load(), "reading /proc/net/tcp")
	require.Zero(t, unseen.Load(), "every stream was seen backed up before it was cut")
	// From sending: its writes blocked within the sends (a few seconds at most on a busy
	// machine) and were cut 90–100 % of the timeout later.
	requireSpread(t, cut, timeout, 5*time.Second)
}

// openNotReading opens a stream as the holder of token, reads it up to its ready event and
// then never again.
func openNotReading(t *testing.T, url, token string) net.Conn {
	t.Helper()
	conn := rawRequest(t, url, "GET /v1/events HTTP/1.1\r\nAuthorization: Bearer "+token, "")
	rd := bufio.NewReader(conn)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(wait)))
	for {
		line, err := rd.ReadString('\n')
		require.NoError(t, err, "the stream's opening")
		if strings.HasPrefix(line, "event: ready") {
			return conn
		}
	}
}

// procTCPAddr writes an IPv4 address and port as /proc/net/tcp does (little-endian hosts).
func procTCPAddr(a *net.TCPAddr) string {
	ip := a.IP.To4()
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], a.Port)
}

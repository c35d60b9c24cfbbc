package api

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
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
	conn := rawRequest(t, in.URL, "GET /v1/events HTTP/1.1\r\nAuthorization: Bearer "+bob.Token, "")
	rd := bufio.NewReader(conn)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(wait)))
	for {
		line, err := rd.ReadString('\n')
		require.NoError(t, err, "the stream's opening")
		if strings.HasPrefix(line, "event: ready") {
			break
		}
	}
	// From here on bob reads nothing. 30 messages of 16,000 bytes are about 480 KB: more
	// than bob's receive window and the server's send buffer (128 KiB) together.
	unsent := func() int { return txQueue(t, in.URL, conn.LocalAddr()) }
	body := strings.Repeat("x", 16000)
	for range 30 {
		alice.send(conv.ID, body)
	}
	require.Eventually(t, func() bool { return unsent() >= streamUnsentLimit }, wait, 10*time.Millisecond,
		"the stream's socket backs up: bob is not reading")
	require.Never(t, func() bool { return unsent() > 4*streamUnsentLimit }, time.Second, 10*time.Millisecond,
		"the socket takes more only while less than %d bytes wait unsent", streamUnsentLimit)
}

// txQueue is the tx_queue of the server's side (listening at url) of the connection whose
// client end is at client: the bytes the server has queued that the client has not taken.
func txQueue(t *testing.T, url string, client net.Addr) int {
	t.Helper()
	server, err := net.ResolveTCPAddr("tcp", strings.TrimPrefix(url, "http://"))
	require.NoError(t, err)
	local, remote := procTCPAddr(server), procTCPAddr(client.(*net.TCPAddr))
	data, err := os.ReadFile("/proc/net/tcp")
	require.NoError(t, err)
	for _, l := range strings.Split(string(data), "\n") {
		// sl local_address rem_address st tx_queue:rx_queue ...
		f := strings.Fields(l)
		if len(f) > 4 && f[1] == local && f[2] == remote {
			tx, _, _ := strings.Cut(f[4], ":")
			n, err := strconv.ParseInt(tx, 16, 64)
			require.NoError(t, err)
			return int(n)
		}
	}
	t.Fatalf("no connection %s -> %s in /proc/net/tcp", local, remote)
	return 0
}

// procTCPAddr writes an IPv4 address and port as /proc/net/tcp does (little-endian hosts).
func procTCPAddr(a *net.TCPAddr) string {
	ip := a.IP.To4()
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], a.Port)
}

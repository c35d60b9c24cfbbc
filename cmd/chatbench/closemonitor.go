package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// closeMonitor notices when the server closes a connection whose client never reads: such
// a client cannot see the end (it would have to read everything before it), so the
// server's side of the connection is looked up in /proc/net/tcp instead. Closed means no
// longer ESTABLISHED (FIN_WAIT1 with unsent data, or gone). Behind is the first time the
// server's side held behindBytes or more that the client had not taken: from then on
// chatd's writes soon block (how soon depends on the socket's send buffer).
type closeMonitor struct {
	server string // the instance's address as /proc/net/tcp writes it
	mu     sync.Mutex
	conns  map[string]*watched
}

// behindBytes is what the server's side must hold unsent for a stream to count as behind:
// more than the client's receive buffer, so the client is not taking it.
const behindBytes = 64 << 10

type watched struct {
	since  time.Time // when the watch began: a scan that began before it cannot judge it
	behind time.Time
	ch     chan watchEnd
}

// watchEnd is when a watched connection fell behind (zero: never) and was closed.
type watchEnd struct{ behind, closed time.Time }

func startCloseMonitor(ctx context.Context, addr string) *closeMonitor {
	ta, _ := net.ResolveTCPAddr("tcp", addr)
	m := &closeMonitor{server: procAddr(ta), conns: map[string]*watched{}}
	go onTick(ctx, closeScan, m.scan)
	return m
}

// procAddr is an IPv4 address and port as /proc/net/tcp writes them (little-endian hosts).
func procAddr(a *net.TCPAddr) string {
	ip := a.IP.To4()
	if ip == nil {
		return ""
	}
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], a.Port)
}

// watch returns a channel that receives when the server's side of the connection from
// local fell behind and was closed.
func (m *closeMonitor) watch(local net.Addr) <-chan watchEnd {
	w := &watched{since: time.Now(), ch: make(chan watchEnd, 1)}
	m.mu.Lock()
	m.conns[procAddr(local.(*net.TCPAddr))] = w
	m.mu.Unlock()
	return w.ch
}

// forget stops watching the connection from local and returns when it fell behind.
func (m *closeMonitor) forget(local net.Addr) (behind time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := procAddr(local.(*net.TCPAddr))
	if w := m.conns[k]; w != nil {
		behind = w.behind
	}
	delete(m.conns, k)
	return behind
}

func (m *closeMonitor) scan() {
	m.mu.Lock()
	n := len(m.conns)
	m.mu.Unlock()
	if n == 0 {
		return
	}
	began := time.Now()
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return
	}
	up := make(map[string]int64, n) // established: bytes not yet taken by the client
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		// sl local_address rem_address st tx_queue:rx_queue ...; 01 is ESTABLISHED.
		if len(f) > 4 && f[1] == m.server && f[3] == "01" {
			tx, _, _ := strings.Cut(f[4], ":")
			up[f[2]], _ = strconv.ParseInt(tx, 16, 64)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, w := range m.conns {
		if !w.since.Before(began) {
			continue
		}
		queued, ok := up[k]
		if ok && queued >= behindBytes && w.behind.IsZero() {
			w.behind = began
		}
		if !ok {
			w.ch <- watchEnd{behind: w.behind, closed: began}
			delete(m.conns, k)
		}
	}
}

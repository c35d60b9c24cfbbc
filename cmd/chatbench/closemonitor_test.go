package main

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// stuckConn connects a client that never reads to a loopback listener and writes from the
// server's side until a write would block; it returns the listener's address, the client
// and the server's side.
func stuckConn(t *testing.T) (string, net.Conn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	srv := c.(*net.TCPConn)
	t.Cleanup(func() { srv.Close() })
	_ = srv.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 64<<10)
	for {
		if _, err := srv.Write(buf); err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatal(err)
			}
			break
		}
	}
	return ln.Addr().String(), client, srv
}

// The netlink dump sees the server's side of a connection whose client never reads, with
// what the client has not taken (as /proc/net/tcp does), and no longer once it is closed.
func TestSockDiagSeesStuckConnection(t *testing.T) {
	addr, client, srv := stuckConn(t)
	m := newCloseMonitor(addr)
	k := tcpKey(client.LocalAddr().(*net.TCPAddr))
	up, err := m.diag.dump(m.server, 1)
	if err != nil {
		t.Fatalf("sock_diag dump: %v", err)
	}
	proc, err := procTCP(m.server, 1)
	if err != nil {
		t.Fatal(err)
	}
	// The two reads come one after the other, and on a busy machine the kernel may still be
	// moving the last bytes into the client's receive buffer between them: the queues
	// need only agree roughly (a field read at a wrong offset would not), the inodes exactly.
	q, ok := up[k]
	if d := q.queued - proc[k].queued; !ok || q.queued < behindBytes || q.inode == 0 || q.inode != proc[k].inode ||
		max(d, -d) > proc[k].queued/8 {
		t.Fatalf("dump: %s established %v, %+v; /proc/net/tcp: %+v (%d entries: %v)", k, ok, q, proc[k], len(up), up)
	}
	t.Logf("%s: %d bytes queued on the server's side", k, up[k].queued)

	// The same through the monitor: behind at the first scan, closed at the next.
	ended := m.watch(client.LocalAddr())
	time.Sleep(time.Millisecond) // a scan must begin after the watch to judge it
	m.scan()
	if m.diag == nil || m.conns[k] == nil || m.conns[k].behind.IsZero() {
		t.Fatalf("after a scan: netlink in use %v, watched %+v", m.diag != nil, m.conns[k])
	}
	// Closed with data unsent, the server's side lingers in FIN_WAIT1 (until the client's
	// close resets it): no longer established, so absent from the dump.
	srv.Close()
	if up, err = m.diag.dump(m.server, 1); err != nil {
		t.Fatalf("sock_diag dump: %v", err)
	}
	if q, ok := up[k]; ok {
		t.Fatalf("closed, yet the dump has %s with %d bytes queued", k, q.queued)
	}
	m.scan()
	if w := ended1(t, ended, "closed, yet the watch has not ended"); w.behind.IsZero() || w.closed.Before(w.behind) {
		t.Fatalf("watch ended %+v", w)
	}
}

// ended1 returns what ch holds, failing with why when it holds nothing yet.
func ended1(t *testing.T, ch <-chan watchEnd, why string) watchEnd {
	t.Helper()
	select {
	case w := <-ch:
		return w
	default:
		t.Fatal(why)
		return watchEnd{}
	}
}

// A server that resets a connection frees its client's address at once, and the kernel may
// give it to the client's next connection: the first connection is closed all the same,
// whether a scan sees the new connection under the old address or the new one is watched
// before a scan has run.
func TestAddressTakenOverIsClosed(t *testing.T) {
	// The kernel's table is replaced: no socket is needed, only addresses.
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	k := tcpKey(local)
	m := newCloseMonitor("127.0.0.1:8080")
	sides := map[netip.AddrPort]serverSide{k: {queued: behindBytes, inode: 1}}
	m.list = func(int) (map[netip.AddrPort]serverSide, error) { return sides, nil }

	first := m.watch(local)
	time.Sleep(time.Millisecond) // a scan must begin after the watch to judge it
	m.scan()
	sides[k] = serverSide{inode: 2} // reset, and the address reconnected
	m.scan()
	if w := ended1(t, first, "a new connection has the address, yet the first one's watch has not ended"); w.behind.IsZero() || w.closed.Before(w.behind) {
		t.Fatalf("watch ended %+v", w)
	}

	second := m.watch(local)
	third := m.watch(local) // the second reset and replaced before any scan
	if w := ended1(t, second, "watched again from the same address, yet the earlier watch has not ended"); w.closed.IsZero() {
		t.Fatalf("watch ended %+v", w)
	}
	time.Sleep(time.Millisecond)
	m.scan()
	select {
	case w := <-third:
		t.Fatalf("the newest connection is still established, yet its watch ended: %+v", w)
	default:
	}
}

// diagParse reads the fields at the offsets of linux/inet_diag.h and stops at the end of
// the dump or at an error.
func TestDiagParse(t *testing.T) {
	server := netip.MustParseAddrPort("10.1.2.3:8080")
	client := netip.MustParseAddrPort("10.9.8.7:40000")
	le := binary.LittleEndian
	msg := func(typ uint16, body []byte) []byte {
		b := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(body)+3)
		le.PutUint32(b, uint32(unix.NLMSG_HDRLEN+len(body)))
		le.PutUint16(b[4:], typ)
		b = append(b, body...)
		return append(b, make([]byte, -len(b)&3)...) // aligned
	}
	sock := func(state uint8, src, dst netip.AddrPort, wq, inode uint32) []byte {
		b := make([]byte, diagMsgLen+8) // with an attribute after it
		b[0], b[1] = unix.AF_INET, state
		binary.BigEndian.PutUint16(b[diagSport:], src.Port())
		binary.BigEndian.PutUint16(b[diagDport:], dst.Port())
		s, d := src.Addr().As4(), dst.Addr().As4()
		copy(b[diagSrc:], s[:])
		copy(b[diagDst:], d[:])
		le.PutUint32(b[diagWqueue-4:], 999) // idiag_rqueue
		le.PutUint32(b[diagWqueue:], wq)
		le.PutUint32(b[diagInode-4:], 1000) // idiag_uid
		le.PutUint32(b[diagInode:], inode)
		return b
	}
	errno := func(e int32) []byte { return le.AppendUint32(nil, uint32(e)) }

	var b []byte
	b = append(b, msg(unix.SOCK_DIAG_BY_FAMILY, sock(tcpEstablished, server, client, 47104, 7777))...)
	b = append(b, msg(unix.SOCK_DIAG_BY_FAMILY, sock(tcpEstablished, client, server, 1, 8888))...) // the client's side
	b = append(b, msg(unix.SOCK_DIAG_BY_FAMILY, sock(4, netip.MustParseAddrPort("10.1.2.3:8080"),
		netip.MustParseAddrPort("10.9.8.7:40001"), 5, 9999))...) // FIN_WAIT1
	up := map[netip.AddrPort]serverSide{}
	if done, err := diagParse(b, server, up); done || err != nil || len(up) != 1 || up[client] != (serverSide{queued: 47104, inode: 7777}) {
		t.Fatalf("diagParse = %v, %v; %v", done, err, up)
	}
	if done, err := diagParse(msg(unix.NLMSG_DONE, errno(0)), server, up); !done || err != nil {
		t.Fatalf("NLMSG_DONE: %v, %v", done, err)
	}
	if done, err := diagParse(msg(unix.NLMSG_DONE, errno(-int32(unix.EINTR))), server, up); !done || err != unix.EINTR {
		t.Fatalf("NLMSG_DONE with an error: %v, %v", done, err)
	}
	if done, err := diagParse(msg(unix.NLMSG_ERROR, errno(-int32(unix.EPERM))), server, up); !done || err != unix.EPERM {
		t.Fatalf("NLMSG_ERROR: %v, %v", done, err)
	}
	if _, err := diagParse(b[:len(b)-4], server, up); err == nil {
		t.Fatal("a cut message is no error")
	}
}

// Non-reading streams none of which was closed after falling behind fail, with the reason;
// the other kinds are judged as before.
func TestResultsStreamsNeverBehindFail(t *testing.T) {
	a := &attack{statuses: map[int]int{}}
	a.made[atkStream].Store(4)
	a.idle[atkStream] = 4
	a.made[atkBodyNone].Store(2)
	a.idle[atkBodyNone] = 2 // open at the end, never closed: no samples, as before
	bounds := [atkKinds]float64{atkStream: 10, atkBodyNone: 30}
	rs := a.results(bounds)
	if len(rs) != 2 || rs[0].OK || !rs[1].OK {
		t.Fatalf("results = %+v", rs)
	}
	if s := rs[0].String(); !strings.Contains(s, "NOT judged: no stream was closed after falling behind") ||
		!strings.Contains(s, "4 idle at the end") {
		t.Errorf("String() = %q", s)
	}
	if rs := a.results([atkKinds]float64{}); !rs[0].OK { // a bound of 0: not judged
		t.Errorf("unbounded: %+v", rs[0])
	}

	a.lags[atkStream] = []int64{int64(2 * time.Second)}
	a.lives[atkStream] = []int64{int64(5 * time.Second)}
	if rs := a.results(bounds); !rs[0].OK {
		t.Errorf("closed 2s after falling behind, bound 10s: %+v", rs[0])
	}
	a.lags[atkStream] = append(a.lags[atkStream], int64(11*time.Second))
	if rs := a.results(bounds); rs[0].OK {
		t.Errorf("closed 11s after falling behind, bound 10s: %+v", rs[0])
	}
}

// BenchmarkScan is one scan of the close monitor watching 2,000 established loopback
// connections, through the netlink dump and through /proc/net/tcp (the fallback, and the
// way it was done before). sockets is how many /proc/net/tcp had: all of the machine's.
func BenchmarkScan(b *testing.B) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	const n = 2000
	accepted := make(chan net.Conn, n)
	go func() {
		for c, err := ln.Accept(); err == nil; c, err = ln.Accept() {
			accepted <- c
		}
	}()
	m := newCloseMonitor(ln.Addr().String())
	for range n {
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		s := (<-accepted).(*net.TCPConn)
		_ = s.SetLinger(0) // closed first, with a reset: no TIME_WAIT left behind
		defer s.Close()
		m.watch(c.LocalAddr())
	}
	time.Sleep(time.Millisecond)
	diag := m.diag
	for _, bm := range []struct {
		name string
		diag *sockDiag
	}{{"sock_diag", diag}, {"proc", nil}} {
		b.Run(bm.name, func(b *testing.B) {
			m.diag = bm.diag
			b.ReportAllocs()
			for b.Loop() {
				m.scan()
			}
			if len(m.conns) != n {
				b.Fatalf("%d of %d watched connections left", len(m.conns), n)
			}
			data, _ := os.ReadFile("/proc/net/tcp")
			b.ReportMetric(float64(strings.Count(string(data), "\n")-1), "sockets")
		})
	}
}

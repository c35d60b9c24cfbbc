package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// closeMonitor notices when the server closes a connection whose client never reads: such
// a client cannot see the end (it would have to read everything before it), so the
// server's side of the connection is looked up in the kernel instead (a sock_diag dump, or
// /proc/net/tcp where that is not allowed). Closed means no longer ESTABLISHED (FIN_WAIT1
// with unsent data, or gone), or the client's address taken by a new connection: a server
// that resets the connection frees both ends at once, and the kernel may give the port to
// the client's next connection before a scan has seen the first one gone. Behind is the
// first time the server's side held behindBytes or more that the client had not taken:
// from then on chatd's writes soon block (how soon depends on the socket's send buffer).
type closeMonitor struct {
	server netip.AddrPort // the instance's address (IPv4 only: nothing else is looked up)
	diag   *sockDiag      // nil once the dump failed: /proc/net/tcp from then on
	mu     sync.Mutex
	conns  map[netip.AddrPort]*watched // by the client's address
	// list, when set, replaces the kernel's table (tests).
	list func(n int) (map[netip.AddrPort]serverSide, error)
}

// behindBytes is what the server's side must hold unsent (or unacknowledged) for a stream
// to count as behind. chatd sets TCP_NOTSENT_LOWAT to 16 KiB on stream sockets, so the
// writer of a client that never reads blocks with little unsent: 14 KiB measured on
// loopback for a client with a 4 KiB receive buffer (attackRcvBuf), up to 47 KiB for one
// with the default buffer, never 64 as before the option. A reader that keeps up leaves
// next to nothing; builds without the option fill their whole send buffer.
const behindBytes = 8 << 10

type watched struct {
	since  time.Time // when the watch began: a scan that began before it cannot judge it
	behind time.Time
	inode  uint64 // the server's socket, once a scan has seen it
	ch     chan watchEnd
}

// serverSide is the server's side of an established connection.
type serverSide struct {
	queued int64  // what the client has not taken yet (tx_queue, idiag_wqueue)
	inode  uint64 // the socket's inode: a new connection from the same address has another
}

// watchEnd is when a watched connection fell behind (zero: never) and was closed.
type watchEnd struct{ behind, closed time.Time }

func startCloseMonitor(ctx context.Context, addr string) *closeMonitor {
	m := newCloseMonitor(addr)
	go onTick(ctx, closeScan, m.scan)
	return m
}

func newCloseMonitor(addr string) *closeMonitor {
	ta, _ := net.ResolveTCPAddr("tcp", addr)
	var server netip.AddrPort
	if ta != nil {
		server = tcpKey(ta)
	}
	return &closeMonitor{server: server, diag: newSockDiag(), conns: map[netip.AddrPort]*watched{}}
}

// tcpKey is a's address and port, an IPv4 address in its 4-byte form as the kernel's
// tables give it (net keeps IPv4 addresses in 16 bytes).
func tcpKey(a *net.TCPAddr) netip.AddrPort {
	ap := a.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// watch returns a channel that receives when the server's side of the connection from
// local fell behind and was closed.
func (m *closeMonitor) watch(local net.Addr) <-chan watchEnd {
	w := &watched{since: time.Now(), ch: make(chan watchEnd, 1)}
	k := tcpKey(local.(*net.TCPAddr))
	m.mu.Lock()
	if old := m.conns[k]; old != nil {
		// The kernel gave this address to a new connection: the old one has ended, at the
		// latest now.
		old.ch <- watchEnd{behind: old.behind, closed: w.since}
	}
	m.conns[k] = w
	m.mu.Unlock()
	return w.ch
}

// forget stops watching the connection from local and returns when it fell behind.
func (m *closeMonitor) forget(local net.Addr) (behind time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := tcpKey(local.(*net.TCPAddr))
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
	up, err := m.established(n)
	if err != nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, w := range m.conns {
		if !w.since.Before(began) {
			continue
		}
		side, ok := up[k]
		if ok && w.inode == 0 {
			w.inode = side.inode
		}
		ok = ok && side.inode == w.inode // else a new connection has the client's address
		if ok && side.queued >= behindBytes && w.behind.IsZero() {
			w.behind = began
		}
		if !ok {
			w.ch <- watchEnd{behind: w.behind, closed: began}
			delete(m.conns, k)
		}
	}
}

// established returns the server's established connections by the client's address (n of
// them expected).
func (m *closeMonitor) established(n int) (map[netip.AddrPort]serverSide, error) {
	if m.list != nil {
		return m.list(n)
	}
	if m.diag != nil {
		up, err := m.diag.dump(m.server, n)
		if err == nil {
			return up, nil
		}
		logf("close monitor: the sock_diag dump failed (%v): reading /proc/net/tcp instead from now on", err)
		m.diag = nil
	}
	return procTCP(m.server, n)
}

// procTCP is established read from /proc/net/tcp, the fallback: the kernel writes a line
// of text for every IPv4 socket (tens of thousands in TIME_WAIT among them) for chatbench
// to split, which cost it about 12 % of a core at 5,000 attackers.
func procTCP(server netip.AddrPort, n int) (map[netip.AddrPort]serverSide, error) {
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return nil, err
	}
	local := procAddr(server)
	up := make(map[netip.AddrPort]serverSide, n)
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		// sl local_address rem_address st tx_queue:rx_queue tr:when retrnsmt uid timeout
		// inode ...; 01 is ESTABLISHED.
		if len(f) > 9 && f[1] == local && f[3] == "01" {
			tx, _, _ := strings.Cut(f[4], ":")
			if k, ok := parseProcAddr(f[2]); ok {
				q, _ := strconv.ParseInt(tx, 16, 64)
				ino, _ := strconv.ParseUint(f[9], 10, 64)
				up[k] = serverSide{queued: q, inode: ino}
			}
		}
	}
	return up, nil
}

// procAddr is an IPv4 address and port as /proc/net/tcp writes them (little-endian hosts).
func procAddr(a netip.AddrPort) string {
	if !a.Addr().Is4() {
		return ""
	}
	ip := a.Addr().As4()
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], a.Port())
}

// parseProcAddr undoes procAddr.
func parseProcAddr(s string) (netip.AddrPort, bool) {
	h, p, _ := strings.Cut(s, ":")
	ip, err1 := strconv.ParseUint(h, 16, 32)
	port, err2 := strconv.ParseUint(p, 16, 16)
	if err1 != nil || err2 != nil {
		return netip.AddrPort{}, false
	}
	a := netip.AddrFrom4([4]byte{byte(ip), byte(ip >> 8), byte(ip >> 16), byte(ip >> 24)})
	return netip.AddrPortFrom(a, uint16(port)), true
}

// sockDiag asks the kernel for the established IPv4 TCP sockets over NETLINK_SOCK_DIAG
// (what ss does): the same figures as /proc/net/tcp, filtered by state in the kernel and
// in binary, so neither the kernel nor chatbench handles a line of text per socket.
type sockDiag struct{ buf []byte }

// The request and the answers of the dump after their 16-byte nlmsghdr, as the kernel
// header linux/inet_diag.h lays them out (host byte order, little-endian here, except
// where it says be):
//
//	struct inet_diag_sockid {        // 48 bytes
//		__be16 idiag_sport, idiag_dport;
//		__be32 idiag_src[4], idiag_dst[4]; // IPv4: the first word, network order
//		__u32  idiag_if, idiag_cookie[2];
//	};
//	struct inet_diag_req_v2 {        // 56 bytes: the request
//		__u8  sdiag_family, sdiag_protocol, idiag_ext, pad;
//		__u32 idiag_states;              // 1 << state for each state wanted
//		struct inet_diag_sockid id;      // zero: any
//	};
//	struct inet_diag_msg {           // 72 bytes, then attributes: one answer per socket
//		__u8  idiag_family, idiag_state, idiag_timer, idiag_retrans;
//		struct inet_diag_sockid id;      // at 4
//		__u32 idiag_expires, idiag_rqueue, idiag_wqueue, idiag_uid, idiag_inode; // at 52
//	};
//
// idiag_wqueue of an established socket is write_seq - snd_una, /proc/net/tcp's tx_queue.
const (
	diagReqLen     = 56
	diagMsgLen     = 72
	diagSport      = 4 // offsets in inet_diag_msg
	diagDport      = 6
	diagSrc        = 8
	diagDst        = 24
	diagWqueue     = 60
	diagInode      = 68
	tcpEstablished = 1 // TCP_ESTABLISHED of linux/tcp_states.h
)

// newSockDiag keeps one receive buffer for every dump: one read returns at most one of the
// kernel's chunks (32 KiB), so 1 MiB is never too small.
func newSockDiag() *sockDiag { return &sockDiag{buf: make([]byte, 1<<20)} }

// dump returns the established IPv4 TCP sockets whose own address is server by their
// peer's address (n of them expected), each with its idiag_wqueue and idiag_inode.
func (d *sockDiag) dump(server netip.AddrPort, n int) (map[netip.AddrPort]serverSide, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	le := binary.LittleEndian
	req := make([]byte, unix.NLMSG_HDRLEN+diagReqLen)
	le.PutUint32(req[0:], uint32(len(req)))
	le.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	le.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	req[16], req[17] = unix.AF_INET, unix.IPPROTO_TCP
	le.PutUint32(req[20:], 1<<tcpEstablished)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	up := make(map[netip.AddrPort]serverSide, n)
	for {
		got, _, err := unix.Recvfrom(fd, d.buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("receive: %w", err)
		}
		if done, err := diagParse(d.buf[:got], server, up); err != nil || done {
			return up, err
		}
	}
}

// diagParse adds what one read of the dump holds to up; done: the dump ended with it.
func diagParse(b []byte, server netip.AddrPort, up map[netip.AddrPort]serverSide) (done bool, err error) {
	le := binary.LittleEndian
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(le.Uint32(b))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return true, errors.New("malformed netlink message")
		}
		msg := b[unix.NLMSG_HDRLEN:l]
		switch le.Uint16(b[4:]) {
		case unix.NLMSG_DONE, unix.NLMSG_ERROR: // both carry an int: 0 or -errno
			if len(msg) >= 4 && int32(le.Uint32(msg)) < 0 {
				return true, unix.Errno(-int32(le.Uint32(msg)))
			}
			return true, nil
		case unix.SOCK_DIAG_BY_FAMILY:
			if len(msg) < diagMsgLen || msg[0] != unix.AF_INET || msg[1] != tcpEstablished {
				break
			}
			src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(msg[diagSrc:])), binary.BigEndian.Uint16(msg[diagSport:]))
			if src == server {
				dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(msg[diagDst:])), binary.BigEndian.Uint16(msg[diagDport:]))
				up[dst] = serverSide{queued: int64(le.Uint32(msg[diagWqueue:])), inode: uint64(le.Uint32(msg[diagInode:]))}
			}
		}
		b = b[min((l+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1), len(b)):]
	}
	return false, nil
}

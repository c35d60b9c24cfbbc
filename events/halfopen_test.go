package events

import (
	"context"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// freezer is a TCP proxy to the test's PostgreSQL whose connections can be frozen: from
// then on their bytes go nowhere while both sockets stay open, as when a NAT or a firewall
// forgets a connection. Connections made after a freeze flow.
type freezer struct {
	ln     net.Listener
	target string
	done   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once

	mu      sync.Mutex
	conns   []net.Conn
	frozen  []*atomic.Bool
	refused bool
}

func newFreezer(t *testing.T, target string) *freezer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f := &freezer{ln: ln, target: target, done: make(chan struct{})}
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(f.close)
	return f
}

func (f *freezer) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", f.target)
		if err != nil {
			c.Close()
			continue
		}
		frozen := new(atomic.Bool)
		f.mu.Lock()
		if f.refused {
			f.mu.Unlock()
			c.Close()
			s.Close()
			continue
		}
		f.conns = append(f.conns, c, s)
		f.frozen = append(f.frozen, frozen)
		f.mu.Unlock()
		f.wg.Add(2)
		go f.pipe(c, s, frozen)
		go f.pipe(s, c, frozen)
	}
}

// pipe copies from to to until either ends; once frozen it holds what it reads.
func (f *freezer) pipe(from, to net.Conn, frozen *atomic.Bool) {
	defer f.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if frozen.Load() {
			<-f.done
			return
		}
		if n > 0 {
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				return
			}
			to.Close()
			return
		}
	}
}

// freeze stops every connection open now.
func (f *freezer) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.frozen {
		b.Store(true)
	}
}

// refuse cuts every connection and every one to come, as when a PgBouncer in front of
// PostgreSQL goes down; allow lets new ones through again.
func (f *freezer) refuse() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refused = true
	for _, c := range f.conns {
		c.Close()
	}
}

func (f *freezer) allow() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refused = false
}

// close ends the proxy and every connection through it, frozen or not.
func (f *freezer) close() {
	f.once.Do(func() {
		close(f.done)
		f.ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
}

// poolThroughFreezer returns a pool whose connections go through a freezer, with room for
// new connections beside the ones frozen.
func poolThroughFreezer(t *testing.T) (*pgxpool.Pool, *freezer) {
	cfg, err := pgxpool.ParseConfig(testDB)
	require.NoError(t, err)
	f := newFreezer(t, net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port))))
	addr := f.ln.Addr().(*net.TCPAddr)
	cfg.ConnConfig.Host, cfg.ConnConfig.Port = addr.IP.String(), uint16(addr.Port)
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	// Cleanups run last first: the proxy goes before the pool closes, or pgx would give
	// each frozen connection 15 s to say goodbye.
	t.Cleanup(pool.Close)
	t.Cleanup(f.close)
	return pool, f
}

// freezePool opens two connections of pool at least, and freezes every open one.
func (f *freezer) freezePool(t *testing.T, pool *pgxpool.Pool) {
	ctx := context.Background()
	c1, err := pool.Acquire(ctx)
	require.NoError(t, err)
	c2, err := pool.Acquire(ctx)
	require.NoError(t, err)
	c1.Release()
	c2.Release()
	f.freeze()
}

// A pool connection that went half-open under the leader (its queries, or its forwards)
// costs delivery QueryTimeout and a reconnection, not the quarter of an hour TCP would take
// to give up on it.
func TestAHalfOpenPoolConnectionDoesNotHoldTheReader(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool := testPool(t)
	conv := newConversation(t, pool, "half-a", "half-b")
	via, f := poolThroughFreezer(t)

	// The leader keeps the lock however many reads time out (TestALeaderWhoseReadsFailResigns
	// is about resigning): what it delivers comes from its own reads.
	l := startLeading(t, ctx, Config{Pool: via, ListenURL: testDB, SafetyPoll: 100 * time.Millisecond,
		QueryTimeout: 500 * time.Millisecond, ResignAfter: 1000})
	sub, _ := l.Hub().Subscribe("half-a")
	// The follower hears of new events only from the leader's forwards.
	follower := startFollowing(t, ctx, Config{Pool: pool, ListenURL: testDB, SafetyPoll: time.Hour, LeaderWait: time.Hour, LeaderRetry: time.Hour})
	fsub, _ := follower.Hub().Subscribe("half-a")
	want := insertRead(t, pool, conv, "half-b", 1)
	l.Written()
	require.Equal(t, want, takeN(t, sub, 1)[0].Cursor) // reads and forwards went through the proxy
	require.Equal(t, want, takeN(t, fsub, 1)[0].Cursor)

	f.freezePool(t, via) // the reader meets a frozen connection whichever it takes
	want = insertRead(t, pool, conv, "half-b", 2)
	l.Written()
	start := time.Now()
	require.Equal(t, want, takeN(t, sub, 1)[0].Cursor, "delivered over a new connection")
	require.True(t, l.Leading())
	t.Log("delivered after", time.Since(start))
	// The forward of that read may have been lost to a frozen connection; the next one
	// shows the follower the gap.
	want3 := insertRead(t, pool, conv, "half-b", 3)
	l.Written()
	require.Equal(t, want3, takeN(t, sub, 1)[0].Cursor)
	got := takeN(t, fsub, 2)
	require.Equal(t, []Cursor{want, want3}, []Cursor{got[0].Cursor, got[1].Cursor})
}

// The doorbell and the leader's forwards go on, over a new connection, when the pool's
// connections went half-open: a notification waits QueryTimeout at most.
func TestNotificationsDoNotWaitOnAHalfOpenConnection(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	via, f := poolThroughFreezer(t)
	listener, err := pgx.Connect(ctx, testDB)
	require.NoError(t, err)
	defer listener.Close(ctx)
	_, err = listener.Exec(ctx, "LISTEN "+forwardChannel)
	require.NoError(t, err)

	f.freezePool(t, via)

	l := NewLog(Config{Pool: via, ListenURL: testDB, QueryTimeout: 500 * time.Millisecond})
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go l.sendLoop(sctx)
	signal(l.ring)
	heard := make(chan string, 1)
	go func() {
		n, err := listener.WaitForNotification(ctx)
		if err == nil {
			heard <- n.Payload
		}
		close(heard)
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case p := <-heard:
			require.Equal(t, "forward", p)
			return
		case <-tick.C:
			select {
			case l.out <- []string{"forward"}:
			default:
			}
		case <-deadline:
			t.Fatal("no notification went out in 10 s")
		}
	}
}

// A leader whose pool cannot reach PostgreSQL while its listener can (its PgBouncer went
// down) resigns and hands the lock over, and a follower reads the log for the cluster;
// the failing instance does not take the lock back while its reads fail, and leads again
// once they work.
func TestALeaderWhoseReadsFailResigns(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool := testPool(t)
	conv := newConversation(t, pool, "resign-a", "resign-b")
	via, f := poolThroughFreezer(t)
	leader := startLeading(t, ctx, Config{Pool: via, ListenURL: testDB, SafetyPoll: 50 * time.Millisecond})
	// The follower hears of new events only from a leader, and tries to lead only when
	// told the lock is free.
	fctx, stopFollower := context.WithCancel(ctx)
	follower := startFollowing(t, fctx, Config{Pool: pool, ListenURL: testDB, SafetyPoll: time.Hour, LeaderWait: time.Hour, LeaderRetry: time.Hour})
	sub, _ := follower.Hub().Subscribe("resign-a")

	f.refuse()
	want := insertRead(t, pool, conv, "resign-b", 1)
	follower.Written()
	require.Equal(t, want, takeN(t, sub, 1)[0].Cursor)
	require.True(t, follower.Leading())
	require.EqualValues(t, 1, leader.Resignations())
	stopFollower() // hands the lock over: the failing instance does not take it
	<-follower.Stopped()
	require.Never(t, leader.Leading, 500*time.Millisecond, 10*time.Millisecond,
		"the failing instance does not take the lock back")

	f.allow()
	require.Eventually(t, leader.Leading, 5*time.Second, 5*time.Millisecond, "it leads once its reads work")
}

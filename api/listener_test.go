package api

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

func TestListenerReconnectsAfterTermination(t *testing.T) {
	a, b := newInstance(t), newInstance(t)
	alice, bob := newUser(t, a, "alice"), newUser(t, b, "bob")
	conv := alice.direct(bob)
	s, _ := openReady(t, b.URL+"/v1/events", bob.Token, nil)

	const n = 60
	sent := make(chan error, 1)
	go func() {
		sent <- func() error {
			for i := 1; i <= n; i++ {
				if _, err := alice.trySend(conv.ID, fmt.Sprintf("m%d", i)); err != nil {
					return err
				}
				if i == n/3 || i == 2*n/3 {
					// Kill every listener mid-traffic: notifications sent meanwhile are lost.
					if _, err := a.Pool.Exec(context.Background(),
						"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'chatd_listener' AND datname = current_database()"); err != nil {
						return err
					}
				}
			}
			return nil
		}()
	}()
	for i := 1; i <= n; i++ {
		select {
		case err := <-sent:
			require.NoError(t, err)
			sent <- nil // put it back for the final receive below
		default:
		}
		m := decode[events.Message](t, s.nextOf("message", wait).Data)
		require.Equal(t, int64(i), m.Seq)
	}
	require.NoError(t, <-sent)
	require.Eventually(t, func() bool { return a.Log.Listening() && b.Log.Listening() }, wait, 10*time.Millisecond)
	r := call(t, "GET", b.URL+"/readyz", "", nil)
	require.Equal(t, 200, r.Status)
}

func TestReadyzIsUnavailableWithoutListener(t *testing.T) {
	// The listener connects through a gate the test can shut, so that after the kill it
	// stays down (instead of reconnecting within the backoff) until the test says so.
	g := newGate(t, testDB)
	in := newInstance(t, func(_ *Config, e *events.Config) { e.ListenURL = g.URL })
	require.Equal(t, 200, call(t, "GET", in.URL+"/readyz", "", nil).Status)
	g.shut()
	_, err := in.Pool.Exec(context.Background(),
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'chatd_listener' AND datname = current_database()")
	require.NoError(t, err)
	readyz := func(status int, code string) func() bool {
		return func() bool {
			r, err := tryCall("GET", in.URL+"/readyz", "", nil)
			return err == nil && r.Status == status && r.ErrorCode() == code
		}
	}
	require.Eventually(t, readyz(503, "listener_down"), wait, 20*time.Millisecond, "readyz must tell that the listener is down")
	g.open()
	require.Eventually(t, readyz(200, ""), wait, 20*time.Millisecond, "ready again once the listener reconnects")

	broken := newInstanceNoWait(t, func(_ *Config, e *events.Config) {
		e.ListenURL = "postgres://127.0.0.1:1/nowhere?sslmode=disable&connect_timeout=1"
	})
	r := call(t, "GET", broken.URL+"/readyz", "", nil)
	require.Equal(t, 503, r.Status)
	require.Equal(t, "listener_down", r.ErrorCode())
	require.NotEmpty(t, r.Header.Get("Retry-After"))
	require.Equal(t, 200, call(t, "GET", broken.URL+"/healthz", "", nil).Status)
}

// gate forwards TCP connections to a PostgreSQL server while open; shut, it hangs up on
// new connections at once, as a server that is down would.
type gate struct {
	URL    string // the database URL through the gate
	ln     net.Listener
	target string
	closed atomic.Bool
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]bool
}

// newGate opens a gate to the database of dbURL; it closes, with every connection through
// it, when the test ends.
func newGate(t *testing.T, dbURL string) *gate {
	t.Helper()
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	g := &gate{ln: ln, target: u.Host, conns: map[net.Conn]bool{}}
	u.Host = ln.Addr().String()
	g.URL = u.String()
	g.wg.Add(1)
	go g.accept()
	t.Cleanup(func() {
		ln.Close()
		g.mu.Lock()
		for c := range g.conns {
			c.Close()
		}
		g.mu.Unlock()
		g.wg.Wait()
	})
	return g
}

func (g *gate) shut() { g.closed.Store(true) }
func (g *gate) open() { g.closed.Store(false) }

func (g *gate) accept() {
	defer g.wg.Done()
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		if g.closed.Load() {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", g.target)
		if err != nil {
			c.Close()
			continue
		}
		g.mu.Lock()
		g.conns[c], g.conns[up] = true, true
		g.mu.Unlock()
		// Each direction closes both ends when it ends, so that the other ends too.
		for _, p := range [][2]net.Conn{{c, up}, {up, c}} {
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				_, _ = io.Copy(p[0], p[1])
				p[0].Close()
				p[1].Close()
			}()
		}
	}
}

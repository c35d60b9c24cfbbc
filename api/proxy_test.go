package api

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

// requireTool returns the path of an external program a test needs; without it the test
// is skipped, unless CHAT_TEST_REQUIRE_ALL is set (CI installs everything).
func requireTool(t testing.TB, name string) string {
	t.Helper()
	path, ok := findTool(name)
	if !ok {
		if os.Getenv("CHAT_TEST_REQUIRE_ALL") != "" {
			t.Fatalf("%s is required (CHAT_TEST_REQUIRE_ALL is set)", name)
		}
		t.Skipf("%s not installed (apt-get install -y %s)", name, name)
	}
	return path
}

// findTool is the path of an external program, on PATH or in /usr/sbin or /usr/bin.
func findTool(name string) (string, bool) {
	if path, err := exec.LookPath(name); err == nil {
		return path, true
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
		if p := filepath.Join(dir, name); fileExists(p) {
			return p, true
		}
	}
	return "", false
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func freePort(t testing.TB) int {
	port, err := loopbackPort()
	require.NoError(t, err)
	return port
}

// loopbackPort is a free TCP port on 127.0.0.1 (freePort for code without a testing.TB).
func loopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startNginx runs nginx in front of upstream with two servers: a stock reverse proxy with a
// short idle timeout (like an ALB's 60 s, scaled down), and one that gzips
// text/event-stream, which holds a stream back until it ends (DESIGN-NOTES.md §4).
func startNginx(t *testing.T, upstream string) (plain, gzipped string) {
	p1, p2 := freePort(t), freePort(t)
	startNginxWith(t, fmt.Sprintf(`
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_read_timeout 2s;
  server { listen 127.0.0.1:%[1]d; location / { proxy_pass %[3]s; } }
  server {
    listen 127.0.0.1:%[2]d;
    gzip on; gzip_min_length 1; gzip_proxied any; gzip_types text/event-stream application/json;
    location / { proxy_pass %[3]s; }
  }
`, p1, p2, upstream), p1, p2)
	return fmt.Sprintf("http://127.0.0.1:%d", p1), fmt.Sprintf("http://127.0.0.1:%d", p2)
}

// TestStreamThroughBufferingProxyWithIdleTimeout: through a stock nginx whose idle timeout
// (2 s here) is shorter than the gap between messages, heartbeats keep the stream open and
// events pass at once.
func TestStreamThroughBufferingProxyWithIdleTimeout(t *testing.T) {
	in := newInstance(t, func(c *Config, _ *events.Config) { c.Heartbeat = 500 * time.Millisecond })
	plain, _ := startNginx(t, in.URL)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)

	s, _ := openReady(t, plain+"/v1/events", bob.Token, nil)
	// Wait past the proxy's idle timeout, counting heartbeats rather than sleeping.
	for i := 0; i < 6; i++ {
		select {
		case <-s.pinged:
		case <-time.After(wait):
			t.Fatal("no heartbeat through the proxy")
		}
	}
	m := alice.send(conv.ID, "through nginx")
	require.Equal(t, m.ID, decode[events.Message](t, s.nextOf("message", wait).Data).ID)
}

// TestLongPollThroughCompressingProxy: a proxy that gzips event streams holds them back;
// the long-poll fallback still delivers through it, with the same cursors.
func TestLongPollThroughCompressingProxy(t *testing.T) {
	in := newInstance(t)
	_, gzipped := startNginx(t, in.URL)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)
	var head pollAnswer
	call(t, "GET", gzipped+"/v1/events/poll", bob.Token, nil).OK(t, &head)

	done := make(chan pollAnswer, 1)
	failed := make(chan error, 1)
	go func() {
		cursor := head.Cursor
		for {
			var got pollAnswer
			r, err := tryCall("GET", gzipped+"/v1/events/poll?timeout=20&cursor="+cursor, bob.Token, nil)
			if err == nil && r.Status != 200 {
				err = fmt.Errorf("poll: status %d: %s", r.Status, r.Body)
			}
			if err == nil {
				err = json.Unmarshal(r.Body, &got)
			}
			if err != nil {
				failed <- err
				return
			}
			for _, e := range got.Events {
				if e.Type == "message" {
					done <- got
					return
				}
			}
			cursor = got.Cursor
		}
	}()
	require.Eventually(t, func() bool { return in.Hub.Online(bob.ID) || len(failed) > 0 }, wait, 10*time.Millisecond)
	m := alice.send(conv.ID, "through gzip")
	select {
	case err := <-failed:
		require.NoError(t, err)
	case got := <-done:
		require.NotEmpty(t, got.Events)
		last := got.Events[len(got.Events)-1]
		require.Equal(t, m.ID, decode[events.Message](t, string(last.Data)).ID)
		require.True(t, strings.Contains(got.Cursor, "_"))
	case <-time.After(wait):
		t.Fatal("long poll did not answer through the compressing proxy")
	}
}

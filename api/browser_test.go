package api

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
	"github.com/chatd/chatd/web"
)

// TestBrowserClientThroughLoadBalancer runs the web client in headless Chromium as two
// users against two instances behind a round-robin balancer without sticky sessions, and
// cuts every connection mid-conversation: the native EventSource must reconnect (to
// whichever instance) and resume with nothing lost and nothing twice (web/e2e/chat.mjs).
func TestBrowserClientThroughLoadBalancer(t *testing.T) {
	node := requireTool(t, "node")
	requireTool(t, "chromium")
	script, err := filepath.Abs("../web/e2e/chat.mjs")
	require.NoError(t, err)
	if !fileExists(filepath.Join(filepath.Dir(script), "node_modules", "playwright-core")) {
		if os.Getenv("CHAT_TEST_REQUIRE_ALL") != "" {
			t.Fatal("web/e2e needs `npm ci` (CHAT_TEST_REQUIRE_ALL is set)")
		}
		t.Skip("web/e2e: run `npm ci` there first")
	}
	demo := func(c *Config, _ *events.Config) {
		c.Dev, c.DevSecret, c.Web, c.CookieSecure = true, testSecret, web.FS(), false
		c.WriteRate = 0
	}
	a, b := newInstance(t, demo), newInstance(t, demo)

	var next atomic.Uint64
	targets := []*url.URL{mustURL(t, a.URL), mustURL(t, b.URL)}
	lb := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(targets[next.Add(1)%2])
			r.Out.Host = r.In.Host
		},
		FlushInterval: -1,
	})
	defer lb.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script, lb.URL)
	cmd.Dir = filepath.Dir(script)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())

	result := ""
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "DROP":
			lb.CloseClientConnections()
			_, err := io.WriteString(stdin, "OK\n")
			require.NoError(t, err)
		case strings.HasPrefix(line, "PASS"), strings.HasPrefix(line, "FAIL"):
			result = line
		}
	}
	err = cmd.Wait()
	t.Logf("browser log:\n%s", stderr.String())
	require.Equal(t, "PASS", result, "%v", err)
	require.NoError(t, err)
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	require.NoError(t, err, fmt.Sprintf("url %q", s))
	return u
}

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
	node, script := browserScript(t, "chat.mjs")
	a, b := newInstance(t, demoWeb), newInstance(t, demoWeb)

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

	runBrowserScript(t, node, script, 2*time.Minute, func(line string) string {
		if line != "DROP" {
			return ""
		}
		lb.CloseClientConnections()
		return "OK"
	}, lb.URL)
}

// browserScript returns node and the path of a web/e2e script. Without node, Chromium or
// web/e2e's packages the test is skipped, unless CHAT_TEST_REQUIRE_ALL is set (CI).
func browserScript(t *testing.T, name string) (node, script string) {
	node = requireTool(t, "node")
	requireTool(t, "chromium")
	script, err := filepath.Abs(filepath.Join("..", "web", "e2e", name))
	require.NoError(t, err)
	if !fileExists(filepath.Join(filepath.Dir(script), "node_modules", "playwright-core")) {
		if os.Getenv("CHAT_TEST_REQUIRE_ALL") != "" {
			t.Fatal("web/e2e needs `npm ci` (CHAT_TEST_REQUIRE_ALL is set)")
		}
		t.Skip("web/e2e: run `npm ci` there first")
	}
	return node, script
}

// demoWeb configures an instance like `chatd serve -dev`: the web client, the dev sign-in,
// plain-http cookies, no write limit.
func demoWeb(c *Config, _ *events.Config) {
	c.Dev, c.DevSecret, c.Web, c.CookieSecure = true, testSecret, web.FS(), false
	c.WriteRate = 0
}

// runBrowserScript runs a web/e2e script with args. Each line it prints goes to answer, and a
// non-empty answer is written back to its stdin; its last PASS or FAIL line is the verdict.
func runBrowserScript(t *testing.T, node, script string, timeout time.Duration, answer func(line string) string, args ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{script}, args...)...)
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
		if strings.HasPrefix(line, "PASS") || strings.HasPrefix(line, "FAIL") {
			result = line
		} else if reply := answer(line); reply != "" {
			_, err := io.WriteString(stdin, reply+"\n")
			require.NoError(t, err)
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

// artifactsDir is where browser tests put their screenshots: CHAT_TEST_ARTIFACTS, or
// bench-out/browser.
func artifactsDir(t *testing.T) string {
	artifacts := os.Getenv("CHAT_TEST_ARTIFACTS")
	if artifacts == "" {
		var err error
		artifacts, err = filepath.Abs("../bench-out/browser")
		require.NoError(t, err)
	}
	require.NoError(t, os.MkdirAll(artifacts, 0o755))
	t.Logf("screenshots in %s", artifacts)
	return artifacts
}

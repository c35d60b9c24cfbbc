package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// proxySetups is the nginx configuration the browser test runs behind: two instances, round
// robin, and one server per proxy setup. "defaults" is a stock reverse proxy; "buffered"
// buffers and gzips event streams whatever chatd's X-Accel-Buffering says, which holds a
// stream back entirely (only the long poll gets through). The README quotes this file.
const proxySetups = `
  upstream chatd { server %[1]s; server %[2]s; }
  # nginx defaults: HTTP/1.0 to the upstream, buffering on (chatd turns it off per response
  # with X-Accel-Buffering: no), 60 s read timeout.
  server { listen 127.0.0.1:%[3]d; location / { proxy_pass http://chatd; } }
  # A proxy that holds streamed bodies back: buffering forced on and gzip on event streams.
  server {
    listen 127.0.0.1:%[4]d;
    proxy_buffering on;
    proxy_ignore_headers X-Accel-Buffering;
    gzip on; gzip_min_length 1; gzip_proxied any; gzip_types text/event-stream application/json;
    location / { proxy_pass http://chatd; }
  }
`

// startNginxWith runs nginx with servers as the body of its http block.
func startNginxWith(t *testing.T, servers string, ports ...int) {
	nginx := requireTool(t, "nginx")
	dir := t.TempDir()
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	conf := fmt.Sprintf(`%s
daemon off;
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 512; }
http {
  access_log off;
  client_body_temp_path %[2]s/body; proxy_temp_path %[2]s/proxy;
  fastcgi_temp_path %[2]s/fcgi; uwsgi_temp_path %[2]s/uwsgi; scgi_temp_path %[2]s/scgi;
%[3]s
}
`, user, dir, servers)
	confPath := filepath.Join(dir, "nginx.conf")
	require.NoError(t, os.WriteFile(confPath, []byte(conf), 0o644))
	cmd := exec.Command(nginx, "-p", dir, "-c", confPath)
	out, err := os.Create(filepath.Join(dir, "stderr"))
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx error.log:\n%s", b)
		}
	})
	for _, p := range ports {
		require.Eventually(t, func() bool {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err == nil {
				c.Close()
			}
			return err == nil
		}, 10*time.Second, 20*time.Millisecond, "nginx did not start")
	}
}

// cuttingProxy ends every response after cut, streamed or not, as some corporate proxies
// and hosting front ends do.
func cuttingProxy(t *testing.T, upstream string, cut time.Duration) string {
	target := mustURL(t, upstream)
	rp := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(target); r.Out.Host = r.In.Host },
		FlushInterval: -1,
		ErrorLog:      log.New(io.Discard, "", 0), // the cuts are the point
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), cut)
		defer cancel()
		rp.ServeHTTP(w, r.WithContext(ctx))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(srv.Close)
	return srv.URL
}

var streamsOpen = regexp.MustCompile(`(?m)^chatd_streams_open (\d+)`)

// streamsOpenOn sums chatd_streams_open (streams and polls) over the instances' metrics.
func streamsOpenOn(urls ...string) (int, error) {
	n := 0
	for _, u := range urls {
		req, err := http.NewRequest("GET", u+"/metrics", nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+testMetricsToken)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			return 0, err
		}
		m := streamsOpen.FindSubmatch(b)
		if m == nil {
			return 0, fmt.Errorf("no chatd_streams_open in the metrics of %s", u)
		}
		v, _ := strconv.Atoi(string(m[1]))
		n += v
	}
	return n, nil
}

// TestBrowserBehindProxies runs the page (chatd.js) in headless Chromium through real nginx
// in front of two instances, round robin, in three proxy setups: nginx defaults, nginx
// buffering and gzipping event streams (the stream never gets through: the client must fall
// back to long polls), and a proxy that ends every response after 3 s. In each, a message
// from another user appears in the page and one sent from the page reaches the other user.
// Then, on the defaults: messages written offline survive a reload and arrive once each, in
// order; eight tabs of one user share one stream, and closing the leader loses nothing
// (web/e2e/proxies.mjs). Screenshots of the fallback mode go to the artifacts directory.
func TestBrowserBehindProxies(t *testing.T) {
	node, script := browserScript(t, "proxies.mjs")
	a, b := newInstance(t, demoWeb), newInstance(t, demoWeb)
	pDefaults, pBuffered := freePort(t), freePort(t)
	startNginxWith(t, fmt.Sprintf(proxySetups, strings.TrimPrefix(a.URL, "http://"), strings.TrimPrefix(b.URL, "http://"),
		pDefaults, pBuffered), pDefaults, pBuffered)
	defaults := fmt.Sprintf("http://127.0.0.1:%d", pDefaults)
	setups := []map[string]string{
		{"name": "defaults", "url": defaults, "expect": "sse"},
		{"name": "buffered", "url": fmt.Sprintf("http://127.0.0.1:%d", pBuffered), "expect": "poll"},
		{"name": "cut", "url": cuttingProxy(t, defaults, 3*time.Second), "expect": ""},
	}
	artifacts := artifactsDir(t)
	cfg, err := json.Marshal(map[string]any{"setups": setups, "artifacts": artifacts})
	require.NoError(t, err)

	// The script asks for the number of streams open on chatd (STREAMS).
	runBrowserScript(t, node, script, 3*time.Minute, func(line string) string {
		if line != "STREAMS" {
			return ""
		}
		n, err := streamsOpenOn(a.URL, b.URL)
		if err != nil {
			t.Logf("metrics: %v", err)
			n = -1
		}
		return strconv.Itoa(n)
	}, string(cfg))
}

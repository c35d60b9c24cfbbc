package main

// The command line as operators use it (issue 14): the binary, built once, run as a
// subprocess with its own environment against the real PostgreSQL.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/api"
	"github.com/chatd/chatd/db"
	"github.com/chatd/chatd/db/dbtest"
)

// cliSecret signs the tokens of the non-dev server and of `chatd token`.
const cliSecret = "cli-test-secret-of-at-least-32-bytes"

// cliBuild builds the chatd binary into dir.
func cliBuild(t *testing.T, dir string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "chatd")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goTool, "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// cliEnv is this process's environment without any CHAT_* setting, plus extra: every run
// says exactly what it is configured with.
func cliEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CHAT_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// cliRun runs the binary to completion and returns its stdout, stderr and error.
func cliRun(t *testing.T, bin string, env []string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// cliToken runs `chatd token` and returns the token it printed.
func cliToken(t *testing.T, bin string, env []string, args ...string) string {
	t.Helper()
	out, errOut, err := cliRun(t, bin, env, append([]string{"token"}, args...)...)
	require.NoError(t, err, "chatd token: %s", errOut)
	tok, ok := strings.CutSuffix(out, "\n")
	require.True(t, ok, "the token ends its line: %q", out)
	require.NotContains(t, tok, "\n", "one line: the token")
	return tok
}

func cliVerify(t *testing.T, cfg api.KeyConfig, tok string) (api.Identity, error) {
	t.Helper()
	v, err := api.NewVerifier(context.Background(), cfg)
	require.NoError(t, err)
	return v.Verify(context.Background(), tok)
}

// cliDatabase returns the URL of a database name that does not exist yet, and drops it
// (whoever created it) when the test ends.
func cliDatabase(t *testing.T) (dbURL, name string) {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name = "chatd_test_cli_" + hex.EncodeToString(b)
	u, err := url.Parse(dbtest.ServerURL())
	require.NoError(t, err)
	u.Path = "/" + name
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), dbtest.ServerURL())
		if err != nil {
			t.Errorf("drop %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	return u.String(), name
}

// cliFreeAddr returns a loopback address with a port that was free a moment ago.
func cliFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// lockedBuffer collects a subprocess's output while the test may read it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// cliServe starts `chatd serve` with args (which must include -addr addr) and returns its
// base URL once /healthz answers. The server is stopped (SIGTERM, then killed) when the
// test ends.
func cliServe(t *testing.T, bin string, env []string, addr string, args ...string) string {
	t.Helper()
	base, _ := cliServeProcess(t, bin, env, addr, args...)
	return base
}

// cliServeProcess is cliServe that also returns the process, for tests that kill it.
func cliServeProcess(t *testing.T, bin string, env []string, addr string, args ...string) (string, *os.Process) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, bin, append([]string{"serve"}, args...)...)
	cmd.Env = env
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cancel()
		<-exited
		if t.Failed() {
			t.Logf("chatd serve %v output:\n%s", args, logs.String())
		}
	})

	base := "http://" + addr
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("chatd serve exited before answering: %s", logs.String())
			return "", nil
		case <-deadline:
			t.Fatalf("chatd serve did not answer /healthz: %s", logs.String())
			return "", nil
		case <-tick.C:
		}
		res, err := http.Get(base + "/healthz")
		if err != nil {
			continue
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			return base, cmd.Process
		}
	}
}

// cliHTTP makes one request (a JSON body unless body is nil, a Bearer token unless tok is
// "", a cookie unless cookie is nil) and returns the status, headers and body.
func cliHTTP(t *testing.T, method, u, tok string, cookie *http.Cookie, body any) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, u, rd)
	require.NoError(t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, res.Header, b
}

func TestCLI(t *testing.T) {
	t.Parallel()
	bin := cliBuild(t, t.TempDir())
	t.Run("token prints a token the verifier accepts", func(t *testing.T) { t.Parallel(); cliTokenSigns(t, bin) })
	t.Run("migrate creates the database and is idempotent", func(t *testing.T) { t.Parallel(); cliMigrateIsIdempotent(t, bin) })
	t.Run("serve -dev signs in through its page", func(t *testing.T) { t.Parallel(); cliServeDevSignsIn(t, bin) })
	t.Run("serve enforces issuer and audience", func(t *testing.T) { t.Parallel(); cliServeEnforcesIssuerAndAudience(t, bin) })
}

// cliTokenSigns: `chatd token` prints a token the verifier accepts, scoped to the issuer and
// audience when they are configured, and refuses without a secret.
func cliTokenSigns(t *testing.T, bin string) {
	tok := cliToken(t, bin, cliEnv("CHAT_JWT_SECRET="+cliSecret), "--sub", "alice", "--name", "Alice", "--ttl", "10m")
	id, err := cliVerify(t, api.KeyConfig{Secret: []byte(cliSecret)}, tok)
	require.NoError(t, err)
	require.Equal(t, "alice", id.Sub)
	require.Equal(t, "Alice", id.Name)
	require.WithinDuration(t, time.Now().Add(10*time.Minute), id.Expires, 5*time.Second)

	// With CHAT_JWT_ISSUER and CHAT_JWT_AUDIENCE set, it signs for a service that
	// requires them; without, a verifier that requires them refuses the token.
	strict := api.KeyConfig{Secret: []byte(cliSecret), Issuer: "https://issuer.example", Audience: "chatd-cli"}
	_, err = cliVerify(t, strict, tok)
	require.Error(t, err, "a token without iss and aud")
	scoped := cliToken(t, bin, cliEnv("CHAT_JWT_SECRET="+cliSecret, "CHAT_JWT_ISSUER=https://issuer.example",
		"CHAT_JWT_AUDIENCE=chatd-cli"), "--sub", "alice")
	id, err = cliVerify(t, strict, scoped)
	require.NoError(t, err)
	require.Equal(t, "alice", id.Sub)

	_, _, err = cliRun(t, bin, cliEnv(), "token", "--sub", "alice")
	require.Error(t, err, "no secret, no token")
}

// cliMigrateIsIdempotent: `chatd migrate` creates the database and its tables, and run
// again on a database in use changes nothing and loses nothing.
func cliMigrateIsIdempotent(t *testing.T, bin string) {
	dbURL, _ := cliDatabase(t)
	env := cliEnv("CHAT_DATABASE_URL=" + dbURL)
	_, errOut, err := cliRun(t, bin, env, "migrate")
	require.NoError(t, err, "first migrate: %s", errOut)

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err, "migrate created the database")
	defer conn.Close(ctx)
	versions := func() []int32 {
		t.Helper()
		rows, err := conn.Query(ctx, "SELECT version FROM schema_version ORDER BY version")
		require.NoError(t, err)
		v, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		require.NoError(t, err)
		return v
	}
	require.Equal(t, []int32{db.CurrentSchemaVersion}, versions())
	for _, table := range []string{"users", "conversations", "members", "messages", "events", "tickets"} {
		var exists bool
		require.NoError(t, conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&exists))
		require.True(t, exists, "table %s", table)
	}

	// Again, on a database in use: nothing changes and nothing is lost.
	_, err = conn.Exec(ctx, "INSERT INTO users (id, name) VALUES ('kept', 'Kept')")
	require.NoError(t, err)
	_, errOut, err = cliRun(t, bin, env, "migrate")
	require.NoError(t, err, "second migrate: %s", errOut)
	require.Equal(t, []int32{db.CurrentSchemaVersion}, versions())
	var name string
	require.NoError(t, conn.QueryRow(ctx, "SELECT name FROM users WHERE id = 'kept'").Scan(&name))
	require.Equal(t, "Kept", name)
}

// cliServeDevSignsIn: `chatd serve -dev` serves the page, mints tokens for it at
// /dev/token and sets a session cookie fit for plain http.
func cliServeDevSignsIn(t *testing.T, bin string) {
	dbURL, _ := cliDatabase(t) // serve -dev creates it
	addr := cliFreeAddr(t)
	// Issuer and audience set: the tokens the page mints must carry them to work.
	base := cliServe(t, bin, cliEnv("CHAT_DATABASE_URL="+dbURL, "CHAT_JWT_ISSUER=https://dev.example",
		"CHAT_JWT_AUDIENCE=chatd-dev"), addr, "-dev", "-addr", addr)

	status, h, page := cliHTTP(t, "GET", base+"/", "", nil, nil)
	require.Equal(t, 200, status)
	require.Contains(t, h.Get("Content-Type"), "text/html")
	require.Contains(t, string(page), `id="signin-form"`)
	require.Contains(t, string(page), `src="/web/app.js"`)
	status, _, script := cliHTTP(t, "GET", base+"/web/app.js", "", nil, nil)
	require.Equal(t, 200, status)
	require.Contains(t, string(script), `from './app/session.js'`, "the page's entry loads its sign-in module")
	status, _, script = cliHTTP(t, "GET", base+"/web/app/session.js", "", nil, nil)
	require.Equal(t, 200, status)
	require.Contains(t, string(script), `api('POST', '/dev/token', { sub, name })`, "the page signs in at /dev/token")

	// What the page does: mint a token for a name, then use it.
	status, _, body := cliHTTP(t, "POST", base+"/dev/token", "", nil, map[string]string{"sub": "alice", "name": "Alice"})
	require.Equal(t, 200, status, "%s", body)
	var minted struct {
		Token string `json:"token"`
	}
	require.NoError(t, json.Unmarshal(body, &minted), "%s", body)
	require.NotEmpty(t, minted.Token)
	status, _, body = cliHTTP(t, "POST", base+"/v1/conversations", minted.Token, nil, map[string]string{"participant_id": "bob"})
	require.Equal(t, 201, status, "%s", body)
	status, _, body = cliHTTP(t, "GET", base+"/v1/conversations", minted.Token, nil, nil)
	require.Equal(t, 200, status, "%s", body)
	require.Contains(t, string(body), `"id":"bob"`)

	// Plain-http cookies in dev mode: the browser keeps the session on http://localhost.
	status, h, body = cliHTTP(t, "POST", base+"/v1/session", minted.Token, nil, nil)
	require.Equal(t, 204, status, "%s", body)
	cookies := (&http.Response{Header: h}).Cookies()
	require.Len(t, cookies, 1)
	require.False(t, cookies[0].Secure, "dev mode runs on plain http")
	status, _, body = cliHTTP(t, "GET", base+"/v1/unread", "", cookies[0], nil)
	require.Equal(t, 200, status, "%s", body)
}

// cliServeEnforcesIssuerAndAudience: `chatd serve` refuses tokens without the configured
// issuer and audience, and mints none.
func cliServeEnforcesIssuerAndAudience(t *testing.T, bin string) {
	dbURL, _ := cliDatabase(t)
	_, errOut, err := cliRun(t, bin, cliEnv("CHAT_DATABASE_URL="+dbURL), "migrate")
	require.NoError(t, err, "%s", errOut)
	addr := cliFreeAddr(t)
	secret, iss, aud := "CHAT_JWT_SECRET="+cliSecret, "CHAT_JWT_ISSUER=https://issuer.example", "CHAT_JWT_AUDIENCE=chatd-cli"
	base := cliServe(t, bin, cliEnv("CHAT_DATABASE_URL="+dbURL, secret, iss, aud), addr, "-addr", addr)

	for _, tc := range []struct {
		name   string
		env    []string
		status int
	}{
		{"iss and aud", []string{secret, iss, aud}, 200},
		{"no iss", []string{secret, aud}, 401},
		{"no aud", []string{secret, iss}, 401},
		{"another iss", []string{secret, "CHAT_JWT_ISSUER=https://evil.example", aud}, 401},
	} {
		tok := cliToken(t, bin, cliEnv(tc.env...), "--sub", "alice")
		status, _, body := cliHTTP(t, "GET", base+"/v1/unread", tok, nil, nil)
		require.Equal(t, tc.status, status, "%s: %s", tc.name, body)
	}
	// Not dev mode: no token minting for anyone.
	status, _, body := cliHTTP(t, "POST", base+"/dev/token", "", nil, map[string]string{"sub": "mallory"})
	require.Equal(t, 404, status, "%s", body)
}

// TestCLIEnvironmentIsExplicit guards the helpers above: a CHAT_* setting of the test
// process never leaks into a subprocess's configuration.
func TestCLIEnvironmentIsExplicit(t *testing.T) {
	t.Setenv("CHAT_JWT_SECRET", "leaked")
	env := cliEnv("CHAT_ADDR=127.0.0.1:1")
	require.NotContains(t, env, "CHAT_JWT_SECRET=leaked")
	require.Contains(t, env, "CHAT_ADDR=127.0.0.1:1")
}

package api

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	osuser "os/user"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd"
	"github.com/chatd/chatd/db"
	"github.com/chatd/chatd/events"
)

// pgBouncerExecMode is the statement mode the README tells operators to put in the pool
// URL for PgBouncer in transaction mode (before 1.21, or without max_prepared_statements).
const pgBouncerExecMode = "exec"

// pgBouncer is a PgBouncer process in transaction mode in front of one database.
type pgBouncer struct {
	URL string // the database through it, without a statement mode
	cmd *exec.Cmd
	dir string
}

// runPgBouncer starts bin in transaction mode in front of dbURL's database, with the
// settings the README gives (and no ignore_startup_parameters: chatd needs none) and at
// most poolSize server sessions, so that clients share them. It needs no testing.TB, so
// that TestMain can put the whole package behind it (CHAT_TEST_POOL=pgbouncer).
func runPgBouncer(bin, dbURL string, poolSize int) (_ *pgBouncer, err error) {
	direct, err := pgx.ParseConfig(dbURL)
	if err != nil {
		return nil, err
	}
	port, err := loopbackPort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "chatd-pgbouncer-")
	if err != nil {
		return nil, err
	}
	p := &pgBouncer{dir: dir}
	defer func() {
		if err != nil {
			p.stop()
		}
	}()
	if err := os.Chmod(dir, 0o755); err != nil { // readable by the postgres user (below)
		return nil, err
	}
	ini := fmt.Sprintf(`[databases]
%[1]s = host=%[2]s port=%[3]d dbname=%[1]s
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %[4]d
unix_socket_dir =
auth_type = trust
auth_file = %[5]s/users.txt
pool_mode = transaction
default_pool_size = %[6]d
max_client_conn = 500
`, direct.Database, direct.Host, direct.Port, port, dir, poolSize)
	if err := os.WriteFile(filepath.Join(dir, "pgbouncer.ini"), []byte(ini), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "users.txt"), []byte(fmt.Sprintf("%q \"\"\n", direct.User)), 0o644); err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	args := []string{filepath.Join(dir, "pgbouncer.ini")}
	if os.Geteuid() == 0 { // PgBouncer refuses to run as root
		if _, err := osuser.Lookup("postgres"); err != nil {
			return nil, fmt.Errorf("running as root, PgBouncer needs a user to switch to: %w", err)
		}
		args = append([]string{"-u", "postgres"}, args...)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile // files: no copying goroutines to leak
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p.cmd = cmd
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(filepath.Join(dir, "stderr"))
			return nil, fmt.Errorf("PgBouncer did not listen on %s: %s", addr, out)
		}
	}
	u := url.URL{Scheme: "postgres", User: url.User(direct.User), Host: addr, Path: "/" + direct.Database,
		RawQuery: "sslmode=disable"}
	p.URL = u.String()
	return p, nil
}

// stop kills PgBouncer, waits for it and removes its files.
func (p *pgBouncer) stop() {
	if p.cmd != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	}
	os.RemoveAll(p.dir)
}

// startPgBouncer runs PgBouncer in front of the test database for one test, with 4
// server sessions, and returns the URL of the test database through it, without a
// statement mode.
func startPgBouncer(t testing.TB) string {
	t.Helper()
	p, err := runPgBouncer(requireTool(t, "pgbouncer"), testDB, 4)
	require.NoError(t, err)
	t.Cleanup(p.stop)
	return p.URL
}

// throughPool is an instance option: its pool goes to poolURL, its listener stays on the
// test database directly (CHAT_LISTEN_DATABASE_URL).
func throughPool(t testing.TB, poolURL string) func(*Config, *events.Config) {
	return func(c *Config, e *events.Config) {
		pool, err := db.Open(context.Background(), poolURL, 20)
		require.NoError(t, err)
		c.Pool, e.Pool = pool, pool // newInstance closes the one it opened
		e.ListenURL = testDB
	}
}

// TestThroughPgBouncer: chatd set up as the README says for PgBouncer in transaction mode
// (the pool URL through it with its statement mode, the listener direct), two instances:
// migration, conversations, sends from both sides at once, streams across instances,
// typing, history, unread counts and presence all work.
func TestThroughPgBouncer(t *testing.T) {
	ctx := context.Background()
	poolURL := startPgBouncer(t) + "&default_query_exec_mode=" + pgBouncerExecMode

	migrateThroughPooler(t, poolURL)

	a, b := newInstance(t, throughPool(t, poolURL)), newInstance(t, throughPool(t, poolURL))
	// The log reads run without JIT through the pooler too: the setting is per transaction.
	rows, err := db.WithoutJIT(a.Pool).Query(ctx, "SELECT current_setting('jit')")
	require.NoError(t, err)
	jit, err := pgx.CollectExactlyOneRow(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, "off", jit)

	alice, bob := newUser(t, a, "alice"), newUser(t, b, "bob")
	conv := bob.direct(alice) // bob took part: his presence shows to alice (API.md v1.1)
	group := alice.do("POST", "/v1/conversations", map[string]any{"participant_ids": []string{bob.ID, uniq("carol")}, "title": "pooled"})
	require.Equal(t, 201, group.Status, "%s", group.Body)

	aliceStream, _ := openReady(t, a.URL+"/v1/events", alice.Token, nil)
	bobStream, _ := openReady(t, b.URL+"/v1/events", bob.Token, nil)
	p := decode[events.UserPresence](t, aliceStream.nextOf("presence", wait).Data)
	require.Equal(t, bob.ID, p.UserID)
	require.True(t, p.Online)
	require.Eventually(t, seenOnline(alice, bob.ID, true), wait, 20*time.Millisecond)
	require.Equal(t, 204, alice.do("POST", "/v1/conversations/"+conv.ID+"/typing", map[string]any{"typing": true}).Status)
	require.Equal(t, alice.ID, decode[events.Typing](t, bobStream.nextOf("typing", wait).Data).UserID)

	// Both sides send at once, many requests in flight on 4 server sessions.
	const each = 30
	sendAtOnce(t, []*testUser{alice, bob}, conv.ID, each)
	for _, s := range []*stream{aliceStream, bobStream} {
		requireSeqsOnceInOrder(t, s, 2*each)
	}

	var page struct {
		Messages []events.Message `json:"messages"`
	}
	bob.do("GET", "/v1/conversations/"+conv.ID+"/messages?limit=100", nil).OK(t, &page)
	require.Len(t, page.Messages, 2*each)
	// Bob's own sends moved his read position: what is unread is alice's after his last.
	want := unreadAfterOwnLast(page.Messages, alice.ID, bob.ID)
	var unread struct{ Total int64 }
	bob.on(a).do("GET", "/v1/unread", nil).OK(t, &unread)
	require.Equal(t, want, unread.Total)

	bobStream.close()
	require.Eventually(t, seenOnline(alice, bob.ID, false), wait, 20*time.Millisecond)
}

// migrateThroughPooler migrates the database behind poolURL twice, as chatd does at start:
// the pooler serves only chatd's database, so migrate must not need "postgres", and the
// migration lock must not stay behind. A database missing behind the pooler is named with
// the command that creates it.
func migrateThroughPooler(t *testing.T, poolURL string) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, db.EnsureDatabase(ctx, poolURL))
	pool, err := db.Open(ctx, poolURL, 2)
	require.NoError(t, err)
	require.NoError(t, db.Migrate(ctx, pool, chatd.Schema))
	require.NoError(t, db.Migrate(ctx, pool, chatd.Schema), "the migration lock did not stay behind")
	pool.Close()
	missing := strings.Replace(poolURL, "/chatd_test_api", "/chatd_test_missing", 1)
	err = db.EnsureDatabase(ctx, missing)
	require.ErrorContains(t, err, `"chatd_test_missing`)
	require.ErrorContains(t, err, "createdb chatd_test_missing")
}

// sendAtOnce has every user send each messages to conv, three requests in flight per user.
func sendAtOnce(t *testing.T, users []*testUser, conv string, each int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(users)*each)
	for _, u := range users {
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each / 3 {
					if _, err := u.trySend(conv, fmt.Sprintf("%s %d", u.ID, i)); err != nil {
						errs <- err
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// requireSeqsOnceInOrder reads n messages from s and requires seq 1..n, each once, in order.
func requireSeqsOnceInOrder(t *testing.T, s *stream, n int) {
	t.Helper()
	seen := map[int64]bool{}
	for len(seen) < n {
		m := decode[events.Message](t, s.nextOf("message", wait).Data)
		require.False(t, seen[m.Seq], "seq %d twice", m.Seq)
		require.Equal(t, int64(len(seen)+1), m.Seq, "in order")
		seen[m.Seq] = true
	}
}

// unreadAfterOwnLast counts the messages from other that reader has not read when sending
// is reader's only read: those after reader's last message.
func unreadAfterOwnLast(msgs []events.Message, other, reader string) int64 {
	var want, readerLast int64
	for _, m := range msgs {
		if *m.SenderID == reader {
			readerLast = max(readerLast, m.Seq)
		}
	}
	for _, m := range msgs {
		if *m.SenderID == other && m.Seq > readerLast {
			want++
		}
	}
	return want
}

// withMode is url with pgx's default_query_exec_mode set to mode.
func withMode(t testing.TB, raw, mode string) string {
	u, err := url.Parse(raw)
	require.NoError(t, err)
	q := u.Query()
	q.Set("default_query_exec_mode", mode)
	u.RawQuery = q.Encode()
	return u.String()
}

// BenchmarkSendByStatementMode: REST sends end to end (HTTP, the send statement, the
// doorbell), 16 at a time over 16 conversations, with pgx's default statement cache and with
// the modes that work through a pooler in transaction mode, directly and through PgBouncer
// (README, Performance: Through PgBouncer).
func BenchmarkSendByStatementMode(b *testing.B) {
	bouncer := startPgBouncer(b)
	for _, c := range []struct{ name, url string }{
		{"direct/cache_statement", withMode(b, testDB, "cache_statement")},
		{"direct/cache_describe", withMode(b, testDB, "cache_describe")},
		{"direct/exec", withMode(b, testDB, "exec")},
		{"pgbouncer/cache_describe", withMode(b, bouncer, "cache_describe")},
		{"pgbouncer/exec", withMode(b, bouncer, "exec")},
	} {
		b.Run(c.name, func(b *testing.B) {
			in := newInstance(b, throughPool(b, c.url))
			var convs []string
			var users []*testUser
			for range 16 {
				u := newUser(b, in, "alice")
				convs = append(convs, u.direct(newUser(b, in, "bob")).ID)
				users = append(users, u)
			}
			var next atomic.Int32
			b.SetParallelism(8) // 16 senders on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(next.Add(1)-1) % len(convs)
				for pb.Next() {
					if _, err := users[i].trySend(convs[i], "benchmark"); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// testPoolURL is where newInstance's pools connect: the test database, or with
// CHAT_TEST_POOL=pgbouncer the same database through one PgBouncer in transaction mode,
// with the README's statement mode for it, while listeners stay direct on testDB. CI runs
// the suite both ways (.ci/run), so that chatd behind a pooler is tested as a whole.
var testPoolURL string

// poolChoice runs the package's tests with testPoolURL set as CHAT_TEST_POOL says.
type poolChoice struct{ m *testing.M }

func (p poolChoice) Run() int {
	testPoolURL = testDB
	switch mode := os.Getenv("CHAT_TEST_POOL"); mode {
	case "":
		return p.m.Run()
	case "pgbouncer":
	default:
		fmt.Fprintf(os.Stderr, "CHAT_TEST_POOL=%q: want pgbouncer, or unset for a direct pool\n", mode)
		return 1
	}
	bin, ok := findTool("pgbouncer")
	if !ok {
		fmt.Fprintln(os.Stderr, "CHAT_TEST_POOL=pgbouncer: pgbouncer is not installed (apt-get install -y pgbouncer)")
		return 1
	}
	// The README's default_pool_size: 20 server sessions for every instance of every test.
	pb, err := runPgBouncer(bin, testDB, 20)
	if err != nil {
		fmt.Fprintln(os.Stderr, "CHAT_TEST_POOL=pgbouncer:", err)
		return 1
	}
	defer pb.stop()
	testPoolURL = pb.URL + "&default_query_exec_mode=" + pgBouncerExecMode
	return p.m.Run()
}

// pooledThroughPgBouncer reports whether newInstance's pools go through PgBouncer.
func pooledThroughPgBouncer() bool { return testPoolURL != testDB }

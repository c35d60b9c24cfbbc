package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// instance is one chatd process of -mode faults, on a loopback port of its own. It can be
// killed and started again on the same port.
type instance struct {
	name    string // "A" or "B", in the summary
	bin     string
	addr    string // 127.0.0.1:port
	url     string // http://addr
	env     []string
	logPath string
	pidFile string // every pid started is appended, so faults.sh can kill what a crash left

	cmd          *exec.Cmd
	exited       chan struct{} // closed when cmd has been waited for
	metricsToken string        // CHAT_METRICS_TOKEN, for /metrics on the public address
}

// freeLoopbackAddr finds a free TCP port on 127.0.0.1. Another process could take it before
// chatd binds it; chatd then fails to start and the run says so.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// newInstance prepares an instance of bin on a free loopback port, with chatEnv (see
// chatdEnv) and its own CHAT_ADDR.
func newInstance(name, bin, workDir string, chatEnv map[string]string) (*instance, error) {
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	env := append(chatdEnv(chatEnv), "CHAT_ADDR="+addr)
	return &instance{name: name, bin: bin, addr: addr, url: "http://" + addr, env: env,
		logPath: filepath.Join(workDir, "chatd-"+name+".log"), pidFile: filepath.Join(workDir, "pids")}, nil
}

// start runs `chatd serve` and waits (up to timeout) until /readyz answers 200.
func (in *instance) start(ctx context.Context, timeout time.Duration) error {
	logf, err := os.OpenFile(in.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(in.bin, "serve")
	cmd.Env = in.env
	cmd.Stdout, cmd.Stderr = logf, logf
	// Should chatbench itself be killed, the kernel kills its instances too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start chatd %s: %w", in.name, err)
	}
	in.cmd = cmd
	in.exited = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(in.exited)
	}()
	if f, err := os.OpenFile(in.pidFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		fmt.Fprintln(f, cmd.Process.Pid)
		f.Close()
	}
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, in.url+"/readyz", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-in.exited:
			return fmt.Errorf("chatd %s exited while starting (%s); see %s", in.name, cmd.ProcessState, in.logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("chatd %s not ready on %s after %s; see %s", in.name, in.addr, timeout, in.logPath)
		}
	}
}

// alive reports whether the process started last is still running.
func (in *instance) alive() bool {
	if in.cmd == nil {
		return false
	}
	select {
	case <-in.exited:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits until the process is gone.
func (in *instance) kill() {
	if !in.alive() {
		return
	}
	_ = in.cmd.Process.Signal(syscall.SIGKILL)
	<-in.exited
}

// stop ends the instance as an operator would (SIGTERM), and kills it after grace.
func (in *instance) stop(grace time.Duration) {
	if !in.alive() {
		return
	}
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.exited:
	case <-time.After(grace):
		in.kill()
	}
}

// logProblems counts the instance's log lines at level ERROR by message, and returns the
// lines that always mean a bug (panics, internal errors: a 500), at most max of them.
func (in *instance) logProblems(byMsg map[string]int, max int) (bugs []string) {
	f, err := os.Open(in.logPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		bug := strings.HasPrefix(l, "panic:") || strings.HasPrefix(l, "fatal error:")
		if strings.Contains(l, `"level":"ERROR"`) {
			var rec struct {
				Msg string `json:"msg"`
			}
			_ = json.Unmarshal([]byte(l), &rec)
			byMsg[rec.Msg]++
			bug = bug || rec.Msg == "internal error"
		}
		if bug && len(bugs) < max {
			bugs = append(bugs, in.name+": "+l)
		}
	}
	return bugs
}

// pgControl stops and starts the PostgreSQL server that chatd uses, with an operator's
// command such as "pg_ctlcluster --skip-systemctl-redirect 15 main" (stop and start are
// appended).
type pgControl struct {
	command   []string
	serverURL string // any database on that server, to see it answer
	stopped   bool   // stopped by us and not started again yet
}

func (p *pgControl) run(ctx context.Context, action string) error {
	if len(p.command) == 0 {
		return errors.New("no -pg-ctl command")
	}
	cmd := exec.CommandContext(ctx, p.command[0], append(p.command[1:], action)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", strings.Join(p.command, " "), action, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (p *pgControl) stop(ctx context.Context) error {
	p.stopped = true
	return p.run(ctx, "stop")
}

// start starts the server and returns when the command has finished and the server
// accepts connections (up to 30 s). back is the first time it accepted one: pg_ctlcluster
// returns a while after that.
func (p *pgControl) start(ctx context.Context) (back time.Time, err error) {
	done := make(chan error, 1)
	go func() { done <- p.run(ctx, "start") }()
	finished := false
	deadline := time.Now().Add(30 * time.Second)
	for {
		if back.IsZero() {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			if conn, err := pgx.Connect(cctx, p.serverURL); err == nil {
				back = time.Now()
				conn.Close(cctx)
			}
			cancel()
		}
		if !finished {
			select {
			case err := <-done:
				if err != nil {
					return back, err
				}
				finished = true
			default:
			}
		}
		if finished && !back.IsZero() {
			p.stopped = false
			return back, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return back, errors.New("PostgreSQL not accepting connections 30s after start")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ensureRunning starts the server again if this run stopped it; cleanup calls it on every
// exit path, with a context of its own.
func (p *pgControl) ensureRunning() error {
	if !p.stopped {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, p.serverURL); err == nil { // a stop that failed
		p.stopped = false
		return conn.Close(ctx)
	}
	_, err := p.start(ctx)
	return err
}

// scratchDatabase names a database for the run on serverURL's server; chatd migrate
// creates and fills it. The name goes to workDir/database so faults.sh can drop it should
// this process die before its cleanup.
func scratchDatabase(ctx context.Context, serverURL, workDir string) (dbURL string, drop func(), err error) {
	dbURL, name, drop, err := scratchDatabaseURL(serverURL, "chatd_faults")
	if err != nil {
		return "", nil, err
	}
	_ = os.WriteFile(filepath.Join(workDir, "database"), []byte(name+"\n"), 0o644)
	return dbURL, drop, nil
}

// migrate runs `chatd migrate` with env.
func migrate(ctx context.Context, bin string, env []string) error {
	cmd := exec.CommandContext(ctx, bin, "migrate")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("chatd migrate: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// retryAfter parses a Retry-After header in seconds (the only form chatd sends); ok is
// false when it is missing or not a positive number of seconds.
func retryAfter(h string) (time.Duration, bool) {
	n, err := strconv.Atoi(strings.TrimSpace(h))
	if err != nil || n <= 0 {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// waitLeading waits (up to timeout) until the instance reads the event log for the cluster
// (chatd_log_leader 1 on /metrics) and returns the time since since; -1 if it did not.
func (in *instance) waitLeading(ctx context.Context, since time.Time, timeout time.Duration) time.Duration {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, in.url+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+in.metricsToken)
		if resp, err := client.Do(req); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && leads(body) {
				return time.Since(since)
			}
		}
		if time.Now().After(deadline) {
			return -1
		}
		select {
		case <-ctx.Done():
			return -1
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// leads reports whether a /metrics answer says the instance reads the log for the cluster.
func leads(metrics []byte) bool {
	for _, line := range strings.Split(string(metrics), "\n") {
		if line == "chatd_log_leader 1" {
			return true
		}
	}
	return false
}

package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgbenchTPS finds pgbench's throughput line: "tps = 2345.678 (without initial connection time)".
var pgbenchTPS = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)

// runPgbench is issue 9's reference: what PostgreSQL does with single-row INSERTs of a
// message-sized row (-body-bytes of body), pgbench -M prepared with -pgbench-clients,
// -pgbench-jobs and -pgbench-time, run in the same run as the service's measurement,
// whose throughput is then reported as a ratio to it. The scratch table is dropped afterwards.
func runPgbench(ctx context.Context, opt options) *PgbenchResult {
	secs := max(1, int(math.Round(opt.pgbenchTime.Seconds())))
	r := &PgbenchResult{Clients: opt.pgbenchClients, Jobs: opt.pgbenchJobs, Seconds: secs,
		BodyBytes: opt.bodyBytes, Protocol: "prepared"}
	table := "chatbench_pgbench_" + strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			return c
		}
		return '_'
	}, strings.ToLower(opt.runID))
	conn, err := pgx.Connect(ctx, opt.dbURL)
	if err != nil {
		r.Error = "connect: " + err.Error()
		return r
	}
	defer conn.Close(context.WithoutCancel(ctx))

	// Shaped like a message row: the same columns a message needs, a body of the same length.
	create := `CREATE TABLE ` + table + ` (
		id bigserial PRIMARY KEY,
		conversation_id uuid NOT NULL,
		seq bigint NOT NULL,
		sender_id text NOT NULL,
		body text NOT NULL,
		created_at timestamptz NOT NULL DEFAULT now())`
	if _, err := conn.Exec(ctx, create); err != nil {
		r.Error = "create scratch table: " + err.Error()
		return r
	}
	defer func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+table); err != nil {
			logf("pgbench: drop %s: %v", table, err)
		}
	}()

	body := strconv.FormatInt(time.Now().UnixNano(), 10) + " "
	body += strings.Repeat("7", max(opt.bodyBytes-len(body), 1))
	script := fmt.Sprintf("\\set seq random(1, 1000000000)\n"+
		"INSERT INTO %s (conversation_id, seq, sender_id, body) VALUES (gen_random_uuid(), :seq, '%s-0-a', '%s');\n",
		table, opt.runID, body[:max(opt.bodyBytes, 1)])
	f, err := os.CreateTemp("", "chatbench-*.sql")
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(script); err != nil {
		r.Error = err.Error()
		return r
	}
	f.Close()

	args := []string{"-n", "-M", "prepared", "-c", strconv.Itoa(r.Clients), "-j", strconv.Itoa(r.Jobs),
		"-T", strconv.Itoa(secs), "-f", f.Name(), opt.dbURL}
	logf("pgbench: -M prepared -c %d -j %d -T %d, single-row INSERT of a %d-byte body into %s", r.Clients, r.Jobs, secs, opt.bodyBytes, table)
	out, err := exec.CommandContext(ctx, "pgbench", args...).CombinedOutput()
	if err != nil {
		r.Error = fmt.Sprintf("pgbench %s: %v: %s", strings.Join(args[:len(args)-1], " "), err, lastLines(string(out), 2))
		if strings.Contains(string(out), "too many clients") {
			r.Error += "; " + connectionRoom(ctx, conn)
		}
		return r
	}
	m := pgbenchTPS.FindStringSubmatch(string(out))
	if m == nil {
		r.Error = "no tps line in pgbench's output: " + lastLines(string(out), 3)
		return r
	}
	r.TPS, _ = strconv.ParseFloat(m[1], 64)
	logf("pgbench: %.1f tps", r.TPS)
	return r
}

// runPgbenchMode is -mode pgbench: the reference alone, for a script that measures the
// service in several runs against one reference (throughput.sh).
func runPgbenchMode(ctx context.Context, opt options) int {
	res := &Result{Mode: opt.mode, RunID: opt.runID, Pgbench: runPgbench(ctx, opt)}
	var t table
	p := res.Pgbench
	if p.Error != "" {
		res.Failures = append(res.Failures, "pgbench: "+p.Error)
	}
	t.pgbenchRow(res)
	t.write(os.Stdout)
	if opt.jsonPath != "" {
		if err := writeJSON(opt.jsonPath, res); err != nil {
			fmt.Fprintln(os.Stderr, "chatbench: json:", err)
			return 2
		}
	}
	if p.Error != "" {
		return 1
	}
	return 0
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// connectionRoom says how many connections PostgreSQL had room for, for the error message.
func connectionRoom(ctx context.Context, conn *pgx.Conn) string {
	var maxConns, reserved, used int
	err := conn.QueryRow(ctx, `SELECT current_setting('max_connections')::int,
		current_setting('superuser_reserved_connections')::int, (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')`).
		Scan(&maxConns, &reserved, &used)
	if err != nil {
		return "lower -pgbench-clients or raise PostgreSQL's max_connections"
	}
	return fmt.Sprintf("PostgreSQL max_connections %d (%d reserved), %d client connections in use: lower -pgbench-clients or raise max_connections",
		maxConns, reserved, used)
}

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
)

// pgbenchTPS finds pgbench's throughput line: "tps = 2345.678 (without initial connection time)".
var pgbenchTPS = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)

// runPgbench measures what PostgreSQL does with single-row INSERTs of a message-sized row,
// with the same client count and duration as the load, in the same run: the service's
// throughput is then reported as a ratio to it. The scratch table is dropped afterwards.
func (b *bench) runPgbench(ctx context.Context, bodyBytes int) *PgbenchResult {
	opt := b.opt
	secs := max(1, int(math.Round(opt.duration.Seconds())))
	r := &PgbenchResult{Clients: opt.clients, Seconds: secs, BodyBytes: bodyBytes}
	table := "chatbench_pgbench_" + strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			return c
		}
		return '_'
	}, strings.ToLower(opt.runID))

	// Shaped like a message row: the same columns a message needs, a body of the same length.
	create := `CREATE TABLE ` + table + ` (
		id bigserial PRIMARY KEY,
		conversation_id uuid NOT NULL,
		seq bigint NOT NULL,
		sender_id text NOT NULL,
		body text NOT NULL,
		created_at timestamptz NOT NULL DEFAULT now())`
	if err := b.db.exec(ctx, create); err != nil {
		r.Error = "create scratch table: " + err.Error()
		return r
	}
	defer func() {
		if err := b.db.exec(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+table); err != nil {
			logf("pgbench: drop %s: %v", table, err)
		}
	}()

	body := strconv.FormatInt(time.Now().UnixNano(), 10) + " "
	body += strings.Repeat("7", max(bodyBytes-len(body), 1))
	script := fmt.Sprintf("\\set seq random(1, 1000000000)\n"+
		"INSERT INTO %s (conversation_id, seq, sender_id, body) VALUES (gen_random_uuid(), :seq, '%s-0-a', '%s');\n",
		table, opt.runID, body)
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

	args := []string{"-n", "-c", strconv.Itoa(opt.clients), "-j", strconv.Itoa(min(2, opt.clients)),
		"-T", strconv.Itoa(secs), "-f", f.Name(), opt.dbURL}
	logf("pgbench: %d clients, %ds, single-row INSERT into %s", opt.clients, secs, table)
	out, err := exec.CommandContext(ctx, "pgbench", args...).CombinedOutput()
	if err != nil {
		r.Error = fmt.Sprintf("pgbench %s: %v: %s", strings.Join(args[:len(args)-1], " "), err, lastLines(string(out), 2))
		if strings.Contains(string(out), "too many clients") {
			r.Error += "; " + b.connectionRoom(ctx)
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

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// connectionRoom says how many connections PostgreSQL had room for, for the error message.
func (b *bench) connectionRoom(ctx context.Context) string {
	b.db.mu.Lock()
	defer b.db.mu.Unlock()
	var maxConns, reserved, used int
	err := b.db.conn.QueryRow(ctx, `SELECT current_setting('max_connections')::int,
		current_setting('superuser_reserved_connections')::int, (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')`).
		Scan(&maxConns, &reserved, &used)
	if err != nil {
		return "lower -clients or raise PostgreSQL's max_connections"
	}
	return fmt.Sprintf("PostgreSQL max_connections %d (%d reserved), %d client connections in use: lower -clients or raise max_connections",
		maxConns, reserved, used)
}

package db

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// CurrentSchemaVersion is recorded in schema_version after schema.sql is applied. Raise it with
// every change to schema.sql.
const CurrentSchemaVersion = 2

// migrateLock is the advisory lock key that serialises schema application when several
// instances start at once ("chatd" in ASCII).
const migrateLock = 0x6368617464

// Open returns a connection pool configured the way chatd relies on. maxConns caps the
// connections of this instance; the event listener's own connection is not counted.
func Open(ctx context.Context, url string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	// A transaction left open holds back the event-log fence (schema.sql) for every
	// instance, so the server ends any that idles; chatd itself never waits inside one.
	cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = "10000"
	cfg.ConnConfig.RuntimeParams["application_name"] = "chatd"
	// Every chatd query is small and indexed, but the planner's cost estimate of the log
	// read (LIMIT over a large index range) crosses jit_above_cost once the log holds a few
	// hundred thousand events, and compiling it then took 5 ms of a 22 ms read, measured.
	cfg.ConnConfig.RuntimeParams["jit"] = "off"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return pool, nil
}

// EnsureDatabase creates the database named in url when it does not exist yet, connecting
// to the server's "postgres" database to do it, so a fresh machine needs no manual step.
func EnsureDatabase(ctx context.Context, url string) error {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("parse database url: %w", err)
	}
	name := cfg.Database
	if name == "" {
		return errors.New("database url names no database")
	}
	cfg.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect to create database %q: %w", name, err)
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	if IsCode(err, "42P04") { // created by a concurrent instance meanwhile
		return nil
	}
	return err
}

// Migrate applies schema (schema.sql, idempotent) under an advisory lock so instances
// starting together do not race, and records CurrentSchemaVersion. It refuses a database whose
// recorded version is newer than this binary's.
func Migrate(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrateLock); err != nil {
		return err
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", migrateLock) //nolint:errcheck // the session ends the lock anyway
	// Creating the same objects concurrently from another database is impossible here; the
	// lock covers every chatd instance sharing this database.
	if _, err := conn.Exec(ctx, schema); err != nil {
		return fmt.Errorf("apply schema: %w", err)
	}
	var newest int32
	if err := conn.QueryRow(ctx, "SELECT COALESCE(max(version), 0) FROM schema_version").Scan(&newest); err != nil {
		return err
	}
	if newest > CurrentSchemaVersion {
		return fmt.Errorf("database schema version %d is newer than this binary's %d", newest, CurrentSchemaVersion)
	}
	_, err = conn.Exec(ctx, "INSERT INTO schema_version (version) VALUES ($1) ON CONFLICT DO NOTHING", CurrentSchemaVersion)
	return err
}

// InTx runs fn in a transaction and commits it when fn returns nil.
func InTx(ctx context.Context, pool *pgxpool.Pool, fn func(q *Queries) error) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return fn(New(tx)) })
}

// IsCode reports whether err is a PostgreSQL error with the given SQLSTATE.
func IsCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

// IsUniqueViolation reports whether err is a unique violation of the named constraint.
func IsUniqueViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == constraint
}

// IsUnavailable reports whether err means the database could not be reached or is not
// accepting work (as opposed to a bug in a query): the API answers 503 for these.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var netErr net.Error
	var connErr *pgconn.ConnectError
	if errors.As(err, &netErr) || errors.As(err, &connErr) || pgconn.SafeToRetry(err) {
		return true
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", "53", "57": // connection exception, insufficient resources, operator intervention
			return true
		}
		return pgErr.Code == "40001" || pgErr.Code == "40P01"
	}
	return false
}

// RetryAfter is what a 503 tells clients to wait before trying again.
const RetryAfter = 2 * time.Second

// CreateScratchDatabase creates a new, empty, migrated database on the server of baseURL
// (a postgres:// URL) for one test package, and returns its URL and a function that drops
// it; an empty schema leaves the database empty. Tests run against real PostgreSQL, each
// package in a database of its own.
func CreateScratchDatabase(ctx context.Context, baseURL, prefix, schema string) (dbURL string, drop func(), err error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", nil, fmt.Errorf("%q is not a postgres:// URL", baseURL)
	}
	conn, err := pgx.Connect(ctx, baseURL)
	if err != nil {
		return "", nil, fmt.Errorf("connect to %s (set CHAT_TEST_DATABASE_URL): %w", u.Host, err)
	}
	defer conn.Close(ctx)
	suffix := make([]byte, 6)
	_, _ = crand.Read(suffix)
	name := fmt.Sprintf("%s_%x", prefix, suffix)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", nil, err
	}
	drop = func() {
		c, err := pgx.Connect(context.Background(), baseURL)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	}
	u.Path = "/" + name
	if schema == "" {
		return u.String(), drop, nil
	}
	pool, err := Open(ctx, u.String(), 2)
	if err != nil {
		drop()
		return "", nil, err
	}
	defer pool.Close()
	if err := Migrate(ctx, pool, schema); err != nil {
		drop()
		return "", nil, err
	}
	return u.String(), drop, nil
}

// TestServerURL is the PostgreSQL server tests create their databases on:
// CHAT_TEST_DATABASE_URL, or the local server.
func TestServerURL() string {
	if u := os.Getenv("CHAT_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://127.0.0.1:5432/postgres?sslmode=disable"
}

// RunTests is a test package's TestMain body: it creates the package's own scratch
// database (migrated with schema), stores its URL in *url, runs the tests, drops the
// database and returns the exit code. When the tests passed, each of after runs (a check
// for leaked goroutines, say) and an error from one fails the run.
func RunTests(m interface{ Run() int }, prefix, schema string, url *string, after ...func() error) int {
	u, drop, err := CreateScratchDatabase(context.Background(), TestServerURL(), prefix, schema)
	if err != nil {
		fmt.Fprintln(os.Stderr, "test database:", err)
		return 1
	}
	defer drop()
	*url = u
	code := m.Run()
	for _, check := range after {
		if code != 0 {
			break
		}
		if err := check(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	return code
}

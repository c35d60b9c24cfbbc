// Package dbtest gives each test package a database of its own on a real PostgreSQL
// (CHAT_TEST_DATABASE_URL, or the local server), created fresh and dropped after. Tests
// only: nothing in the service imports it.
package dbtest

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/url"
	"os"

	"github.com/jackc/pgx/v5"
)

// Create creates a new database on the server of baseURL (a postgres:// URL) with schema
// applied (an empty schema leaves it empty), and returns its URL and a function that
// drops it.
func Create(ctx context.Context, baseURL, prefix, schema string) (dbURL string, drop func(), err error) {
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
	_, _ = rand.Read(suffix)
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
	// The schema as it stands (schema.sql is idempotent DDL, applied in one go); tests that
	// exercise the migration itself call db.Migrate.
	sc, err := pgx.Connect(ctx, u.String())
	if err != nil {
		drop()
		return "", nil, err
	}
	defer sc.Close(ctx)
	if _, err := sc.Exec(ctx, schema); err != nil {
		drop()
		return "", nil, err
	}
	return u.String(), drop, nil
}

// ServerURL is the PostgreSQL server tests create their databases on:
// CHAT_TEST_DATABASE_URL, or the local server.
func ServerURL() string {
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
	u, drop, err := Create(context.Background(), ServerURL(), prefix, schema)
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

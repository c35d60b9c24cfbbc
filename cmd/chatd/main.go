// Command chatd is the chat service: `chatd serve` runs an instance, `chatd migrate`
// applies the schema, `chatd token` prints a token for curl.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/chatd/chatd"
	"github.com/chatd/chatd/api"
	"github.com/chatd/chatd/db"
	"github.com/chatd/chatd/notify"
	"github.com/jackc/pgx/v5/pgxpool"
)

const usage = `usage:
  chatd serve [-dev] [flags]   run one instance (flags mirror the CHAT_* variables; -h lists them)
  chatd migrate                apply the schema to CHAT_DATABASE_URL (creating the database)
  chatd token --sub alice [--name Alice] [--ttl 1h]
                               print a token signed with CHAT_JWT_SECRET
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	logs := newLogWriter(os.Stderr)
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	slog.SetDefault(logger)
	err := run(logger)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		logger.Error("chatd "+os.Args[1]+" failed", "err", err)
	}
	logs.Close()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		os.Exit(1)
	}
}

// run runs the command named by the first argument until it ends or a signal stops it.
func run(logger *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch os.Args[1] {
	case "serve":
		return serve(ctx, logger, os.Args[2:])
	case "migrate":
		return migrate(ctx, os.Args[2:])
	case "token":
		return token(os.Args[2:], os.Stdout)
	}
	fmt.Fprint(os.Stderr, usage)
	os.Exit(2)
	return nil
}

func migrate(ctx context.Context, args []string) error {
	var cfg config
	if err := cfg.load(flag.NewFlagSet("migrate", flag.ContinueOnError), args); err != nil {
		return err
	}
	if err := db.EnsureDatabase(ctx, cfg.DatabaseURL); err != nil {
		return err
	}
	pool, err := db.Open(ctx, cfg.DatabaseURL, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	return prepareDatabase(ctx, pool, &cfg)
}

// prepareDatabase applies the schema, River's tables with it under the same lock (whether
// or not webhooks are configured: turning them on later needs no migration), and the
// search language; `migrate` and `serve` both start here.
func prepareDatabase(ctx context.Context, pool *pgxpool.Pool, cfg *config) error {
	if err := db.Migrate(ctx, pool, chatd.Schema, notify.Migrate); err != nil {
		return err
	}
	return db.SetSearchLanguage(ctx, pool, cfg.SearchLanguage)
}

func token(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	sub := fs.String("sub", "", "the user id (sub claim)")
	name := fs.String("name", "", "display name (name claim)")
	ttl := fs.Duration("ttl", time.Hour, "lifetime")
	// The server's own configuration: the same secret (file), issuer and audience.
	var cfg config
	if err := cfg.load(fs, args); err != nil {
		return err
	}
	if cfg.JWTSecret == "" || *sub == "" {
		return errors.New("chatd token needs CHAT_JWT_SECRET and --sub")
	}
	// A service that requires iss or aud gets tokens that carry them.
	t, err := api.SignHS256For([]byte(cfg.JWTSecret), cfg.JWTIssuer, cfg.JWTAudience, *sub, *name, *ttl, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, t)
	return nil
}

// prune deletes expired tickets and events older than the retention, once a minute.
func prune(ctx context.Context, logger *slog.Logger, q *db.Queries, retention time.Duration) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := q.PruneTickets(ctx); err != nil {
			logger.Warn("prune tickets", "err", err)
		}
		if n, err := q.PruneEvents(ctx, time.Now().Add(-retention)); err != nil {
			logger.Warn("prune events", "err", err)
		} else if n > 0 {
			logger.Info("pruned events", "count", n)
		}
	}
}

// pprofMux serves the pprof endpoints, on their own address, never on the public one.
func pprofMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// serveOps serves an operator's endpoint (pprof, metrics) on an address of its own, which
// only the operators' network should reach.
func serveOps(logger *slog.Logger, name, addr string, h http.Handler) {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	logger.Info(name+" listening", "addr", addr)
	if err := srv.ListenAndServe(); err != nil {
		logger.Error(name+" server", "err", err)
	}
}

// Command chatd is the chat service: `chatd serve` runs an instance, `chatd migrate`
// applies the schema, `chatd token` prints a token for curl.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/chatd/chatd"
	"github.com/chatd/chatd/api"
	"github.com/chatd/chatd/db"
	"github.com/chatd/chatd/events"
	"github.com/chatd/chatd/web"
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
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	slog.SetDefault(logger)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(ctx, logger, os.Args[2:])
	case "migrate":
		err = migrate(ctx, os.Args[2:])
	case "token":
		err = token(os.Args[2:], os.Stdout)
	default:
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		logger.Error("chatd "+os.Args[1]+" failed", "err", err)
		os.Exit(1)
	}
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
	return db.Migrate(ctx, pool, chatd.Schema)
}

func token(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	sub := fs.String("sub", "", "the user id (sub claim)")
	name := fs.String("name", "", "display name (name claim)")
	ttl := fs.Duration("ttl", time.Hour, "lifetime")
	if err := fs.Parse(args); err != nil {
		return err
	}
	secret, _, err := jwtSecret()
	if err != nil {
		return err
	}
	if secret == "" || *sub == "" {
		return errors.New("chatd token needs CHAT_JWT_SECRET and --sub")
	}
	// A service that requires iss or aud gets tokens that carry them.
	t, err := api.SignHS256For([]byte(secret), os.Getenv("CHAT_JWT_ISSUER"), os.Getenv("CHAT_JWT_AUDIENCE"),
		*sub, *name, *ttl, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, t)
	return nil
}

func serve(ctx context.Context, logger *slog.Logger, args []string) error {
	var cfg config
	if err := cfg.load(flag.NewFlagSet("serve", flag.ContinueOnError), args); err != nil {
		return err
	}
	var devSecret []byte
	if cfg.Dev {
		_, explicit := os.LookupEnv("CHAT_COOKIE_SECURE")
		if !explicit {
			cfg.CookieSecure = false // the demo runs on plain http
		}
		b := make([]byte, 32) // load refused a configured secret
		_, _ = rand.Read(b)
		cfg.JWTSecret = hex.EncodeToString(b)
		devSecret = []byte(cfg.JWTSecret)
		logger.Warn("DEV MODE: anyone can mint a token for any user at POST /dev/token; never run this in production")
		if err := db.EnsureDatabase(ctx, cfg.DatabaseURL); err != nil {
			return err
		}
	}
	var nofile syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile) // Go raised the soft limit to the hard one
	cfg.limits(nofile.Cur)
	var pem []byte
	if cfg.JWTPublicKeyFile != "" {
		var err error
		if pem, err = os.ReadFile(cfg.JWTPublicKeyFile); err != nil {
			return err
		}
	}
	verifier, err := api.NewVerifier(ctx, api.KeyConfig{Secret: []byte(cfg.JWTSecret), PublicKeyPEM: pem,
		JWKSURL: cfg.JWKSURL, Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, Leeway: cfg.JWTLeeway})
	if err != nil {
		return fmt.Errorf("token keys: %w (set CHAT_JWT_SECRET, CHAT_JWT_PUBLIC_KEY_FILE or CHAT_JWKS_URL)", err)
	}

	pool, err := db.Open(ctx, cfg.DatabaseURL, int32(cfg.DBMaxConns))
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := db.Migrate(ctx, pool, chatd.Schema); err != nil {
		return err
	}

	// Background work lives until the HTTP server has drained, not just until the signal.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	var presence *events.Presence
	log := events.NewLog(events.Config{Pool: pool, ListenURL: cfg.ListenURL, SafetyPoll: cfg.SafetyPoll,
		StreamBuffer: cfg.StreamBuffer, StreamBufferBytes: cfg.StreamBufferKB << 10, Logger: logger,
		Online: func(ctx context.Context, users []string) map[string]bool { return presence.Online(ctx, users) }})
	hub := log.Hub()
	presence = events.NewPresence(events.PresenceConfig{Pool: pool, Instance: log.Instance(), Logger: logger,
		Publish: log.Ephemeral, Grace: cfg.PresenceGrace})
	if err := log.Start(bg); err != nil {
		return err
	}
	if err := presence.Start(bg); err != nil {
		return err
	}
	go prune(bg, logger, db.New(pool), cfg.EventRetention)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	server := api.NewServer(api.Config{
		Pool: pool, Verifier: verifier, Hub: hub, Log: log, Presence: presence, Logger: logger, Registry: reg,
		MaxRequestBytes: cfg.MaxRequestBytes, MaxMessageBytes: cfg.MaxMessageBytes, BodyTimeout: cfg.BodyTimeout,
		MaxStreams: cfg.MaxStreams,
		Heartbeat:  cfg.Heartbeat, Retry: 2 * time.Second, StreamLifetime: cfg.StreamLifetime, WriteTimeout: 10 * time.Second,
		StreamsPerUser: cfg.StreamsPerUser, WriteRate: cfg.RateLimit, WriteBurst: cfg.RateBurst,
		ReadRate: cfg.ReadRateLimit, ReadBurst: cfg.ReadRateBurst,
		CookieSecure: cfg.CookieSecure, AllowedOrigins: cfg.origins(), TicketTTL: 30 * time.Second,
		MaxPollWait: 55 * time.Second, Dev: cfg.Dev, DevSecret: devSecret, DevIssuer: cfg.JWTIssuer,
		DevAudience: cfg.JWTAudience, Web: web.FS(),
	})
	httpServer := api.NewHTTPServer(server)
	// Shutdown waits for handlers to return; ending the streams makes their clients
	// reconnect to another instance and resume by cursor.
	httpServer.RegisterOnShutdown(hub.Close)
	if cfg.DebugAddr != "" {
		go serveDebug(logger, cfg.DebugAddr)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	ln = api.LimitListener(ln, api.ConnLimits{Max: cfg.MaxConns, PerAddr: cfg.MaxConnsPerAddr, RetryAfter: 2 * time.Second})
	logger.Info("chatd listening", "addr", ln.Addr().String(), "dev", cfg.Dev,
		"max_conns", cfg.MaxConns, "max_streams", cfg.MaxStreams)
	errc := make(chan error, 1)
	go func() { errc <- httpServer.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down: ending streams, finishing requests in flight")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	err = httpServer.Shutdown(sctx)
	// Shutdown does not track the streams that took their connections over; they end as
	// soon as the hub closes, and get a moment to say so to their clients.
	_ = server.WaitStreams(sctx)
	return err
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

// serveDebug serves the pprof endpoints on their own address, never on the public one.
func serveDebug(logger *slog.Logger, addr string) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	logger.Info("pprof listening", "addr", addr)
	if err := srv.ListenAndServe(); err != nil {
		logger.Error("pprof server", "err", err)
	}
}

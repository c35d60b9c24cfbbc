package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/chatd/chatd/api"
	"github.com/chatd/chatd/db"
	"github.com/chatd/chatd/events"
	"github.com/chatd/chatd/notify"
	"github.com/chatd/chatd/web"
)

// serve runs one instance until ctx ends, then drains it: streams end at once (their
// clients resume elsewhere by cursor), requests in flight get CHAT_SHUTDOWN_TIMEOUT.
func serve(ctx context.Context, logger *slog.Logger, args []string) error {
	var cfg config
	if err := cfg.load(flag.NewFlagSet("serve", flag.ContinueOnError), args); err != nil {
		return err
	}
	devSecret, err := devMode(ctx, logger, &cfg)
	if err != nil {
		return err
	}
	var nofile syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile) // Go raised the soft limit to the hard one
	cfg.limits(nofile.Cur)
	verifier, err := newVerifier(ctx, &cfg)
	if err != nil {
		return err
	}
	serviceKeys, err := api.ParseServiceKeys(cfg.ServiceKeys)
	if err != nil {
		return fmt.Errorf("CHAT_SERVICE_KEYS: %w", err)
	}

	pool, err := db.Open(ctx, cfg.DatabaseURL, int32(cfg.DBMaxConns))
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := prepareDatabase(ctx, pool, &cfg); err != nil {
		return err
	}

	// Background work lives until the HTTP server has drained, not just until the signal.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	log, presence, err := startEvents(bg, &cfg, pool, logger)
	if err != nil {
		return err
	}
	defer func() { // a leader hands the log over before the process ends
		stopBG()
		select {
		case <-log.Stopped():
		case <-time.After(2 * time.Second):
		}
	}()
	go prune(bg, logger, db.New(pool), cfg.EventRetention)
	notifier, err := startNotifier(bg, &cfg, pool, presence, logger)
	if err != nil {
		return err
	}
	if notifier != nil {
		// After the HTTP server has drained: deliveries in flight get a moment to finish,
		// then River gives the rest to the other instances.
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = notifier.Stop(sctx)
		}()
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if notifier != nil {
		reg.MustRegister(notifier.Collectors()...)
	}
	attachmentHosts, _ := api.ParseAttachmentHosts(cfg.AttachmentHosts) // checked by load
	server := api.NewServer(api.Config{
		Pool: pool, Verifier: verifier, Hub: log.Hub(), Log: log, Presence: presence, Logger: logger, Registry: reg,
		MaxRequestBytes: cfg.MaxRequestBytes, MaxMessageBytes: cfg.MaxMessageBytes, BodyTimeout: cfg.BodyTimeout,
		MaxStreams: cfg.MaxStreams, StreamsPerUser: cfg.StreamsPerUser,
		Heartbeat: cfg.Heartbeat, Retry: 2 * time.Second, StreamLifetime: cfg.StreamLifetime, WriteTimeout: 10 * time.Second,
		WriteRate: cfg.RateLimit, WriteBurst: cfg.RateBurst, ReadRate: cfg.ReadRateLimit, ReadBurst: cfg.ReadRateBurst,
		CookieSecure: cfg.CookieSecure, AllowedOrigins: cfg.origins(), TicketTTL: 30 * time.Second,
		MaxPollWait: 55 * time.Second, Dev: cfg.Dev, DevSecret: devSecret, DevIssuer: cfg.JWTIssuer,
		DevAudience: cfg.JWTAudience, Web: web.FS(), MetricsToken: cfg.MetricsToken, ServiceKeys: serviceKeys,
		AttachmentHosts: attachmentHosts,
	})
	if cfg.DebugAddr != "" {
		go serveOps(logger, "pprof", cfg.DebugAddr, pprofMux())
	}
	if cfg.MetricsAddr != "" {
		go serveOps(logger, "metrics", cfg.MetricsAddr, server.MetricsHandler())
	}
	return listenAndServe(ctx, logger, &cfg, server, log.Hub())
}

// devMode prepares `serve -dev`: a random secret (load refused a configured one), cookies
// for plain http, the database created if missing. It returns the secret the sign-in page
// mints tokens with, nil outside dev mode.
func devMode(ctx context.Context, logger *slog.Logger, cfg *config) ([]byte, error) {
	if !cfg.Dev {
		return nil, nil
	}
	if _, explicit := os.LookupEnv("CHAT_COOKIE_SECURE"); !explicit {
		cfg.CookieSecure = false // the demo runs on plain http
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	cfg.JWTSecret = hex.EncodeToString(b)
	logger.Warn("DEV MODE: anyone can mint a token for any user at POST /dev/token; never run this in production")
	return []byte(cfg.JWTSecret), db.EnsureDatabase(ctx, cfg.DatabaseURL)
}

// newVerifier builds the token verifier from the configured keys.
func newVerifier(ctx context.Context, cfg *config) (*api.Verifier, error) {
	var pem []byte
	if cfg.JWTPublicKeyFile != "" {
		var err error
		if pem, err = os.ReadFile(cfg.JWTPublicKeyFile); err != nil {
			return nil, err
		}
	}
	verifier, err := api.NewVerifier(ctx, api.KeyConfig{Secret: []byte(cfg.JWTSecret), PublicKeyPEM: pem,
		JWKSURL: cfg.JWKSURL, Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, Leeway: cfg.JWTLeeway,
		AuthJSSecrets: cfg.authjsSecrets()})
	if err != nil {
		return nil, fmt.Errorf("token keys: %w (set CHAT_JWT_SECRET, CHAT_JWT_PUBLIC_KEY_FILE, CHAT_JWKS_URL or CHAT_AUTHJS_SECRET)", err)
	}
	return verifier, nil
}

// startEvents starts the event log (reader, listener, doorbell) and presence until bg ends.
func startEvents(bg context.Context, cfg *config, pool *pgxpool.Pool, logger *slog.Logger) (*events.Log, *events.Presence, error) {
	var presence *events.Presence
	log := events.NewLog(events.Config{Pool: pool, ListenURL: cfg.ListenURL, SafetyPoll: cfg.SafetyPoll,
		StreamBuffer: cfg.StreamBuffer, StreamBufferBytes: cfg.StreamBufferKB << 10, Logger: logger,
		Online: func(ctx context.Context, users []string) map[string]bool { return presence.Online(ctx, users) }})
	presence = events.NewPresence(events.PresenceConfig{Pool: pool, Instance: log.Instance(), Logger: logger,
		Publish: log.Ephemeral, Grace: cfg.PresenceGrace})
	if err := log.Start(bg); err != nil {
		return nil, nil, err
	}
	if err := presence.Start(bg); err != nil {
		return nil, nil, err
	}
	return log, presence, nil
}

// startNotifier starts the notification webhooks when CHAT_WEBHOOK_URL is set; nil
// otherwise. Behind PgBouncer (a listener URL of its own) River polls instead of LISTENing.
func startNotifier(bg context.Context, cfg *config, pool *pgxpool.Pool, presence *events.Presence, logger *slog.Logger) (*notify.Notifier, error) {
	if cfg.WebhookURL == "" {
		return nil, nil
	}
	secret, err := notify.ParseSecret(cfg.WebhookSecret)
	if err != nil {
		return nil, err
	}
	n, err := notify.New(notify.Config{Pool: pool, URL: cfg.WebhookURL, Secret: secret, Logger: logger,
		After: cfg.NotifyAfter, Timeout: cfg.WebhookTimeout, Backoff: cfg.WebhookBackoff,
		PresenceStale: presence.Stale(), PollOnly: cfg.ListenURL != cfg.DatabaseURL})
	if err != nil {
		return nil, err
	}
	return n, n.Start(bg)
}

// listenAndServe serves server on CHAT_ADDR, within the connection caps, until ctx ends;
// then it ends the streams (hub), lets requests in flight finish and waits for the streams
// that took their connections over.
func listenAndServe(ctx context.Context, logger *slog.Logger, cfg *config, server *api.Server, hub *events.Hub) error {
	httpServer := api.NewHTTPServer(server)
	// Shutdown waits for handlers to return; ending the streams makes their clients
	// reconnect to another instance and resume by cursor.
	httpServer.RegisterOnShutdown(hub.Close)
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

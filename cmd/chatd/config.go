package main

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/chatd/chatd/api"
	"github.com/chatd/chatd/notify"
)

// config is every setting of `chatd serve`, loaded from CHAT_* environment variables;
// each has a flag of the same meaning (CHAT_SSE_HEARTBEAT is -sse-heartbeat), which wins.
type config struct {
	Addr        string
	DatabaseURL string
	// ListenURL is the listener's own direct connection: LISTEN does not work through
	// PgBouncer's transaction pooling, so it may bypass the pooler.
	ListenURL        string
	JWTSecret        string
	JWTPublicKeyFile string
	JWKSURL          string
	JWTIssuer        string
	JWTAudience      string
	JWTLeeway        time.Duration
	AuthJSSecret     string
	Heartbeat        time.Duration
	AllowedOrigins   string
	CookieSecure     bool
	DBMaxConns       int
	MaxRequestBytes  int64
	MaxMessageBytes  int
	StreamLifetime   time.Duration
	StreamsPerUser   int
	StreamBuffer     int
	StreamBufferKB   int
	MaxStreams       int
	MaxConns         int
	MaxConnsPerAddr  int
	BodyTimeout      time.Duration
	RateLimit        float64
	RateBurst        int
	ReadRateLimit    float64
	ReadRateBurst    int
	SafetyPoll       time.Duration
	PresenceGrace    time.Duration
	EventRetention   time.Duration
	ShutdownTimeout  time.Duration
	DebugAddr        string
	MetricsAddr      string
	MetricsToken     string
	ServiceKeys      string
	SearchLanguage   string
	AttachmentHosts  string
	WebhookURL       string
	WebhookSecret    string
	NotifyAfter      time.Duration
	WebhookTimeout   time.Duration
	WebhookBackoff   time.Duration
	Dev              bool
}

// setting is one row of the settings table: name, default and why.
type setting struct {
	env, def, usage string
	target          any
}

func (c *config) settings() []setting {
	return []setting{
		{"CHAT_ADDR", ":8080", "listen address", &c.Addr},
		{"CHAT_DATABASE_URL", "postgres://127.0.0.1:5432/chat?sslmode=disable", "PostgreSQL URL", &c.DatabaseURL},
		{"CHAT_LISTEN_DATABASE_URL", "", "direct PostgreSQL URL for LISTEN (default: CHAT_DATABASE_URL; set it when the main URL goes through PgBouncer)", &c.ListenURL},
		{"CHAT_JWT_SECRET", "", "HMAC secret for HS256/384/512 tokens (or CHAT_JWT_SECRET_FILE)", &c.JWTSecret},
		{"CHAT_JWT_PUBLIC_KEY_FILE", "", "PEM public key file for RS*/PS*/ES*/EdDSA tokens", &c.JWTPublicKeyFile},
		{"CHAT_JWKS_URL", "", "JWKS URL of the token issuer", &c.JWKSURL},
		{"CHAT_JWT_ISSUER", "", "required iss claim, when set", &c.JWTIssuer},
		{"CHAT_JWT_AUDIENCE", "", "required aud claim, when set", &c.JWTAudience},
		// Clocks drift; 30 s is the contract's ceiling.
		{"CHAT_JWT_LEEWAY", "30s", "clock leeway for exp and nbf (at most 30s)", &c.JWTLeeway},
		{"CHAT_AUTHJS_SECRET", "", "the Auth.js app's AUTH_SECRET, comma-separated to rotate (current first): its session tokens are accepted (or CHAT_AUTHJS_SECRET_FILE)", &c.AuthJSSecret},
		// nginx and AWS ALB close connections idle for 60 s; four pings fit in that.
		{"CHAT_SSE_HEARTBEAT", "15s", "interval of the stream's ': ping' comment", &c.Heartbeat},
		{"CHAT_ALLOWED_ORIGINS", "", "comma-separated origins allowed by CORS", &c.AllowedOrigins},
		{"CHAT_COOKIE_SECURE", "true", "Secure attribute on the session cookie", &c.CookieSecure},
		// Streams hold no connection; the pool serves REST and replays. Two cores saturate
		// long before 20 busy connections.
		{"CHAT_DB_MAX_CONNS", "20", "database pool size of this instance (plus one listener connection)", &c.DBMaxConns},
		{"CHAT_MAX_REQUEST_BYTES", "65536", "request body cap (413 above)", &c.MaxRequestBytes},
		{"CHAT_MAX_MESSAGE_BYTES", "4096", "message body cap in bytes (422 above)", &c.MaxMessageBytes},
		// Long enough to cost nothing, short enough that a load balancer rebalances streams
		// within the hour after instances are added.
		{"CHAT_STREAM_LIFETIME", "1h", "streams end after this (±10 %) and resume elsewhere", &c.StreamLifetime},
		{"CHAT_STREAMS_PER_USER", "16", "concurrent streams and polls of one user on one instance", &c.StreamsPerUser},
		// Well beyond any burst a person causes; a stream this far behind is better resumed.
		{"CHAT_STREAM_BUFFER", "1024", "events a stream may fall behind before it is closed", &c.StreamBuffer},
		// A thousand ordinary messages, or forty of the largest: what a stream that stopped
		// reading may cost before it is closed and resumes by cursor.
		{"CHAT_STREAM_BUFFER_KB", "1024", "KiB of events a stream may fall behind before it is closed", &c.StreamBufferKB},
		// 0 picks what the process's file limit allows (see limits), so that a flood of
		// connections is refused with a 503 before the instance runs out of files.
		{"CHAT_MAX_CONNS", "0", "connections this instance holds at once, 503 above (0: the file limit less 256)", &c.MaxConns},
		{"CHAT_MAX_STREAMS", "0", "streams and polls this instance holds at once, 503 above (0: 90 % of CHAT_MAX_CONNS)", &c.MaxStreams},
		// Off by default: behind a load balancer every connection comes from its address.
		{"CHAT_MAX_CONNS_PER_ADDR", "0", "connections one client address may hold (0: no cap; only where clients connect directly)", &c.MaxConnsPerAddr},
		// Generous for any real client on a slow phone network, short enough that a client
		// announcing a body it never sends gives its connection back soon.
		{"CHAT_BODY_TIMEOUT", "10s", "a request body must arrive within this (408 after 90–100 % of it, spread per request)", &c.BodyTimeout},
		{"CHAT_RATE_LIMIT", "20", "writes per second per user (0: unlimited)", &c.RateLimit},
		{"CHAT_RATE_BURST", "40", "writes a user may make at once", &c.RateBurst},
		// A busy client reads its conversations, a page of history and unread counts a
		// few times a second; a script that counts unread messages in a loop stops here.
		{"CHAT_READ_RATE_LIMIT", "50", "reads (GETs, stream opens, polls) per second per user (0: unlimited)", &c.ReadRateLimit},
		{"CHAT_READ_RATE_BURST", "100", "reads a user may make at once", &c.ReadRateBurst},
		{"CHAT_SAFETY_POLL", "1s", "event-log read without a doorbell: the worst delay a lost notification causes", &c.SafetyPoll},
		{"CHAT_PRESENCE_GRACE", "5s", "a user stays online this long after the last stream closes", &c.PresenceGrace},
		{"CHAT_EVENT_RETENTION", "168h", "events older than this are pruned; older cursors get a reset", &c.EventRetention},
		{"CHAT_SHUTDOWN_TIMEOUT", "25s", "how long SIGTERM waits for requests in flight", &c.ShutdownTimeout},
		// Off by default: profiles reveal internals, so they get their own (private) address.
		{"CHAT_DEBUG_ADDR", "", "address of the pprof endpoints (/debug/pprof/), e.g. 127.0.0.1:6060", &c.DebugAddr},
		// Metrics tell how busy the service is and how it is used: not for everyone.
		{"CHAT_METRICS_ADDR", "", "address of /metrics for Prometheus, e.g. 127.0.0.1:9090 (no token needed there)", &c.MetricsAddr},
		// simple indexes words as written, in any language; a language's configuration
		// (english, french, ...) also finds other forms of a word but knows only that one.
		{"CHAT_SEARCH_LANGUAGE", "simple", "text search configuration of message search (a name in pg_ts_config); a change rebuilds the search index at start", &c.SearchLanguage},
		// None by default: an attachment points the recipients' browsers at a host, so only
		// the application's own storage should be allowed.
		{"CHAT_ATTACHMENT_HOSTS", "", "comma-separated hosts (host or host:port) that attachment URLs may point to; none: attachments are refused", &c.AttachmentHosts},
		{"CHAT_METRICS_TOKEN", "", "Bearer token that opens /metrics on the public address (unset: 404 there)", &c.MetricsToken},
		// No default: without keys the server API answers 401 to everyone.
		{"CHAT_SERVICE_KEYS", "", "server API keys, comma-separated name:key pairs, keys of 32+ characters (or CHAT_SERVICE_KEYS_FILE)", &c.ServiceKeys},
		{"CHAT_WEBHOOK_URL", "", "receiver of unread-digest webhooks (unset: no webhooks)", &c.WebhookURL},
		{"CHAT_WEBHOOK_SECRET", "", "webhook signing secret, whsec_<base64> or raw, at least 16 bytes (or CHAT_WEBHOOK_SECRET_FILE)", &c.WebhookSecret},
		// A minute: long enough that someone who just switched tabs or lost the network
		// for a moment is not told by email, short enough to still be news.
		{"CHAT_NOTIFY_AFTER", "60s", "a user away this long with unread messages gets a digest webhook", &c.NotifyAfter},
		{"CHAT_WEBHOOK_TIMEOUT", "10s", "one webhook attempt, connection to answer", &c.WebhookTimeout},
		// Doubling from 10 s to a cap of 1 h takes about 28 attempts to fill the 24 h of
		// retries: a receiver's short hiccup costs seconds, a long outage little traffic.
		{"CHAT_WEBHOOK_BACKOFF", "10s", "wait before a webhook's first retry, doubled after each failure up to 1h, for 24h", &c.WebhookBackoff},
	}
}

// load fills c from the environment, then from args (flags mirror the variables).
func (c *config) load(fs *flag.FlagSet, args []string) error {
	explicit := make(map[string]bool) // settings given by a variable or a flag
	for _, s := range c.settings() {
		v, ok := os.LookupEnv(s.env)
		if !ok {
			v = s.def
		}
		if secretSettings[s.env] && !ok {
			secret, fromFile, err := secretSetting(s.env)
			if err != nil {
				return err
			}
			if fromFile {
				v, ok = secret, true
			}
		}
		explicit[s.env] = ok
		if err := set(s.target, v); err != nil {
			return fmt.Errorf("%s=%q: %w", s.env, v, err)
		}
		name := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s.env, "CHAT_")), "_", "-")
		fs.Func(name, s.usage+" ($"+s.env+")", func(v string) error {
			explicit[s.env] = true
			return set(s.target, v)
		})
	}
	fs.BoolVar(&c.Dev, "dev", false, "demo mode on loopback: random secret, plain-http cookies, a sign-in page that mints tokens for any name; never for production")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.ListenURL == "" {
		c.ListenURL = c.DatabaseURL
	}
	if c.Dev {
		// Dev mode lets anyone mint a token for anyone: keep it off the network unless an
		// address is asked for, and never let it mint tokens with a real secret.
		if !explicit["CHAT_ADDR"] {
			c.Addr = devAddr
		}
		if explicit["CHAT_JWT_SECRET"] {
			return errors.New("-dev refuses to start with CHAT_JWT_SECRET or CHAT_JWT_SECRET_FILE set: " +
				"its sign-in page mints tokens for any user with that secret; unset it (dev mode picks a random one)")
		}
	}
	return c.validate()
}

// devAddr is where -dev listens unless CHAT_ADDR or -addr says otherwise: loopback only.
const devAddr = "127.0.0.1:8080"

// secretSettings are the settings that may also come from a file, named by the variable
// with _FILE appended, so that a secret need not sit in the environment.
var secretSettings = map[string]bool{"CHAT_JWT_SECRET": true, "CHAT_AUTHJS_SECRET": true, "CHAT_WEBHOOK_SECRET": true,
	"CHAT_SERVICE_KEYS": true}

// secretSetting reads the variable env, or the file env_FILE names without its trailing line
// break (editors and `echo` add one); given reports whether either was set. `serve` and
// `token` both read secrets here, so they always agree on them.
func secretSetting(env string) (secret string, given bool, err error) {
	if v, ok := os.LookupEnv(env); ok {
		return v, true, nil
	}
	file := os.Getenv(env + "_FILE")
	if file == "" {
		return "", false, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", true, fmt.Errorf("%s_FILE: %w", env, err)
	}
	return strings.TrimRight(string(b), "\r\n"), true, nil
}

func set(target any, v string) error {
	var err error
	switch t := target.(type) {
	case *string:
		*t = v
	case *bool:
		*t, err = strconv.ParseBool(v)
	case *int:
		*t, err = strconv.Atoi(v)
	case *int64:
		*t, err = strconv.ParseInt(v, 10, 64)
	case *float64:
		*t, err = strconv.ParseFloat(v, 64)
	case *time.Duration:
		*t, err = time.ParseDuration(v)
	default:
		panic(fmt.Sprintf("unsupported setting type %T", target))
	}
	return err
}

// validate fails fast on settings that cannot work.
func (c *config) validate() error {
	var errs []error
	check := func(ok bool, msg string) {
		if !ok {
			errs = append(errs, errors.New(msg))
		}
	}
	check(c.Heartbeat >= time.Second && c.Heartbeat <= time.Minute, "CHAT_SSE_HEARTBEAT must be between 1s and 1m")
	check(c.JWTLeeway >= 0 && c.JWTLeeway <= 30*time.Second, "CHAT_JWT_LEEWAY must be between 0 and 30s")
	check(c.DBMaxConns >= 2, "CHAT_DB_MAX_CONNS must be at least 2")
	check(c.MaxRequestBytes >= 1024, "CHAT_MAX_REQUEST_BYTES must be at least 1024")
	check(c.MaxMessageBytes >= 1 && int64(c.MaxMessageBytes) < c.MaxRequestBytes, "CHAT_MAX_MESSAGE_BYTES must be positive and below CHAT_MAX_REQUEST_BYTES")
	check(c.StreamLifetime >= time.Minute, "CHAT_STREAM_LIFETIME must be at least 1m")
	check(c.StreamsPerUser >= 1, "CHAT_STREAMS_PER_USER must be at least 1")
	check(c.StreamBuffer >= 16, "CHAT_STREAM_BUFFER must be at least 16")
	check(c.StreamBufferKB >= 64, "CHAT_STREAM_BUFFER_KB must be at least 64 (a message is up to CHAT_MAX_MESSAGE_BYTES, escaped)")
	check(c.MaxConns >= 0 && c.MaxStreams >= 0 && c.MaxConnsPerAddr >= 0, "CHAT_MAX_CONNS, CHAT_MAX_STREAMS and CHAT_MAX_CONNS_PER_ADDR must be 0 or more")
	check(c.BodyTimeout >= time.Second && c.BodyTimeout <= 5*time.Minute, "CHAT_BODY_TIMEOUT must be between 1s and 5m")
	check(c.RateLimit >= 0 && c.RateBurst >= 1, "CHAT_RATE_LIMIT must be 0 or more and CHAT_RATE_BURST at least 1")
	check(c.ReadRateLimit >= 0 && c.ReadRateBurst >= 1, "CHAT_READ_RATE_LIMIT must be 0 or more and CHAT_READ_RATE_BURST at least 1")
	check(c.SafetyPoll >= 10*time.Millisecond && c.SafetyPoll <= time.Minute, "CHAT_SAFETY_POLL must be between 10ms and 1m")
	check(c.PresenceGrace >= 0 && c.PresenceGrace <= time.Minute, "CHAT_PRESENCE_GRACE must be between 0 and 1m")
	check(c.EventRetention >= time.Hour, "CHAT_EVENT_RETENTION must be at least 1h")
	check(c.DatabaseURL != "", "CHAT_DATABASE_URL is required")
	if _, err := api.ParseAttachmentHosts(c.AttachmentHosts); err != nil {
		errs = append(errs, fmt.Errorf("CHAT_ATTACHMENT_HOSTS: %w", err))
	}
	if _, err := api.ParseServiceKeys(c.ServiceKeys); err != nil {
		errs = append(errs, fmt.Errorf("CHAT_SERVICE_KEYS: %w", err)) // the error names keys, never quotes one
	}
	check(c.AuthJSSecret == "" || len(c.authjsSecrets()) > 0, "CHAT_AUTHJS_SECRET lists no secret")
	errs = append(errs, c.validateWebhooks()...)
	return errors.Join(errs...)
}

// validateWebhooks checks the webhook settings: both or neither of the URL and the
// secret, an http(s) URL, a secret the signer accepts, sane durations.
func (c *config) validateWebhooks() []error {
	if c.WebhookURL == "" && c.WebhookSecret == "" {
		return nil
	}
	var errs []error
	if c.WebhookURL == "" || c.WebhookSecret == "" {
		errs = append(errs, errors.New("CHAT_WEBHOOK_URL and CHAT_WEBHOOK_SECRET (or CHAT_WEBHOOK_SECRET_FILE) go together"))
	}
	if u, err := url.Parse(c.WebhookURL); c.WebhookURL != "" && (err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "") {
		errs = append(errs, errors.New("CHAT_WEBHOOK_URL must be an http or https URL"))
	}
	if c.WebhookSecret != "" {
		if _, err := notify.ParseSecret(c.WebhookSecret); err != nil {
			errs = append(errs, fmt.Errorf("CHAT_WEBHOOK_SECRET: %w", err)) // says why, never the secret
		}
	}
	if c.NotifyAfter < time.Second || c.NotifyAfter > 24*time.Hour {
		errs = append(errs, errors.New("CHAT_NOTIFY_AFTER must be between 1s and 24h"))
	}
	if c.WebhookTimeout < time.Second || c.WebhookTimeout > time.Minute {
		errs = append(errs, errors.New("CHAT_WEBHOOK_TIMEOUT must be between 1s and 1m"))
	}
	if c.WebhookBackoff < 100*time.Millisecond || c.WebhookBackoff > time.Hour {
		errs = append(errs, errors.New("CHAT_WEBHOOK_BACKOFF must be between 100ms and 1h"))
	}
	return errs
}

// limits fills in the connection and stream caps left at 0 from the file limit: a few
// hundred files stay free for the database pool, the listener and logs.
func (c *config) limits(fileLimit uint64) {
	if c.MaxConns == 0 {
		c.MaxConns = max(64, int(min(fileLimit, 1<<30))-256)
	}
	if c.MaxStreams == 0 {
		c.MaxStreams = max(1, c.MaxConns*9/10) // the rest for REST requests
	}
}

// origins splits CHAT_ALLOWED_ORIGINS.
func (c *config) origins() []string {
	var out []string
	for _, o := range strings.Split(c.AllowedOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			out = append(out, o)
		}
	}
	return out
}

// authjsSecrets splits CHAT_AUTHJS_SECRET: Auth.js secrets (base64 or hex, as `npx auth
// secret` and `openssl rand` make them) never hold a comma.
func (c *config) authjsSecrets() [][]byte {
	var out [][]byte
	for _, s := range strings.Split(c.AuthJSSecret, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, []byte(s))
		}
	}
	return out
}

// Package api is chatd's HTTP interface: the route table, authentication, the REST
// handlers, the event stream and its long-poll fallback, and error rendering.
package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/chatd/chatd"
	"github.com/chatd/chatd/db"
	"github.com/chatd/chatd/events"
)

// Config is everything the HTTP layer needs; cmd/chatd fills it from the environment.
type Config struct {
	Pool     *pgxpool.Pool
	Verifier *Verifier
	Hub      *events.Hub
	Log      *events.Log
	Presence *events.Presence
	Logger   *slog.Logger
	// Registry receives the HTTP metrics; nil means a private registry.
	Registry *prometheus.Registry

	MaxRequestBytes int64         // request body cap (413 above it)
	BodyTimeout     time.Duration // a request body must arrive within this (408 after 90–100 % of it); 0: no limit
	MaxMessageBytes int           // message body cap (422 above it)
	Heartbeat       time.Duration // SSE comment interval
	Retry           time.Duration // SSE reconnect delay sent to clients
	StreamLifetime  time.Duration // streams end after this (±10 %) so load balancers rebalance
	StreamsPerUser  int           // concurrent streams of one user on one instance
	MaxStreams      int           // concurrent streams of this instance (503 above it); 0: no cap
	WriteTimeout    time.Duration // a stream write blocked this long ends the stream
	WriteRate       float64       // writes per second per user (token bucket refill)
	WriteBurst      int           // writes a user may make at once
	ReadRate        float64       // reads per second per user, streams and polls included (0: unlimited)
	ReadBurst       int           // reads a user may make at once
	CookieSecure    bool
	AllowedOrigins  []string
	TicketTTL       time.Duration
	MaxPollWait     time.Duration
	Dev             bool // serve the dev sign-in page that mints tokens
	DevSecret       []byte
	DevIssuer       string // iss and aud of dev tokens, when the service requires them
	DevAudience     string
	Now             func() time.Time
	Web             http.FileSystem // the browser client served at /
	// ServiceKeys open the server API (/v1/server); nil or empty, it answers 401 to all.
	ServiceKeys *ServiceKeys
	// MetricsToken lets /metrics answer on the public address to requests that carry it as
	// a Bearer token; empty, /metrics answers only on its own address (MetricsHandler).
	MetricsToken string
	// AttachmentHosts are the hosts (host or host:port, as ParseAttachmentHosts reads them)
	// that attachment URLs may point to; none: every attachment is refused.
	AttachmentHosts []string
}

// Server is the HTTP interface of one chatd instance.
type Server struct {
	cfg     Config
	q       *db.Queries
	sender  *db.Sender // every send goes through it: concurrent sends share a commit
	log     *slog.Logger
	now     func() time.Time
	engine  *gin.Engine
	limits  *rateLimiter // writes
	reads   *rateLimiter
	streams *streamCounter
	users   *userCache
	metrics *metrics
	csp     string // the web page's Content-Security-Policy
	// page is index.html as served (webIndex), made once.
	page     []byte
	pageErr  error
	pageOnce sync.Once
	// detached counts the streams that live on after their handler returned (hijacked
	// connections), which http.Server.Shutdown does not know about.
	detached sync.WaitGroup
}

// NewServer builds the route table over cfg.
func NewServer(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	s := &Server{
		cfg:     cfg,
		q:       db.New(cfg.Pool),
		sender:  db.NewSender(cfg.Pool, db.SenderConfig{}),
		log:     cfg.Logger,
		now:     cfg.Now,
		limits:  newRateLimiter(cfg.WriteRate, cfg.WriteBurst),
		reads:   newRateLimiter(cfg.ReadRate, cfg.ReadBurst),
		streams: newStreamCounter(cfg.StreamsPerUser, cfg.MaxStreams),
		users:   newUserCache(poolSize(cfg.Pool)),
		metrics: newMetrics(cfg.Registry, cfg.Hub, cfg.Log, cfg.Pool),
		csp:     webCSP(cfg.AttachmentHosts),
	}
	s.engine = s.routes()
	return s
}

// Routes lists the route table (the contract test compares it with openapi.yaml).
func (s *Server) Routes() gin.RoutesInfo { return s.engine.Routes() }

// WaitStreams waits until every hijacked stream has ended (after the hub closed them, at
// shutdown), or ctx ends.
func (s *Server) WaitStreams(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.detached.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.engine.ServeHTTP(w, r) }

// routes is the one route table: public routes, then authenticated ones.
func (s *Server) routes() *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	// Unknown ids and odd paths get the JSON 404, never a redirect or an HTML page; routing
	// on the raw path keeps an encoded slash inside its segment.
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleMethodNotAllowed = true
	r.UseRawPath = true
	r.UnescapePathValues = true
	r.ContextWithFallback = true
	r.NoRoute(s.handle(func(*gin.Context) error { return errNotFound }))
	r.NoMethod(s.handle(func(*gin.Context) error {
		return errorf("method_not_allowed", "method not allowed")
	}))
	r.Use(s.guardBody, s.observe, s.recover, s.cors)

	// get routes GET and HEAD alike (HEAD is a safe method clients and probes use).
	get := func(g gin.IRoutes, path string, h ...gin.HandlerFunc) {
		g.GET(path, h...)
		g.HEAD(path, h...)
	}
	get(r, "/healthz", s.handle(s.healthz))
	get(r, "/readyz", s.handle(s.readyz))
	r.GET("/openapi.yaml", func(c *gin.Context) { c.Data(http.StatusOK, "application/yaml", chatd.OpenAPI) })
	r.GET("/metrics", s.handle(s.publicMetrics))
	r.DELETE("/v1/session", s.handle(s.deleteSession))
	if s.cfg.Web != nil {
		r.GET("/", s.webHeaders, s.handle(s.webIndex))
		r.GET("/web/*file", s.webHeaders, gin.WrapH(http.StripPrefix("/web", http.FileServer(s.cfg.Web))))
	}
	if s.cfg.Dev {
		r.POST("/dev/token", s.handle(s.devToken))
	}

	// Routes that write the event log ring the doorbell when they end (s.ring), whatever
	// the handler did: a forgotten ring would delay delivery to the safety poll unseen.
	// Writes and reads have separate budgets per user: reads are cheaper and more frequent,
	// but each still costs the database (unread counts, history), so neither is unlimited.
	v1 := r.Group("/v1", s.refuseServiceKey, s.authenticate)
	v1.POST("/session", s.handle(s.createSession))
	v1.POST("/tickets", s.limit, s.handle(s.createTicket))
	v1.GET("/events", s.limitReads, s.handle(s.stream))
	v1.GET("/events/poll", s.limitReads, s.handle(s.poll))
	get(v1, "/unread", s.limitReads, s.handle(s.unread))
	get(v1, "/presence", s.limitReads, s.handle(s.presence))
	v1.POST("/conversations", s.limit, s.ring, s.handle(s.createConversation))
	get(v1, "/conversations", s.limitReads, s.handle(s.listConversations))
	get(v1, "/conversations/:id", s.limitReads, s.handle(s.getConversation))
	v1.POST("/conversations/:id/messages", s.limit, s.ring, s.handle(s.sendMessage))
	get(v1, "/conversations/:id/messages", s.limitReads, s.handle(s.listMessages))
	v1.PATCH("/conversations/:id/messages/:message_id", s.limit, s.ring, s.handle(s.editMessage))
	v1.DELETE("/conversations/:id/messages/:message_id", s.limit, s.ring, s.handle(s.deleteMessage))
	v1.POST("/conversations/:id/read", s.limit, s.ring, s.handle(s.markRead))
	v1.POST("/conversations/:id/typing", s.limit, s.handle(s.typing))
	get(v1, "/search", s.limitReads, s.handle(s.search))
	v1.DELETE("/conversations/:id/members/me", s.limit, s.ring, s.handle(s.leave))

	// The server API, for the application's backend: service keys only (servicekeys.go),
	// and no per-user rate limits (the backend acts for all its users).
	sv := r.Group("/v1/server", s.authenticateService)
	sv.POST("/conversations", s.ring, s.handle(s.createServerConversation))
	get(sv, "/conversations", s.handle(s.findServerConversation))
	sv.POST("/conversations/:id/messages", s.ring, s.handle(s.sendSystemMessage))
	sv.POST("/conversations/:id/close", s.handle(s.closeConversation))
	sv.POST("/conversations/:id/members", s.ring, s.handle(s.addMembers))
	sv.DELETE("/conversations/:id/members/:user_id", s.ring, s.handle(s.removeMember))
	sv.PUT("/users/:id/notifications", s.handle(s.setNotifications))
	return r
}

// ring wakes this instance's log reader and the other instances' once the request's
// transaction has ended, committed or not (see events.Log.Written).
func (s *Server) ring(c *gin.Context) {
	c.Next()
	s.cfg.Log.Written()
}

const ctxRequestID = "chatd.request_id"

func requestID(c *gin.Context) string { return c.GetString(ctxRequestID) }

// observe gives each request an id, logs one line when it ends and counts it.
func (s *Server) observe(c *gin.Context) {
	start := s.now().UnixNano()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	c.Set(ctxRequestID, id)
	c.Header("X-Request-Id", id)
	c.Next()
	s.logRequest(c, start)
	s.metrics.observe(c, start, s.now().UnixNano())
}

// recover turns a panic into a logged 500 rather than a dropped connection.
func (s *Server) recover(c *gin.Context) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("panic", "request_id", requestID(c), "panic", v)
			s.renderError(c, errorf("internal", "internal error (request id %s)", requestID(c)))
		}
	}()
	c.Next()
}

// cors answers browsers on the configured origins. A listed origin may send credentials
// (the session cookie is one way to authenticate); "*" allows any origin, but never with
// credentials, so a cookie can not be read cross-site. Other origins get no CORS headers.
func (s *Server) cors(c *gin.Context) {
	origin := c.GetHeader("Origin")
	if len(s.cfg.AllowedOrigins) > 0 {
		// The answer depends on the Origin header (CORS headers or none), so caches must
		// key on it, whatever this request's origin.
		c.Writer.Header().Add("Vary", "Origin")
	}
	if origin == "" {
		c.Next()
		return
	}
	listed, any := false, false
	for _, o := range s.cfg.AllowedOrigins {
		listed = listed || o == origin
		any = any || o == "*"
	}
	if !listed && !any {
		c.Next()
		return
	}
	h := c.Writer.Header()
	if listed {
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
	} else {
		h.Set("Access-Control-Allow-Origin", "*")
	}
	if c.Request.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "GET, POST, PATCH, DELETE")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID, "+chatRequestHeader)
		h.Set("Access-Control-Max-Age", "600")
		c.AbortWithStatus(http.StatusNoContent)
		return
	}
	c.Next()
}

func (s *Server) healthz(c *gin.Context) error {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
	return nil
}

// readyz is 503 while the database is unreachable or the listener is down: an instance
// without its listener would deliver events only at the safety poll.
func (s *Server) readyz(c *gin.Context) error {
	if err := s.cfg.Pool.Ping(c); err != nil {
		return &Error{Code: "database_unavailable",
			Message: "database unreachable", RetryAfter: retryUnavailable}
	}
	if s.cfg.Log == nil || !s.cfg.Log.Listening() {
		return &Error{Code: "listener_down",
			Message: "event listener not connected", RetryAfter: retryUnavailable}
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
	return nil
}

// poolSize is how many connections pool may open (0 without a pool, as in route tests).
func poolSize(pool *pgxpool.Pool) int {
	if pool == nil {
		return 0
	}
	return int(pool.Config().MaxConns)
}

package api

import (
	"context"
	"crypto/subtle"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/chatd/chatd/db"
	"github.com/chatd/chatd/events"
)

// metrics are the Prometheus series of the HTTP layer.
type metrics struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	slowStreams prometheus.Counter
}

func newMetrics(reg *prometheus.Registry, hub *events.Hub, log *events.Log, pool *pgxpool.Pool) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_http_requests_total", Help: "HTTP requests by route and status.",
		}, []string{"method", "route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "chatd_http_request_duration_seconds", Help: "HTTP request duration (streams excluded).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"method", "route"}),
		slowStreams: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chatd_slow_streams_closed_total", Help: "Streams closed because they fell too far behind.",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.slowStreams)
	if hub != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "chatd_streams_open", Help: "Event streams and long polls open on this instance.",
		}, func() float64 { return float64(hub.Streams()) }))
	}
	if pool != nil {
		fence := &cachedGauge{ttl: fenceCacheTTL, now: time.Now, read: func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			age, err := db.New(pool).OldestWriteTransaction(ctx)
			if err != nil {
				return -1
			}
			return age
		}}
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "chatd_db_connections", Help: "Connections in the pool (the listener's own is not counted).",
			}, func() float64 { return float64(pool.Stat().TotalConns()) }),
			// A request that finds every connection busy waits: how often, and how long in
			// all, says whether the pool is what delays requests.
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "chatd_db_acquire_waits_total", Help: "Pool acquires that found no idle connection and waited.",
			}, func() float64 { return float64(pool.Stat().EmptyAcquireCount()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "chatd_db_acquire_wait_seconds_total", Help: "Time pool acquires spent waiting for a connection.",
			}, func() float64 { return pool.Stat().EmptyAcquireWaitTime().Seconds() }),
			// The event log's fence waits for the oldest transaction that holds an id,
			// anywhere in the cluster: this is how late delivery can be right now.
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "chatd_fence_oldest_transaction_seconds",
				Help: "Age of the oldest transaction holding a transaction id in the cluster (-1: unknown), at most 5 s old.",
			}, fence.get),
		)
	}
	if log != nil {
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "chatd_listener_up", Help: "1 while the LISTEN connection is up.",
			}, func() float64 {
				if log.Listening() {
					return 1
				}
				return 0
			}),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "chatd_events_read_total", Help: "Durable events read from the log, or received from the leader, and fanned out.",
			}, func() float64 { return float64(log.Published()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "chatd_doorbell_rings_total", Help: "Writes that woke the log readers of every instance.",
			}, func() float64 { return float64(log.Rings()) }),
			// One instance of the cluster reads the log for all; the others read it only to
			// fill gaps, so their reads stay near zero while a leader forwards.
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "chatd_log_leader", Help: "1 while this instance reads the event log for every instance.",
			}, func() float64 {
				if log.Leading() {
					return 1
				}
				return 0
			}),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "chatd_log_reads_total", Help: "Queries of the event log made by this instance's reader.",
			}, func() float64 { return float64(log.Reads()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "chatd_log_resignations_total", Help: "Times this instance let the reader lock go because its reads of the event log kept failing.",
			}, func() float64 { return float64(log.Resignations()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "chatd_log_forwards_lost_total", Help: "Forwards of the log not sent (leader) or not taken (follower); their ranges were read again.",
			}, func() float64 { return float64(log.LostForwards()) }),
		)
	}
	return m
}

// MetricsHandler serves the Prometheus metrics, for an address of their own
// (CHAT_METRICS_ADDR) that only the monitoring network reaches.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{})
}

// publicMetrics is /metrics on the public address: metrics say how busy the service is and
// who is connected how often, so they answer only to the configured metrics token, and
// not at all without one.
func (s *Server) publicMetrics(c *gin.Context) error {
	if s.cfg.MetricsToken == "" {
		return errNotFound
	}
	want := []byte("Bearer " + s.cfg.MetricsToken)
	if subtle.ConstantTimeCompare([]byte(c.GetHeader("Authorization")), want) != 1 {
		return errUnauthenticated
	}
	s.MetricsHandler().ServeHTTP(c.Writer, c.Request)
	return nil
}

// fenceCacheTTL is how long a scan of pg_stat_activity answers scrapes: however often
// /metrics is asked, the cluster-wide scan runs at most once per interval.
const fenceCacheTTL = 5 * time.Second

// cachedGauge is a gauge whose reading is expensive: read at most once per ttl, and by one
// scrape at a time.
type cachedGauge struct {
	ttl  time.Duration
	now  func() time.Time
	read func() float64

	mu    sync.Mutex
	at    time.Time
	value float64
}

func (g *cachedGauge) get() float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if now := g.now(); g.at.IsZero() || now.Sub(g.at) >= g.ttl {
		g.value, g.at = g.read(), now
	}
	return g.value
}

func (m *metrics) observe(c *gin.Context, startNanos, endNanos int64) {
	route := c.FullPath()
	if route == "" {
		route = "unmatched" // never the raw path: ids would explode the series
	}
	m.requests.WithLabelValues(c.Request.Method, route, strconv.Itoa(c.Writer.Status())).Inc()
	if route != "/v1/events" && route != "/v1/events/poll" {
		m.duration.WithLabelValues(c.Request.Method, route).Observe(float64(endNanos-startNanos) / 1e9)
	}
}

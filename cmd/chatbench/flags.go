// Command chatbench is chatd's load tool. It creates users and direct (1:1) conversations
// through the public API, opens event streams (two per conversation, one per participant),
// posts messages and checks that every accepted message reaches every recipient stream
// exactly once: loss is counted, not assumed.
//
// Run chatd with the same secret and without the per-user write limit:
//
//	CHAT_JWT_SECRET=s CHAT_METRICS_TOKEN=m CHAT_RATE_LIMIT=0 chatd serve
//
// Modes (-mode):
//
//	load   open -streams S streams, post at -rate R msgs/s for -duration, open loop: message
//	       i is sent at start+i/R whatever the earlier replies do, so queueing shows up as
//	       latency. At most -clients POSTs are in flight; a message due while all are busy is
//	       not sent and is counted as "client overload". Then waits (up to -drain) until every
//	       accepted message has reached both participants' streams. Reports POST latency
//	       (reply time minus scheduled time), POST->delivery latency (arrival minus scheduled
//	       time), throughput, server RSS per stream and PostgreSQL connections.
//	idle   open S streams and hold them for -idle-for: server RSS per stream, idle CPU of the
//	       server, heartbeat gaps against -heartbeat (on time = max gap <= heartbeat + 2s).
//	storm  open S streams, close them all, post -missed messages into every conversation,
//	       reconnect all S streams at once with Last-Event-ID and time until every stream has
//	       received exactly its missed messages.
//	faults starts its own processes (faults.go; faults.sh builds and runs it, as CI does):
//	       two chatd instances (-chatd) on loopback ports and a scratch database; posts
//	       steadily while it kills one instance with SIGKILL and then restarts PostgreSQL
//	       (-pg-ctl); then checks that every acknowledged message reached each recipient's
//	       stream and the history exactly once. -url is not used.
//	slowread, slowclients, soak: hostile clients and a long mixed run against chatd
//	       processes of their own (-chatd), like faults; hostile.sh and soak.sh run them.
//	       See slowread.go, slowclients.go and soak.go.
//
// After creating the conversations, chatbench waits until the instances' log readers have
// fanned out the conversation events (chatd_events_read_total), so the measurements that
// follow do not include that backlog; the table reports how long it took.
//
// -db (chatd's database URL) samples pg_stat_activity every 100 ms: chatd's pool
// connections (application_name chatd; "busy" = not idle) and listeners (chatd_listener),
// judged against -pool-cap per instance, and the oldest transaction holding a transaction
// id anywhere in the cluster, which holds back chatd's delivery fence.
//
// -pgbench also runs issue 9's reference against -db before the load: pgbench -M prepared,
// single-row INSERTs of a message-sized row (-body-bytes of body) into a scratch table,
// -pgbench-clients/-jobs/-time (8, 2, 10s); the service's accepted msgs/s is reported as a
// ratio to its tps. -mode pgbench runs the reference alone.
//
// -pg-cost (load, with -db on this machine) measures what the load phase cost: each
// instance's CPU, PostgreSQL's CPU from /proc, and per 1,000 accepted messages its
// transactions and rows (pg_stat_database) and, when the server preloads
// pg_stat_statements, its statements' calls. throughput.sh ramps the rate with it over
// several instances, and -mode throughput-plot draws the ramp's summary.
//
// A message is posted to the instance its sender's stream is on, so with two or more
// instances every recipient's stream is on another instance; "held" (the rate held) is at
// least 99 % of the scheduled messages delivered to their recipient with a recipient
// delivery p99 of at most 1 s.
//
// Streams are spread over the -url instances (comma-separated) and, for loopback targets,
// over the source addresses 127.0.0.2 ... 127.0.0.(1+sources), so that many thousands of
// streams do not run out of ephemeral ports. Message bodies are "<scheduled unix nanos>
// <message index>" padded with dots to -body-bytes; user ids are "<run-id>-<i>-a" and
// "<run-id>-<i>-b".
//
// Examples:
//
//	chatbench -secret s -streams 200 -rate 500 -duration 10s -db postgres://127.0.0.1/chat -pgbench -plot load.png -json load.json
//	chatbench -secret s -mode idle -streams 15000 -idle-for 60s -heartbeat 15s
//	chatbench -secret s -mode storm -streams 5000 -missed 20 -db postgres://127.0.0.1/chat
//
// Output: a table on stdout, the same figures as JSON (-json), and a PNG plot (-plot): latency
// and throughput per second (load), streams caught up over time (storm), heartbeat gaps (idle).
// Exit status: 0 when nothing was lost or duplicated, 1 when something was (or a stream
// received a misrouted, out-of-order or reset event, or a storm stream did not catch up),
// 2 for usage or setup errors.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// options are the command-line flags.
type options struct {
	urls   []string
	secret string
	// metricsToken opens chatd's /metrics on its public address (CHAT_METRICS_TOKEN).
	metricsToken string
	mode         string
	streams      int
	rate         float64
	duration     time.Duration
	clients      int
	sources      int
	dbURL        string
	jsonPath     string
	plotPath     string
	missed       int
	idleFor      time.Duration
	heartbeat    time.Duration
	drain        time.Duration
	pgbench      bool
	runID        string
	poolCap      int
	bodyBytes    int // message bodies padded to this many bytes; pgbench's row body too

	// pgbench's reference (-pgbench, -mode pgbench): issue 9's single-row INSERT,
	// -M prepared -c 8 -j 2 -T 10 by default.
	pgbenchClients int
	pgbenchJobs    int
	pgbenchTime    time.Duration

	// -pg-cost: what the load phase cost PostgreSQL and the instances (cost.go).
	pgCost   bool
	pgSettle time.Duration

	summaryPath string // -mode throughput-plot: throughput.sh's summary.json

	// -mode faults
	chatdBin string
	pgCtl    string
	pgServer string
	pgDown   time.Duration
	pooler   string // host:port of a PgBouncer in transaction mode for the instances' pools
	workDir  string
	phases   string
	timeout  time.Duration

	// -mode slowread, slowclients, soak (hostile.go)
	attackers    int
	attackerNice int    // slowclients: >= 0 runs the attackers apart (-mode attackers) at this niceness
	attackOther  bool   // slowclients: the attackers connect to a second instance of their own
	attackerCPUs string // slowclients: taskset's CPU list for the attackers' process
	flood        int
	soakFor      time.Duration
	sampleEvery  time.Duration
	csvPath      string
}

// parseFlags parses the command line and validates the flags of the chosen mode.
func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("chatbench", flag.ContinueOnError)
	urls := o.define(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: chatbench [flags]   (see `go doc ./cmd/chatbench` for the modes)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if err := o.parseURLs(*urls); err != nil {
		return o, err
	}
	if o.runID == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		o.runID = "cb" + hex.EncodeToString(b)
	}
	if o.mode == "faults" {
		return o, o.checkFaults()
	}
	if o.mode == "pgbench" {
		return o, o.checkPgbench()
	}
	if o.mode == "throughput-plot" {
		if o.summaryPath == "" || o.plotPath == "" {
			return o, errors.New("-mode throughput-plot needs -summary and -plot")
		}
		return o, nil
	}
	if hostileModes[o.mode] != nil {
		return o, o.checkHostile()
	}
	if o.mode == "attackers" {
		return o, o.checkAttackers()
	}
	return o, o.check()
}

// define registers every flag on fs, each filling its field of o; it returns the raw -url
// list, which parseURLs checks once fs has parsed.
func (o *options) define(fs *flag.FlagSet) *string {
	urls := fs.String("url", "http://127.0.0.1:8080", "comma-separated base URLs of chatd instances (streams and POSTs are spread over them)")
	fs.StringVar(&o.secret, "secret", os.Getenv("CHAT_JWT_SECRET"), "HS256 secret the server runs with (default $CHAT_JWT_SECRET)")
	fs.StringVar(&o.metricsToken, "metrics-token", os.Getenv("CHAT_METRICS_TOKEN"), "the server's CHAT_METRICS_TOKEN, to read /metrics (default $CHAT_METRICS_TOKEN; the modes that run chatd set their own)")
	fs.StringVar(&o.mode, "mode", "load", "load, idle, storm, pgbench (the reference alone), throughput-plot, faults, slowread, slowclients or soak (attackers: slowclients' own, with -attacker-nice)")
	fs.IntVar(&o.streams, "streams", 200, "event streams to open: two per 1:1 conversation, so streams/2 conversations")
	fs.Float64Var(&o.rate, "rate", 500, "load: target messages per second (open loop)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "load: how long to post (and pgbench's run time)")
	fs.IntVar(&o.clients, "clients", 64, "POSTs in flight at most (more are counted as client overload)")
	fs.IntVar(&o.bodyBytes, "body-bytes", 100, "load, storm: pad each message body to this many bytes (its \"<nanos> <index>\" head is kept); also pgbench's row body")
	fs.IntVar(&o.pgbenchClients, "pgbench-clients", 8, "pgbench's reference: clients (-c)")
	fs.IntVar(&o.pgbenchJobs, "pgbench-jobs", 2, "pgbench's reference: threads (-j)")
	fs.DurationVar(&o.pgbenchTime, "pgbench-time", 10*time.Second, "pgbench's reference: run time (-T, whole seconds)")
	fs.BoolVar(&o.pgCost, "pg-cost", false, "load: with -db, measure what the load phase cost: PostgreSQL CPU (/proc, same machine), its transactions and rows (pg_stat_database) and statements (pg_stat_statements when loaded) per 1,000 messages, CPU per instance")
	fs.StringVar(&o.summaryPath, "summary", "", "throughput-plot: throughput.sh's summary.json to draw (-plot names the PNG)")
	fs.DurationVar(&o.pgSettle, "pg-settle", 11*time.Second, "-pg-cost: idle wait before and after the load phase, so that PostgreSQL's backends have flushed their statistics (an idle backend flushes within 10 s)")
	fs.IntVar(&o.sources, "sources", 8, "loopback source addresses for stream sockets, 127.0.0.2 onwards (0: let the kernel choose)")
	fs.StringVar(&o.dbURL, "db", "", "PostgreSQL URL of chatd's database, for connection counts and -pgbench (optional)")
	fs.StringVar(&o.jsonPath, "json", "", "write the results as JSON to this file")
	fs.StringVar(&o.plotPath, "plot", "", "write a PNG plot to this file")
	fs.IntVar(&o.missed, "missed", 20, "storm: messages posted into every conversation while its streams are closed")
	fs.DurationVar(&o.idleFor, "idle-for", 60*time.Second, "idle: how long to hold the streams open")
	fs.DurationVar(&o.heartbeat, "heartbeat", 15*time.Second, "the server's heartbeat interval (CHAT_SSE_HEARTBEAT), to judge gaps")
	fs.DurationVar(&o.drain, "drain", 15*time.Second, "load: how long to wait for deliveries after the last reply (the storm waits up to 60s)")
	fs.BoolVar(&o.pgbench, "pgbench", false, "load: also run the pgbench reference (single-row INSERTs, -M prepared, -pgbench-*) against -db before the load, for a throughput ratio")
	fs.IntVar(&o.poolCap, "pool-cap", 20, "the server's CHAT_DB_MAX_CONNS per instance, to judge -db connection counts")
	fs.StringVar(&o.runID, "run-id", "", "prefix of user ids (default: random), so runs never collide")
	fs.StringVar(&o.chatdBin, "chatd", "", "faults: the chatd binary to run")
	fs.StringVar(&o.pgCtl, "pg-ctl", "", `faults: command that stops and starts PostgreSQL when "stop" or "start" is appended, e.g. "pg_ctlcluster --skip-systemctl-redirect 15 main"`)
	fs.StringVar(&o.pgServer, "pg", "postgres://127.0.0.1:5432/postgres?sslmode=disable", "faults: PostgreSQL server to create the scratch database on (loopback only)")
	fs.StringVar(&o.pooler, "pgbouncer", "", "faults: host:port of a PgBouncer in transaction mode that serves the scratch database (faults.sh starts one with -pgbouncer): the instances' pools go through it with default_query_exec_mode=exec, their listeners and chatd migrate go to -pg directly, as the README says")
	fs.DurationVar(&o.pgDown, "pg-down", 3*time.Second, "faults: how long PostgreSQL stays stopped")
	fs.StringVar(&o.workDir, "work-dir", "", "faults: directory for chatd logs and the pid file (default: a new temporary one)")
	fs.StringVar(&o.phases, "phases", "kill,term,pg", "faults: which faults to inject, in this order: kill (SIGKILL of the instance reading the log), term (SIGTERM of the instance reading the log, as in a rolling deploy), pg (PostgreSQL restart)")
	fs.DurationVar(&o.timeout, "timeout", 85*time.Second, "faults: the whole run, cleanup excluded, ends after this")
	fs.IntVar(&o.attackers, "attackers", 0, "slowread, slowclients: attacker connections (default 2000, 5000)")
	fs.IntVar(&o.attackerNice, "attacker-nice", -1, "slowclients: run the attacker connections in a process of their own (-mode attackers) at this niceness, 0 to 19, apart from the normal users (-1: in this process)")
	fs.BoolVar(&o.attackOther, "attack-other-instance", false, "slowclients: start a second chatd on the same database for the attackers (with -attacker-nice), so that the normal users' instance does none of their work")
	fs.StringVar(&o.attackerCPUs, "attacker-cpus", "", "slowclients: with -attacker-nice, run the attackers' process on these CPUs only (taskset -c), e.g. 1 while chatd, PostgreSQL and this process run on 0")
	fs.IntVar(&o.flood, "flood", 600, "slowread: messages of 4,096 '<' the senders post")
	fs.DurationVar(&o.soakFor, "soak-for", 10*time.Minute, "soak: how long the mixed load runs")
	fs.DurationVar(&o.sampleEvery, "sample-every", 5*time.Second, "soak: how often each instance is sampled")
	fs.StringVar(&o.csvPath, "csv", "", "soak: write the samples to this CSV file")
	return urls
}

// parseURLs splits the comma-separated -url list, dropping empty entries and trailing
// slashes; streams speak plain HTTP/1.1, so only http URLs with a host are accepted.
func (o *options) parseURLs(urls string) error {
	for _, u := range strings.Split(urls, ",") {
		u = strings.TrimRight(strings.TrimSpace(u), "/")
		if u == "" {
			continue
		}
		pu, err := url.Parse(u)
		if err != nil || pu.Scheme != "http" || pu.Host == "" {
			return fmt.Errorf("-url %q: want http://host:port (streams use plain HTTP/1.1)", u)
		}
		o.urls = append(o.urls, u)
	}
	return nil
}

// check validates the flags of -mode load, idle and storm.
func (o *options) check() error {
	switch {
	case len(o.urls) == 0 || len(o.urls) > 255:
		return errors.New("-url: give 1 to 255 instances")
	case o.secret == "":
		return errors.New("-secret (or $CHAT_JWT_SECRET) is required: the server's CHAT_JWT_SECRET")
	case o.mode != "load" && o.mode != "idle" && o.mode != "storm":
		return fmt.Errorf("-mode %q: want load, idle, storm or faults", o.mode)
	case o.streams < 2 || o.streams%2 != 0:
		return errors.New("-streams must be even and at least 2 (two per conversation)")
	case o.mode == "load" && (o.rate <= 0 || o.duration <= 0):
		return errors.New("-rate and -duration must be positive")
	case o.clients < 1:
		return errors.New("-clients must be at least 1")
	case o.sources < 0 || o.sources > 250:
		return errors.New("-sources must be between 0 and 250")
	case o.missed < 1 && o.mode == "storm":
		return errors.New("-missed must be at least 1")
	case (o.pgbench || o.pgCost) && o.dbURL == "":
		return errors.New("-pgbench and -pg-cost need -db")
	case o.bodyBytes < 0 || o.bodyBytes > 4096:
		return errors.New("-body-bytes must be between 0 and 4096 (chatd's default body limit)")
	case strings.ContainsAny(o.runID, " \"\\/"):
		return errors.New("-run-id must not contain spaces, quotes or slashes")
	case o.pgbench:
		return o.checkPgbench()
	}
	return nil
}

// checkPgbench validates the reference's flags (-pgbench and -mode pgbench).
func (o *options) checkPgbench() error {
	switch {
	case o.dbURL == "":
		return errors.New("-mode pgbench needs -db")
	case o.pgbenchClients < 1 || o.pgbenchJobs < 1 || o.pgbenchJobs > o.pgbenchClients:
		return errors.New("-pgbench-clients must be at least 1, -pgbench-jobs between 1 and the clients")
	case o.pgbenchTime < time.Second:
		return errors.New("-pgbench-time must be at least 1s")
	case o.bodyBytes < 1 || o.bodyBytes > 4096:
		return errors.New("-body-bytes must be between 1 and 4096")
	}
	return nil
}

// checkAttackers validates the flags of -mode attackers, which slowclients passes.
func (o *options) checkAttackers() error {
	switch {
	case len(o.urls) != 1:
		return errors.New("-mode attackers: give one -url")
	case o.secret == "":
		return errors.New("-mode attackers: $CHAT_JWT_SECRET is required")
	case o.attackers < 1:
		return errors.New("-mode attackers: -attackers must be positive")
	case o.sources < 1 || o.sources > 250:
		return errors.New("-sources must be between 1 and 250: the attackers need source addresses")
	}
	return nil
}

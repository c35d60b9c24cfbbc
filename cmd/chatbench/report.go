package main

import (
	"encoding/json"
	"math"
	"os"
	"slices"
	"time"
)

// Result is everything a run measured; printed as a table and written as JSON.
type Result struct {
	Mode      string   `json:"mode"`
	RunID     string   `json:"run_id"`
	Instances []string `json:"instances"`
	Streams   int      `json:"streams"`
	Clients   int      `json:"clients"`
	Sources   int      `json:"sources"`
	FileLimit uint64   `json:"file_limit"`

	SetupReaderS     float64 `json:"setup_reader_s"` // setup start .. the server had fanned out its conversation events
	StreamsReady     int64   `json:"streams_ready"`
	StreamOpenErrors int64   `json:"stream_open_errors"`
	StreamDrops      int64   `json:"stream_drops"`
	StreamError      string  `json:"stream_error,omitempty"`
	OpenSeconds      float64 `json:"open_seconds"`
	Resets           int64   `json:"resets"`

	Load      *LoadResult      `json:"load,omitempty"`
	Storm     *StormResult     `json:"storm,omitempty"`
	Delivery  *DeliveryResult  `json:"delivery,omitempty"`
	Server    ServerResult     `json:"server"`
	Heartbeat *HeartbeatResult `json:"heartbeat,omitempty"`
	DB        *DBResult        `json:"db,omitempty"`
	Pgbench   *PgbenchResult   `json:"pgbench,omitempty"`
	Cost      *CostResult      `json:"cost,omitempty"`

	Budgets  []Budget `json:"budgets"`
	Failures []string `json:"failures"`
}

// Quantiles of a latency, in milliseconds.
type Quantiles struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

type LoadResult struct {
	TargetRate        float64          `json:"target_msgs_per_s"`
	AchievedRate      float64          `json:"achieved_msgs_per_s"` // accepted / (first send .. last reply)
	DurationS         float64          `json:"duration_s"`
	Scheduled         int64            `json:"scheduled"`
	Sent              int64            `json:"sent"`
	Accepted          int64            `json:"accepted"`
	Rejected          int64            `json:"rejected"`
	RejectedByStatus  map[string]int64 `json:"rejected_by_status,omitempty"`
	Errors            int64            `json:"errors"`
	Overload          int64            `json:"client_overload"`
	FirstError        string           `json:"first_error,omitempty"`
	SchedulerLagMaxMs float64          `json:"scheduler_lag_max_ms"`
	DrainS            float64          `json:"drain_s"` // last reply .. all delivered
	PostLatency       *Quantiles       `json:"post_latency"`
	DeliveryLatency   *Quantiles       `json:"delivery_latency"`
	// With several instances: deliveries by a stream on the instance the message was
	// posted to, and on another one (the cross-instance path). A message is posted to its
	// sender's instance and its recipient's stream is on another, so "other instance" is
	// the recipients' figure and "same instance" the senders' own copies.
	DeliverySameInstance  *Quantiles `json:"delivery_latency_same_instance,omitempty"`
	DeliveryOtherInstance *Quantiles `json:"delivery_latency_other_instance,omitempty"`
	// Deliveries to the recipient's stream (not the sender's own copy), whatever the
	// instances: the figure "held" is judged on.
	DeliveryRecipient  *Quantiles `json:"delivery_latency_recipient"`
	RecipientDelivered int64      `json:"recipient_delivered"`          // scheduled messages that reached their recipient
	RecipientFraction  float64    `json:"recipient_delivered_fraction"` // of scheduled (overload and rejections count as not delivered)
	Held               bool       `json:"held"`
	HeldWhy            string     `json:"held_why"`
}

type StormResult struct {
	Missed       int        `json:"missed_per_conversation"`
	Posted       int64      `json:"posted"`
	Accepted     int64      `json:"accepted"`
	PostS        float64    `json:"post_s"`
	Reconnected  int64      `json:"reconnected"`
	CaughtUp     int64      `json:"caught_up"`
	AllCaughtUpS float64    `json:"all_caught_up_s"` // -1: not all within the wait
	Ready        *Quantiles `json:"ready"`           // reconnection .. `event: ready`, per stream
	CatchUp      *Quantiles `json:"catch_up"`        // reconnection .. last missed message, per stream
	FirstError   string     `json:"first_error,omitempty"`
	// The server's log reader at the reconnection: events not yet fanned out (from
	// chatd_events_read_total), and when it had read them all (-1: not within the wait).
	ReaderBehind float64 `json:"reader_behind_at_reconnect"`
	ReaderDoneS  float64 `json:"reader_done_s"`
}

type DeliveryResult struct {
	Expected       int64 `json:"expected"`  // 2 per accepted message
	Delivered      int64 `json:"delivered"` // of those, arrived (duplicates not counted)
	Lost           int64 `json:"lost"`
	Duplicates     int64 `json:"duplicates"`
	Misrouted      int64 `json:"misrouted"`
	SeqErrors      int64 `json:"seq_errors"`
	Unparsed       int64 `json:"unparsed"`
	Unacknowledged int64 `json:"unacknowledged"` // deliveries of messages whose POST did not answer 201
}

type ServerResult struct {
	RSSBaselineMiB     float64 `json:"rss_baseline_mib"`
	RSSOpenMiB         float64 `json:"rss_open_mib"`
	RSSEndMiB          float64 `json:"rss_end_mib"`
	RSSPerStreamKiB    float64 `json:"rss_per_stream_kib"`     // (open - baseline) / streams
	RSSPerStreamEndKiB float64 `json:"rss_per_stream_end_kib"` // (end - baseline) / streams
	StreamsOpen        float64 `json:"streams_open"`           // chatd_streams_open with the streams open
	CPUPercent         float64 `json:"cpu_percent"`            // of one core: idle window / load phase / storm
	ToolCPUPercent     float64 `json:"chatbench_cpu_percent"`
	ToolMaxRSSMiB      float64 `json:"chatbench_max_rss_mib"`
	Error              string  `json:"error,omitempty"`
}

type HeartbeatResult struct {
	ExpectedS float64 `json:"expected_s"`
	MaxGapS   float64 `json:"max_gap_s"` // per stream: the longest time without a ping
	P99GapS   float64 `json:"p99_gap_s"`
	P50GapS   float64 `json:"p50_gap_s"`
	Late      int     `json:"late_streams"` // max gap > expected + 2 s
	Pings     int64   `json:"pings"`
	OnTime    bool    `json:"on_time"`
}

type DBResult struct {
	Before      int    `json:"pool_before_streams"`
	WithStreams int    `json:"pool_with_streams"`
	AtEnd       int    `json:"pool_at_end,omitempty"`
	PoolMax     int    `json:"pool_max"`
	BusyMax     int    `json:"busy_max"`
	ListenerMax int    `json:"listener_max"`
	Samples     int    `json:"samples"`
	Error       string `json:"error,omitempty"`
	// The oldest open write transaction seen anywhere in the cluster (it holds back
	// chatd's delivery fence), seconds, and its database/application.
	OldestWriteXactS   float64 `json:"oldest_write_xact_s"`
	OldestWriteXactWho string  `json:"oldest_write_xact_who,omitempty"`
}

// PgbenchResult is the reference: pgbench's single-row INSERT of a message-sized row.
type PgbenchResult struct {
	Clients   int     `json:"clients"`
	Jobs      int     `json:"jobs"`
	Protocol  string  `json:"protocol"` // pgbench -M
	Seconds   int     `json:"seconds"`
	BodyBytes int     `json:"body_bytes"`
	TPS       float64 `json:"tps"`
	Ratio     float64 `json:"service_ratio"` // accepted msgs/s ÷ tps
	Error     string  `json:"error,omitempty"`
}

// Budget is one of the budgets, judged on this run.
type Budget struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	OK    bool   `json:"ok"`
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }

// quantiles sorts ns (nanoseconds) and returns its nearest-rank quantiles in ms.
func quantiles(ns []int64) *Quantiles {
	if len(ns) == 0 {
		return nil
	}
	slices.Sort(ns)
	return &Quantiles{N: len(ns), P50: ms(rank(ns, 0.50)), P90: ms(rank(ns, 0.90)), P99: ms(rank(ns, 0.99)), Max: ms(ns[len(ns)-1])}
}

// rank is the nearest-rank q-quantile of sorted values.
func rank(sorted []int64, q float64) int64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func pct(cpu, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return 100 * cpu.Seconds() / wall.Seconds()
}

func writeJSON(path string, r any) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

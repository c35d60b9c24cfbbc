package notify

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/db"
)

// The notification rule, case by case, on the state a check reads.
func TestDecide(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) *time.Time { v := now.Add(-d); return &v }
	away := db.NotifyStateRow{NotifyWebhook: true, Unread: true, DbNow: now}
	with := func(f func(*db.NotifyStateRow)) db.NotifyStateRow { s := away; f(&s); return s }
	const after = time.Minute
	for name, tc := range map[string]struct {
		st   db.NotifyStateRow
		want verdict
	}{
		"never seen, unread":       {away, verdict{send: true}},
		"away long enough":         {with(func(s *db.NotifyStateRow) { s.LastSeenAt = ago(2 * after) }), verdict{send: true}},
		"left 20s ago":             {with(func(s *db.NotifyStateRow) { s.LastSeenAt = ago(20 * time.Second) }), verdict{recheck: 40 * time.Second}},
		"online":                   {with(func(s *db.NotifyStateRow) { s.Online = true }), verdict{recheck: after}},
		"nothing unread":           {with(func(s *db.NotifyStateRow) { s.Unread = false }), verdict{}},
		"opted out":                {with(func(s *db.NotifyStateRow) { s.NotifyWebhook = false }), verdict{}},
		"notified, never seen":     {with(func(s *db.NotifyStateRow) { s.NotifiedAt = ago(time.Hour) }), verdict{}},
		"notified, not seen since": {with(func(s *db.NotifyStateRow) { s.LastSeenAt = ago(3 * time.Hour); s.NotifiedAt = ago(2 * time.Hour) }), verdict{}},
		"notified, back and gone":  {with(func(s *db.NotifyStateRow) { s.NotifiedAt = ago(3 * time.Hour); s.LastSeenAt = ago(2 * time.Hour) }), verdict{send: true}},
		"opted out while online":   {with(func(s *db.NotifyStateRow) { s.NotifyWebhook = false; s.Online = true }), verdict{}},
	} {
		require.Equal(t, tc.want, decide(tc.st, true, after), name)
	}
	require.Equal(t, verdict{}, decide(away, false, after), "unknown user")
}

// The retry schedule: doubling from Backoff, capped at MaxBackoff, 10 % jitter at most,
// and never past the give-up time.
func TestRetrySchedule(t *testing.T) {
	n, err := New(Config{Pool: &pgxpool.Pool{}, URL: "http://x", Secret: testKey})
	require.NoError(t, err)
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	n.now = func() time.Time { return now }
	w := &deliverWorker{n: n}
	created := now.Add(-time.Hour)
	for attempt, want := range map[int]time.Duration{1: 10 * time.Second, 2: 20 * time.Second, 4: 80 * time.Second,
		9: 2560 * time.Second, 10: time.Hour, 300: time.Hour} {
		job := &river.Job[deliverArgs]{JobRow: &rivertype.JobRow{Attempt: attempt, CreatedAt: created}}
		got := w.NextRetry(job).Sub(now)
		require.GreaterOrEqual(t, got, want, "attempt %d", attempt)
		require.LessOrEqual(t, got, want+want/10, "attempt %d", attempt)
	}
	late := &river.Job[deliverArgs]{JobRow: &rivertype.JobRow{Attempt: 30, CreatedAt: now.Add(-23*time.Hour - 50*time.Minute)}}
	require.Equal(t, now.Add(10*time.Minute), w.NextRetry(late), "the last attempt falls on the give-up time")
}

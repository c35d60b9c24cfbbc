package api

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The fence gauge scans pg_stat_activity: however often /metrics is scraped, the scan runs
// at most once per interval.
func TestCachedGaugeReadsAtMostOncePerInterval(t *testing.T) {
	now := time.Unix(1000, 0)
	reads := 0
	g := &cachedGauge{ttl: 5 * time.Second, now: func() time.Time { return now }, read: func() float64 {
		reads++
		return float64(reads)
	}}
	for range 100 {
		require.Equal(t, 1.0, g.get())
	}
	now = now.Add(4999 * time.Millisecond)
	require.Equal(t, 1.0, g.get())
	now = now.Add(time.Millisecond)
	require.Equal(t, 2.0, g.get())
	require.Equal(t, 2, reads)
}

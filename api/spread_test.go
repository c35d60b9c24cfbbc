package api

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

// Bodies stalled together do not all time out together: each gets between 90 % and 100 %
// of CHAT_BODY_TIMEOUT, so a client that opened thousands at once does not get thousands of
// answers, and reconnect thousands of times, in one instant.
func TestStalledBodiesTimeOutSpreadOverATenth(t *testing.T) {
	const timeout = time.Second
	in := newInstance(t, func(c *Config, _ *events.Config) { c.BodyTimeout = timeout })
	alice := newUser(t, in, "alice")
	const n = 20
	var mu sync.Mutex
	var took []time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	for range n {
		conn := rawRequest(t, in.URL, "POST /v1/conversations HTTP/1.1\r\nAuthorization: Bearer "+alice.Token+
			"\r\nContent-Type: application/json\r\nContent-Length: 1000", `{"participant_id":`)
		wg.Go(func() {
			res, closed := answer(t, conn, 5*time.Second)
			mu.Lock()
			defer mu.Unlock()
			if res.StatusCode == 408 && closed {
				took = append(took, time.Since(start))
			}
		})
	}
	wg.Wait()
	require.Len(t, took, n, "every stalled body gets 408 and its connection closed")
	requireSpread(t, took, timeout, time.Second)
}

// requireSpread checks that times measured from before their deadlines were set lie
// between 90 % of d and d plus late (what may come before the deadline and after it on a
// busy machine), and are not bunched together: 20 times drawn evenly over a tenth of d
// fall within 3 % of d of each other with a chance below 10⁻⁹.
func requireSpread(t *testing.T, times []time.Duration, d, late time.Duration) {
	t.Helper()
	lo, hi := slices.Min(times), slices.Max(times)
	require.GreaterOrEqual(t, lo, d*9/10, "none before 90 %% of %v", d)
	require.Less(t, hi, d+late, "none long after %v", d)
	require.Greater(t, hi-lo, d*3/100, "spread over the last tenth of %v, not all at once: %v", d, times)
}

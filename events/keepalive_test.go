package events

import (
	"context"
	"net/url"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestListenerConnectionIsKeptAliveBriefly: the server side of the listener connection,
// which holds the reader lock while its instance leads, probes the client after 10 s idle
// instead of the system's two hours, so a leader whose host vanishes lets go of the lock
// within about half a minute. Read from the kernel (ss) on the server's side of the socket.
func TestListenerConnectionIsKeptAliveBriefly(t *testing.T) {
	ss, err := exec.LookPath("ss")
	if err != nil {
		t.Skip("needs ss (iproute2) to read the server's socket")
	}
	u, err := url.Parse(testDB)
	require.NoError(t, err)
	if u.Hostname() != "127.0.0.1" && u.Hostname() != "localhost" {
		t.Skip("needs the test server on loopback TCP to read its side of the socket")
	}
	serverPort := u.Port()
	if serverPort == "" {
		serverPort = "5432"
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool := testPool(t)
	// Only this test's listener: one an earlier test left may be closing.
	listeners := func() map[int]bool {
		rows, err := pool.Query(ctx, `SELECT client_port FROM pg_stat_activity
			WHERE application_name = 'chatd_listener' AND datname = current_database() AND client_port IS NOT NULL`)
		require.NoError(t, err)
		ports := map[int]bool{}
		for rows.Next() {
			var p int
			require.NoError(t, rows.Scan(&p))
			ports[p] = true
		}
		require.NoError(t, rows.Err())
		return ports
	}
	before := listeners()
	log := NewLog(Config{Pool: pool, ListenURL: testDB, SafetyPoll: time.Hour})
	require.NoError(t, log.Start(ctx))
	require.Eventually(t, log.Listening, 10*time.Second, 5*time.Millisecond)

	var ports []int
	for p := range listeners() {
		if !before[p] {
			ports = append(ports, p)
		}
	}
	require.Len(t, ports, 1, "this test's listener, over TCP")
	timer := regexp.MustCompile(`timer:\(keepalive,([0-9.]+)(ms|sec|min)`)
	for _, p := range ports {
		// Right after a query the socket's timer is the retransmission one, until the client
		// acknowledges the answer; the keepalive timer follows.
		var out []byte
		var m [][]byte
		require.Eventually(t, func() bool {
			out, err = exec.Command(ss, "-tnoH", "state", "established",
				"( sport = :"+serverPort+" and dport = :"+strconv.Itoa(p)+" )").Output()
			m = timer.FindSubmatch(out)
			return err == nil && m != nil
		}, 5*time.Second, 20*time.Millisecond, "no keepalive timer on the server's side of port %d: %s", p, out)
		v, err := strconv.ParseFloat(string(m[1]), 64)
		require.NoError(t, err)
		wait := time.Duration(v * float64(map[string]time.Duration{"ms": time.Millisecond, "sec": time.Second, "min": time.Minute}[string(m[2])]))
		require.LessOrEqual(t, wait, 10*time.Second, "keepalive probe due in %s: %s", wait, out)
	}
}

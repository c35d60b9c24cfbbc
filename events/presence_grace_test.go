package events

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// TestPresenceGraceInFakeTime checks the grace period in deterministic time
// (testing/synctest): after the last stream closes a user stays online here for exactly
// the grace, a reconnect within it leaves nothing to write, and when it ends the user is
// queued for the writer once. Only the in-memory half of Presence is involved: the writer
// and the heartbeat talk to PostgreSQL, whose network I/O synctest cannot wait for, so
// they are tested against the real database in the api package.
func TestPresenceGraceInFakeTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const grace = 5 * time.Second
		p := &Presence{grace: grace, local: map[string]int{}, leaving: map[string]*time.Timer{},
			dirty: map[string]bool{}, kick: make(chan struct{}, 1)}
		// state is what the writer would see now (online here, queued, woken), and takes
		// the queue as the writer's flush does.
		type state struct{ online, queued, woken bool }
		now := func() state {
			synctest.Wait() // every timer due by now has run
			p.mu.Lock()
			defer p.mu.Unlock()
			s := state{online: p.onlineHereLocked("u"), queued: p.dirty["u"]}
			select {
			case <-p.kick:
				s.woken = true
			default:
			}
			p.dirty = map[string]bool{}
			return s
		}

		p.Connect("u")
		require.Equal(t, state{online: true, queued: true, woken: true}, now(), "the first stream is news")
		p.Connect("u")
		p.Disconnect("u")
		require.Equal(t, state{online: true}, now(), "a second stream, opened or closed, is not")

		p.Disconnect("u")
		time.Sleep(grace - time.Nanosecond)
		require.Equal(t, state{online: true}, now(), "online until the grace period ends")
		p.Connect("u")
		time.Sleep(2 * grace)
		require.Equal(t, state{online: true}, now(), "a reconnect within the grace period is invisible")

		p.Disconnect("u")
		time.Sleep(grace - time.Nanosecond)
		require.Equal(t, state{online: true}, now())
		time.Sleep(time.Nanosecond)
		require.Equal(t, state{queued: true, woken: true}, now(), "offline the moment the grace period ends")
		time.Sleep(2 * grace)
		require.Equal(t, state{}, now(), "and queued once")
	})
}

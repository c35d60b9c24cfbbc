package api

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

func TestResumeAfterGapDeliversExactlyTheMissedEventsThenLive(t *testing.T) {
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)
	s, cursor := openReady(t, in.URL+"/v1/events", bob.Token, nil)
	s.close()

	for i := 1; i <= 100; i++ {
		alice.send(conv.ID, fmt.Sprintf("missed %d", i))
	}
	s, ready := openReady(t, in.URL+"/v1/events", bob.Token, map[string]string{"Last-Event-ID": cursor})
	require.Equal(t, cursor, ready)
	for i := 1; i <= 100; i++ {
		ev := s.nextOf("message", wait) // the conversation event may come first
		m := decode[events.Message](t, ev.Data)
		require.Equal(t, int64(i), m.Seq)
		require.Equal(t, fmt.Sprintf("missed %d", i), m.Body)
	}
	live := alice.send(conv.ID, "live")
	ev := s.nextOf("message", wait)
	require.Equal(t, live.ID, decode[events.Message](t, ev.Data).ID)
	require.Equal(t, int64(101), decode[events.Message](t, ev.Data).Seq)

	// The query parameter resumes a new EventSource from a stored cursor the same way.
	s2, _ := openReady(t, in.URL+"/v1/events?last_event_id="+ev.LastID, bob.Token, nil)
	alice.send(conv.ID, "after stored cursor")
	require.Equal(t, int64(102), decode[events.Message](t, s2.nextOf("message", wait).Data).Seq)
}

func TestBadCursorResetsAndContinuesLive(t *testing.T) {
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)
	for _, tc := range []struct{ cursor, reason string }{
		{"not-a-cursor", "malformed"},
		{"01_1", "malformed"},
		{"999999999999_1", "unknown"},
		{"99999999999_99999999999", "unknown"},
	} {
		s, ready := openReady(t, in.URL+"/v1/events", bob.Token, map[string]string{"Last-Event-ID": tc.cursor})
		ev := s.next(wait)
		require.Equal(t, "reset", ev.Type, tc.cursor)
		require.False(t, ev.HasID)
		reset := decode[events.Reset](t, ev.Data)
		require.Equal(t, tc.reason, reset.Reason)
		require.Equal(t, ready, reset.Cursor)
		require.Equal(t, ready, ev.LastID, "a reconnect after a reset resumes from the head, not the bad cursor")
		m := alice.send(conv.ID, "live after reset")
		require.Equal(t, m.ID, decode[events.Message](t, s.nextOf("message", wait).Data).ID)
		s.close()
	}
}

func TestExpiredCursorResets(t *testing.T) {
	in := newInstance(t)
	alice, bob := newUser(t, in, "alice"), newUser(t, in, "bob")
	conv := alice.direct(bob)
	s, old := openReady(t, in.URL+"/v1/events", bob.Token, nil)
	alice.send(conv.ID, "soon pruned")
	pruned := s.nextOf("message", wait).LastID
	s.close()
	// Retention pruned everything up to the message: old is behind the floor now. (Setting
	// the floor rather than deleting keeps the events other tests are reading.)
	floor, err := events.ParseCursor(pruned)
	require.NoError(t, err)
	var was events.Cursor
	require.NoError(t, in.Pool.QueryRow(context.Background(), "SELECT tx::text::bigint, id FROM event_floor").Scan(&was.Tx, &was.ID))
	_, err = in.Pool.Exec(context.Background(), "UPDATE event_floor SET tx = $1::text::xid8, id = $2", fmt.Sprint(floor.Tx), floor.ID)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = in.Pool.Exec(context.Background(), "UPDATE event_floor SET tx = $1::text::xid8, id = $2", fmt.Sprint(was.Tx), was.ID)
	})
	s, _ = openReady(t, in.URL+"/v1/events", bob.Token, map[string]string{"Last-Event-ID": old})
	ev := s.next(wait)
	require.Equal(t, "reset", ev.Type)
	require.Equal(t, "expired", decode[events.Reset](t, ev.Data).Reason)
	// The floor itself is still a valid place to resume from.
	s, ready := openReady(t, in.URL+"/v1/events", bob.Token, map[string]string{"Last-Event-ID": pruned})
	require.Equal(t, pruned, ready)
	s.close()
}

package events

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func durable(tx uint64, id int64, to ...string) *Event {
	return &Event{Cursor: Cursor{Tx: tx, ID: id}, Type: "message", Data: []byte(`{}`), Recipients: to}
}

func TestHubRoutesToRecipientsInOrder(t *testing.T) {
	h := NewHub(Limit{Events: 100})
	alice, _ := h.Subscribe("alice")
	alice2, _ := h.Subscribe("alice")
	bob, _ := h.Subscribe("bob")
	h.Publish([]*Event{durable(1, 1, "alice", "bob"), durable(1, 2, "bob"), durable(2, 3, "alice")})
	h.Publish([]*Event{{Type: "typing", Recipients: []string{"alice", "bob"}, Except: "bob"}})

	for _, s := range []*Subscriber{alice, alice2} {
		evs, done, _ := s.Take()
		require.False(t, done)
		require.Len(t, evs, 3)
		require.Equal(t, Cursor{1, 1}, evs[0].Cursor)
		require.Equal(t, Cursor{2, 3}, evs[1].Cursor)
		require.Equal(t, "typing", evs[2].Type)
	}
	evs, _, _ := bob.Take()
	require.Len(t, evs, 2, "bob is the typist: no typing event for him")
	require.Equal(t, Cursor{2, 3}, h.Head())
}

func TestHubSkipsWhatItAlreadyPublished(t *testing.T) {
	h := NewHub(Limit{Events: 100})
	s, head := h.Subscribe("alice")
	require.True(t, head.IsZero())
	h.Publish([]*Event{durable(1, 1, "alice"), durable(1, 2, "alice")})
	h.Publish([]*Event{durable(1, 2, "alice"), durable(1, 3, "alice")}) // a re-read after a reconnect
	evs, _, _ := s.Take()
	require.Len(t, evs, 3)
}

func TestHubCutsOffASubscriberThatFallsBehind(t *testing.T) {
	h := NewHub(Limit{Events: 16})
	slow, _ := h.Subscribe("alice")
	fast, _ := h.Subscribe("alice")
	for i := int64(1); i <= 1000; i++ {
		h.Publish([]*Event{durable(1, i, "alice")})
		if evs, _, _ := fast.Take(); len(evs) != 1 {
			t.Fatalf("fast subscriber got %d events", len(evs))
		}
		slow.mu.Lock()
		require.LessOrEqual(t, len(slow.pending), 16, "a subscriber's buffer never grows past the limit")
		slow.mu.Unlock()
	}
	evs, done, overflowed := slow.Take()
	require.Empty(t, evs)
	require.True(t, done)
	require.True(t, overflowed)
	<-slow.Ready()
}

func TestHubCloseEndsSubscribers(t *testing.T) {
	h := NewHub(Limit{Events: 16})
	s, _ := h.Subscribe("alice")
	h.Close()
	<-s.Ready()
	_, done, overflowed := s.Take()
	require.True(t, done)
	require.False(t, overflowed)
	late, _ := h.Subscribe("bob")
	_, done, _ = late.Take()
	require.True(t, done, "a closed hub refuses new subscribers")
	require.Equal(t, 0, h.Streams())
}

// BenchmarkHubFanOut publishes one event to a user with two streams among 10,000 idle
// users, the shape of a 1:1 message on a busy instance.
func BenchmarkHubFanOut(b *testing.B) {
	h := NewHub(Limit{Events: 1 << 30})
	for i := 0; i < 10_000; i++ {
		h.Subscribe(fmt.Sprintf("user%d", i))
	}
	a, _ := h.Subscribe("alice")
	bob, _ := h.Subscribe("bob")
	b.ReportAllocs()
	var id int64
	for b.Loop() {
		id++
		h.Publish([]*Event{durable(1, id, "alice", "bob")})
		a.Take()
		bob.Take()
	}
}

// TestPackFitsNotifications: queued ephemeral events go out packed into as few
// notifications as fit under PostgreSQL's payload limit, all of them, in order.
func TestPackFitsNotifications(t *testing.T) {
	l := NewLog(Config{})
	first := []byte(`{"from":"x","type":"typing","data":{"n":0},"recipients":["a"]}`)
	for i := 1; i < 400; i++ {
		l.ephemeral <- []byte(fmt.Sprintf(`{"from":"x","type":"typing","data":{"n":%d},"recipients":["a"]}`, i))
	}
	var got []int
	payloads := 0
	for next := first; next != nil || len(l.ephemeral) > 0; payloads++ {
		if next == nil {
			next = <-l.ephemeral
		}
		p := l.pack(next)
		require.LessOrEqual(t, len(p), maxPayload)
		var msgs []struct {
			Data struct{ N int } `json:"data"`
		}
		require.NoError(t, json.Unmarshal([]byte(p), &msgs))
		for _, m := range msgs {
			got = append(got, m.Data.N)
		}
		next, l.carry = l.carry, nil
	}
	require.Len(t, got, 400)
	for i, n := range got {
		require.Equal(t, i, n)
	}
	require.Less(t, payloads, 10, "packed, not one notification each")
}

// TestSubscribeAfterClaimReplaysTheClaimedBatch: the reader claims a batch, then decides
// who gets it; a stream subscribing in between must replay the batch from the log (its
// head is the claim), since the reader may not render the batch for it.
func TestSubscribeAfterClaimReplaysTheClaimedBatch(t *testing.T) {
	h := NewHub(Limit{Events: 16})
	h.Publish([]*Event{durable(1, 1, "alice")})
	h.Claim(Cursor{Tx: 1, ID: 5})
	_, head := h.Subscribe("late")
	require.Equal(t, Cursor{Tx: 1, ID: 5}, head)
	require.Equal(t, Cursor{Tx: 1, ID: 5}, h.Head())
	h.Publish([]*Event{durable(1, 5, "alice")})
	_, head = h.Subscribe("later")
	require.Equal(t, Cursor{Tx: 1, ID: 5}, head)
}

package events

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A removed member's streams drop the conversation's typing events still queued when its
// member_removed arrives, and refuse later ones (from a member list cached before the
// removal) until it is added again; other conversations and users are untouched.
func TestHubGatesTypingOfAConversationARemovedMemberLeft(t *testing.T) {
	h := NewHub(Limit{Events: 100})
	s, _ := h.Subscribe("alice")
	other, _ := h.Subscribe("bob")
	typing := func(conv string) *Event {
		return &Event{Type: "typing", Data: []byte(`{}`), Recipients: []string{"alice", "bob"}, Conversation: conv}
	}
	member := func(tx uint64, typ, user string) *Event {
		e := durable(tx, 1, "alice", "bob")
		e.Type, e.Conversation, e.Member = typ, "c1", user
		return e
	}
	h.Publish([]*Event{durable(1, 1, "alice"), typing("c1"), typing("c2"), member(2, "member_removed", "alice")})
	h.Publish([]*Event{typing("c1"), typing("c2")})
	evs, _, _ := s.Take()
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Type+":"+e.Conversation)
	}
	require.Equal(t, []string{"message:", "typing:c2", "member_removed:c1", "typing:c2"}, kinds)
	evs, _, _ = other.Take()
	require.Len(t, evs, 5, "bob is still a member: every typing event reaches him")

	h.Publish([]*Event{member(3, "member_added", "alice"), typing("c1")})
	evs, _, _ = s.Take()
	require.Len(t, evs, 2, "added again, alice gets the conversation's typing again")
}

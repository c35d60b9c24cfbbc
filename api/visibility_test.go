package api

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

// participantOnline is the online flag of who in conv as viewer sees it.
func participantOnline(t *testing.T, viewer *testUser, conv, who string) bool {
	t.Helper()
	r := viewer.do("GET", "/v1/conversations/"+conv, nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	var c events.Conversation
	r.JSON(t, &c)
	for _, p := range c.Participants {
		if p.ID == who {
			return p.Online
		}
	}
	t.Fatalf("%s is not a participant of %s", who, conv)
	return false
}

// A stranger who opens a conversation with someone learns nothing of their presence until
// they answer (API.md, Presence visibility): not by GET /v1/presence, not by the online
// flag, not by presence events. A contact who wrote with them sees all three.
func TestPresenceIsVisibleOnlyThroughConversationsTakenPartIn(t *testing.T) {
	in := newInstance(t)
	bob, friend, stranger, carol := newUser(t, in, "bob"), newUser(t, in, "friend"), newUser(t, in, "stranger"), newUser(t, in, "carol")
	withFriend := bob.direct(friend) // bob created it: he took part
	cold := stranger.direct(bob)     // bob never touched it
	toStranger := carol.direct(stranger)

	bobStream, _ := openReady(t, in.URL+"/v1/events", bob.Token, nil)
	require.Eventually(t, func() bool { return presenceOf(t, friend, bob.ID)[bob.ID].Online }, wait, 20*time.Millisecond)
	require.True(t, participantOnline(t, friend, withFriend.ID, bob.ID))

	_, seen := presenceOf(t, stranger, bob.ID)[bob.ID]
	require.False(t, seen, "the stranger may not ask about bob")
	require.False(t, participantOnline(t, stranger, cold.ID, bob.ID), "nor see him online in the conversation")
	require.True(t, participantOnline(t, bob, cold.ID, bob.ID), "bob sees himself")

	// Bob leaves: his friend hears it, the stranger does not.
	friendStream, _ := openReady(t, in.URL+"/v1/events", friend.Token, nil)
	strangerStream, _ := openReady(t, in.URL+"/v1/events", stranger.Token, nil)
	bobStream.close()
	ev := friendStream.nextOf("presence", wait)
	require.Equal(t, bob.ID, decode[events.UserPresence](t, ev.Data).UserID)
	// The event went to every recipient at once; a message after it marks the point by
	// which the stranger's copy would have arrived.
	carol.send(toStranger.ID, "sentinel")
	for {
		ev := strangerStream.next(wait)
		if ev.Type == "message" {
			break
		}
		require.NotEqual(t, "presence", ev.Type, "the stranger got bob's presence: %s", ev.Data)
	}

	// Once bob answers, the conversation shows his presence.
	bob.send(cold.ID, "hello")
	openReady(t, in.URL+"/v1/events", bob.Token, nil)
	require.Eventually(t, func() bool { return presenceOf(t, stranger, bob.ID)[bob.ID].Online }, wait, 20*time.Millisecond)
	require.True(t, participantOnline(t, stranger, cold.ID, bob.ID))
	ev = strangerStream.nextOf("presence", wait)
	require.Equal(t, bob.ID, decode[events.UserPresence](t, ev.Data).UserID)
}

// Marking a conversation read is taking part too.
func TestMarkingReadMakesPresenceVisible(t *testing.T) {
	in := newInstance(t)
	bob, stranger := newUser(t, in, "bob"), newUser(t, in, "stranger")
	cold := stranger.direct(bob)
	stranger.send(cold.ID, "hi")
	openReady(t, in.URL+"/v1/events", bob.Token, nil)
	require.Eventually(t, func() bool { return presenceOf(t, bob, bob.ID)[bob.ID].Online }, wait, 20*time.Millisecond)
	_, seen := presenceOf(t, stranger, bob.ID)[bob.ID]
	require.False(t, seen)
	require.Equal(t, 204, bob.do("POST", "/v1/conversations/"+cold.ID+"/read", map[string]any{"seq": 1}).Status)
	require.True(t, presenceOf(t, stranger, bob.ID)[bob.ID].Online)
}

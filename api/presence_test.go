package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/db"
	"github.com/chatd/chatd/events"
)

type presenceAnswer struct {
	Users []events.PresenceEntry `json:"users"`
}

func presenceOf(t *testing.T, u *testUser, ids ...string) map[string]events.PresenceEntry {
	t.Helper()
	out, err := tryPresenceOf(u, ids...)
	require.NoError(t, err)
	return out
}

// tryPresenceOf is presenceOf for goroutines other than the test's own (Eventually runs
// its condition on one), which must not use require.
func tryPresenceOf(u *testUser, ids ...string) (map[string]events.PresenceEntry, error) {
	q := ""
	for i, id := range ids {
		if i > 0 {
			q += "&"
		}
		q += "user_id=" + id
	}
	r, err := tryCall("GET", u.URL+"/v1/presence?"+q, u.Token, nil)
	if err != nil {
		return nil, err
	}
	if r.Status != http.StatusOK {
		return nil, fmt.Errorf("presence: status %d: %s", r.Status, r.Body)
	}
	var a presenceAnswer
	if err := json.Unmarshal(r.Body, &a); err != nil {
		return nil, fmt.Errorf("presence: %w; body: %s", err, r.Body)
	}
	out := map[string]events.PresenceEntry{}
	for _, e := range a.Users {
		out[e.ID] = e
	}
	return out, nil
}

// seenOnline is an Eventually condition: whether u sees user online (or offline).
func seenOnline(u *testUser, user string, online bool) func() bool {
	return func() bool {
		got, err := tryPresenceOf(u, user)
		return err == nil && got[user].Online == online
	}
}

func TestPresenceAcrossInstances(t *testing.T) {
	a, b := newInstance(t), newInstance(t)
	alice, bob, stranger := newUser(t, a, "alice"), newUser(t, b, "bob"), newUser(t, a, "stranger")
	// Bob opens it, so his presence shows through it (API.md, Presence visibility).
	conv := bob.direct(alice)
	stranger.direct(newUser(t, a, "other")) // the stranger exists, but shares nothing with alice

	aliceStream, _ := openReady(t, a.URL+"/v1/events", alice.Token, nil)
	require.False(t, presenceOf(t, alice, bob.ID)[bob.ID].Online)

	// Bob opens a stream on the other instance: alice sees him online, by REST and by event.
	bobStream, _ := openReady(t, b.URL+"/v1/events", bob.Token, nil)
	ev := aliceStream.nextOf("presence", wait)
	require.False(t, ev.HasID, "presence is ephemeral")
	p := decode[events.UserPresence](t, ev.Data)
	require.Equal(t, bob.ID, p.UserID)
	require.True(t, p.Online)
	// Presence is written off the request path: "within 5 s of the first stream opening".
	var got map[string]events.PresenceEntry
	require.Eventually(t, func() bool {
		p, err := tryPresenceOf(alice, bob.ID, stranger.ID, alice.ID, "nobody-at-all")
		if err != nil || !p[alice.ID].Online || !p[bob.ID].Online {
			return false
		}
		got = p
		return true
	}, wait, 20*time.Millisecond)
	require.NotNil(t, got[bob.ID].LastSeenAt)
	require.Contains(t, got, alice.ID, "the caller is reported too")
	require.NotContains(t, got, stranger.ID, "users who share no conversation are omitted")
	require.NotContains(t, got, "nobody-at-all")
	r := alice.do("GET", "/v1/conversations/"+conv.ID, nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	var c events.Conversation
	r.JSON(t, &c)
	require.Len(t, c.Participants, 2)
	for _, part := range c.Participants {
		require.True(t, part.Online, "%s", part.ID)
	}

	// A reconnect within the grace period is invisible; a real goodbye is not. Bob leaves
	// b (and b notices) before he comes back on a, so without a grace period b would
	// announce him offline and a online again.
	aID, bID := presenceInstance(t, a, alice.ID), presenceInstance(t, a, bob.ID)
	bobStream.close()
	require.Eventually(t, func() bool { return !b.Hub.Online(bob.ID) }, wait, 10*time.Millisecond)
	bobStream, _ = openReady(t, a.URL+"/v1/events", bob.Token, nil)
	// The grace period on b is over once b has written bob's row away; then both writers
	// finish what they were doing, and nothing about bob may have reached alice.
	require.Eventually(t, func() bool {
		var n int
		err := a.Pool.QueryRow(context.Background(),
			"SELECT count(*) FROM presence WHERE user_id = $1 AND instance_id = $2", bob.ID, bID).Scan(&n)
		return err == nil && n == 0
	}, wait, 20*time.Millisecond, "b never wrote bob off after its grace period")
	presenceSettled(t, a, aID, bID)
	requireNoPresenceBefore(t, aliceStream, conv.ID, bob.on(b), bob.on(a))

	bobStream.close()
	ev = aliceStream.nextOf("presence", wait)
	p = decode[events.UserPresence](t, ev.Data)
	require.Equal(t, bob.ID, p.UserID)
	require.False(t, p.Online)
	require.NotNil(t, p.LastSeenAt)
	got = presenceOf(t, alice, bob.ID)
	require.False(t, got[bob.ID].Online)
	require.NotNil(t, got[bob.ID].LastSeenAt)
	// Exactly one goodbye: nothing more about bob follows from either instance.
	presenceSettled(t, a, aID, bID)
	requireNoPresenceBefore(t, aliceStream, conv.ID, bob.on(b), bob.on(a))
}

// presenceInstance is the id of the one instance that holds user's streams.
func presenceInstance(t *testing.T, in *instance, user string) string {
	t.Helper()
	var id string
	require.NoError(t, in.Pool.QueryRow(context.Background(), "SELECT instance_id FROM presence WHERE user_id = $1", user).Scan(&id))
	return id
}

// presenceSettled waits for the next heartbeat of each of the instances: one goroutine
// writes an instance's presence, announces the changes and beats, so a beat later than
// now means that whatever it had started writing before has been announced too.
func presenceSettled(t *testing.T, in *instance, ids ...string) {
	t.Helper()
	beat := func(id string) (at time.Time, err error) {
		err = in.Pool.QueryRow(context.Background(), "SELECT heartbeat_at FROM instances WHERE id = $1", id).Scan(&at)
		return at, err
	}
	for _, id := range ids {
		was, err := beat(id)
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			at, err := beat(id)
			return err == nil && at.After(was)
		}, wait, 20*time.Millisecond, "instance %s stopped beating", id)
	}
}

// requireNoPresenceBefore sends a typing event from each of typists (the same user on
// different instances; each instance delivers its ephemeral events in order) and fails
// if s receives a presence event before all of them.
func requireNoPresenceBefore(t *testing.T, s *stream, conv string, typists ...*testUser) {
	t.Helper()
	for i, u := range typists {
		r := u.do("POST", "/v1/conversations/"+conv+"/typing", map[string]any{"typing": i%2 == 0})
		require.Equal(t, 204, r.Status, "%s", r.Body)
	}
	for pending := len(typists); pending > 0; {
		ev := s.next(wait)
		require.NotEqual(t, "presence", ev.Type, "unexpected presence event: %s", ev.Data)
		if ev.Type == "typing" {
			pending--
		}
	}
}

// TestPresenceOfDeadInstanceExpires: an instance that dies without a word (no clean
// shutdown, its database access gone) takes its users offline once the others notice it
// stopped beating.
func TestPresenceOfDeadInstanceExpires(t *testing.T) {
	a, doomed := newInstance(t), newInstance(t)
	alice, bob := newUser(t, a, "alice"), newUser(t, doomed, "bob")
	bob.direct(alice) // bob took part: alice may see his presence
	_, _ = openReady(t, doomed.URL+"/v1/events", bob.Token, nil)
	require.Eventually(t, seenOnline(alice, bob.ID, true), wait, 20*time.Millisecond)

	// Crash: the pool goes first, so neither the grace period nor shutdown can write.
	doomed.Pool.Close()
	doomed.Server.CloseClientConnections()
	doomed.stop()
	require.Eventually(t, seenOnline(alice, bob.ID, false), wait, 50*time.Millisecond)
}

// TestPresenceInstanceTakenForDeadComesBack: when the others expire an instance that was
// only slow (its rows deleted, its users announced offline), its next beat registers its
// users again and announces them online.
func TestPresenceInstanceTakenForDeadComesBack(t *testing.T) {
	a, b := newInstance(t), newInstance(t)
	alice, bob := newUser(t, b, "alice"), newUser(t, a, "bob")
	bob.direct(alice) // bob took part: alice may see his presence
	aliceStream, _ := openReady(t, b.URL+"/v1/events", alice.Token, nil)
	_, _ = openReady(t, a.URL+"/v1/events", bob.Token, nil)
	require.Eventually(t, seenOnline(alice, bob.ID, true), wait, 20*time.Millisecond)
	first := decode[events.UserPresence](t, aliceStream.nextOf("presence", wait).Data)
	require.True(t, first.UserID == bob.ID && first.Online, "bob's first stream is announced")

	// What another instance's expiry does to a stalled one: its row and its users' rows go.
	// Meanwhile the test holds the lock every presence write of bob takes, so the instance's
	// next beat cannot bring him back before the check below looks.
	ctx := context.Background()
	hold, err := a.Pool.Begin(ctx)
	require.NoError(t, err)
	defer hold.Rollback(ctx) //nolint:errcheck // rolled back below; this is for a failure before
	require.NoError(t, db.New(hold).LockPresence(ctx, []string{bob.ID}))
	_, err = a.Pool.Exec(ctx, `WITH i AS (SELECT instance_id FROM presence WHERE user_id = $1),
		d AS (DELETE FROM instances WHERE id IN (SELECT instance_id FROM i))
		DELETE FROM presence WHERE instance_id IN (SELECT instance_id FROM i)`, bob.ID)
	require.NoError(t, err)
	require.False(t, presenceOf(t, alice, bob.ID)[bob.ID].Online)
	require.NoError(t, hold.Rollback(ctx))

	require.Eventually(t, seenOnline(alice, bob.ID, true), wait, 20*time.Millisecond,
		"the instance's next beat brings its users back")
	for {
		p := decode[events.UserPresence](t, aliceStream.nextOf("presence", wait).Data)
		if p.UserID == bob.ID && p.Online {
			break
		}
	}
}

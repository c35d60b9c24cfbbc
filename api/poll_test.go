package api

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/events"
)

type pollAnswer struct {
	Events []struct {
		ID   string          `json:"id"`
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	} `json:"events"`
	Cursor string `json:"cursor"`
}

func TestLongPoll(t *testing.T) {
	a, b := newInstance(t), newInstance(t)
	alice, bob := newUser(t, a, "alice"), newUser(t, b, "bob")
	conv := alice.direct(bob)

	var head pollAnswer
	r := bob.do("GET", "/v1/events/poll", nil)
	r.OK(t, &head)
	var raw map[string]json.RawMessage
	r.JSON(t, &raw)
	require.JSONEq(t, `[]`, string(raw["events"]), "an empty answer has an empty list, not null")
	require.NotEmpty(t, head.Cursor)

	for i := 1; i <= 3; i++ {
		alice.send(conv.ID, fmt.Sprintf("p%d", i))
	}
	// The poll answers as soon as anything is there, so collect until all three arrived.
	var got pollAnswer
	cursor := head.Cursor
	var seqs []int64
	for len(seqs) < 3 {
		r := bob.do("GET", "/v1/events/poll?timeout=5&cursor="+cursor, nil)
		require.Equal(t, 200, r.Status, "%s", r.Body)
		r.JSON(t, &got)
		require.NotEmpty(t, got.Events)
		for _, e := range got.Events {
			if e.Type == "message" { // the conversation's creation may come first
				seqs = append(seqs, decode[events.Message](t, string(e.Data)).Seq)
			}
		}
		cursor = got.Cursor
	}
	require.Equal(t, []int64{1, 2, 3}, seqs)
	require.Equal(t, got.Events[len(got.Events)-1].ID, got.Cursor)

	// Nothing new: the poll waits, and answers when a message arrives on the other instance.
	done := make(chan response, 1)
	failed := make(chan error, 1)
	go func() {
		r, err := tryCall("GET", b.URL+"/v1/events/poll?timeout=30&cursor="+got.Cursor, bob.Token, nil)
		if err != nil {
			failed <- err
			return
		}
		done <- r
	}()
	require.Eventually(t, func() bool { return b.Hub.Streams() > 0 || len(failed) > 0 }, wait, 10*time.Millisecond)
	m := alice.send(conv.ID, "wakes the poll")
	select {
	case err := <-failed:
		require.NoError(t, err)
	case r := <-done:
		var next pollAnswer
		r.OK(t, &next)
		require.Len(t, next.Events, 1)
		require.Equal(t, m.ID, decode[events.Message](t, string(next.Events[0].Data)).ID)
		// Poll cursors and stream ids are one cursor space.
		s, ready := openReady(t, a.URL+"/v1/events", bob.Token, map[string]string{"Last-Event-ID": next.Cursor})
		require.Equal(t, next.Cursor, ready)
		s.close()
	case <-time.After(wait):
		t.Fatal("poll did not answer")
	}

	var empty pollAnswer
	bob.do("GET", "/v1/events/poll?timeout=0&cursor="+got.Cursor+"x", nil).OK(t, &empty)
	require.Len(t, empty.Events, 1)
	require.Equal(t, "reset", empty.Events[0].Type)
	require.Equal(t, "malformed", decode[events.Reset](t, string(empty.Events[0].Data)).Reason)

	require.Equal(t, 400, bob.do("GET", "/v1/events/poll?timeout=56&cursor="+got.Cursor, nil).Status)
}

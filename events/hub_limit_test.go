package events

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// A stream is cut off when what it has pending outweighs the byte bound, however few events
// that is: a slow reader of large messages holds at most about the bound.
func TestSubscriberIsCutOffByBytesAsWellAsEvents(t *testing.T) {
	h := NewHub(Limit{Events: 1000, Bytes: 10_000})
	slow, _ := h.Subscribe("bob")
	fast, _ := h.Subscribe("bob")
	big := bytes.Repeat([]byte("x"), 3000)
	for i := 1; i <= 3; i++ {
		h.Publish([]*Event{{Cursor: Cursor{Tx: 1, ID: int64(i)}, Type: "message", Data: big, Recipients: []string{"bob"}}})
		evs, done, _ := fast.Take() // a reader that keeps up is never cut off
		require.Len(t, evs, 1)
		require.False(t, done)
	}
	evs, done, overflowed := slow.Take()
	require.Len(t, evs, 3, "9 KB pending is under the bound")
	require.False(t, done || overflowed)

	for i := 4; i <= 7; i++ {
		h.Publish([]*Event{{Cursor: Cursor{Tx: 1, ID: int64(i)}, Type: "message", Data: big, Recipients: []string{"bob"}}})
		evs, done, _ := fast.Take()
		require.Len(t, evs, 1)
		require.False(t, done)
	}
	evs, done, overflowed = slow.Take()
	require.True(t, done && overflowed, "four 3 KB events are over a 10 KB bound")
	require.Empty(t, evs, "an overflowed stream holds nothing")
}

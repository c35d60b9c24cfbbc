package notify

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A receiver that fails twice gets three attempts of the same webhook: same id, same body,
// each signed for its own timestamp.
func TestRetriesKeepTheID(t *testing.T) {
	pool, _ := newDB(t)
	rcv := newReceiver(t, http.StatusInternalServerError, http.StatusInternalServerError)
	n := startNotifier(t, testConfig(pool, rcv.URL))
	c := newChat(t, pool)

	c.send(t, "Can you do 80?")
	first := rcv.next(t, 20*time.Second)
	second := rcv.next(t, 10*time.Second)
	third := rcv.next(t, 10*time.Second)
	require.Equal(t, []int{500, 500, 200}, []int{first.Status, second.Status, third.Status})
	require.Equal(t, first.ID, second.ID)
	require.Equal(t, first.ID, third.ID)
	require.Equal(t, first.Body, third.Body)
	settled(t, pool, c.to, 1)
	require.EqualValues(t, 2, n.failed.Load())
	rcv.none(t)
	require.Empty(t, rcv.badSignatures())
}

// An instance stopped hard between two attempts (its River client cancelled with its work,
// its pool closed) loses nothing: another instance makes the next attempt, same webhook.
func TestInstanceDiesBetweenAttempts(t *testing.T) {
	pool, url := newDB(t)
	rcv := newReceiver(t, http.StatusServiceUnavailable)
	poolA := newPool(t, url)
	cfgA := testConfig(poolA, rcv.URL)
	cfgA.Backoff = 2 * time.Second // the retry falls after the instance is gone
	a, err := New(cfgA)
	require.NoError(t, err)
	require.NoError(t, a.Start(context.Background()))
	c := newChat(t, pool)

	c.send(t, "Is it still for sale?")
	first := rcv.next(t, 20*time.Second)
	require.Equal(t, http.StatusServiceUnavailable, first.Status)
	deliveryFailedOnce(t, pool, c.to)
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	_ = a.Stop(gone) // no grace: River cancels whatever A was doing
	poolA.Close()

	b := startNotifier(t, testConfig(newPool(t, url), rcv.URL))
	second := rcv.next(t, 20*time.Second)
	require.Equal(t, http.StatusOK, second.Status)
	require.Equal(t, first.ID, second.ID)
	require.Equal(t, first.Body, second.Body)
	settled(t, pool, c.to, 1)
	require.Zero(t, a.Delivered())
	require.EqualValues(t, 1, b.Delivered())
	rcv.none(t)
}

// Two instances follow one log and share one queue: every user gets exactly one webhook.
func TestTwoInstancesDeliverOnce(t *testing.T) {
	pool, url := newDB(t)
	rcv := newReceiver(t)
	a := startNotifier(t, testConfig(newPool(t, url), rcv.URL))
	b := startNotifier(t, testConfig(newPool(t, url), rcv.URL))

	const users = 8
	chats := make([]*chat, users)
	for i := range chats {
		chats[i] = newChat(t, pool)
		chats[i].send(t, "Offer")
	}
	ids := map[string]bool{}
	for range users {
		d := rcv.next(t, 20*time.Second)
		require.False(t, ids[d.ID], "webhook %s delivered twice", d.ID)
		ids[d.ID] = true
	}
	for _, c := range chats {
		settled(t, pool, c.to, 1)
	}
	rcv.none(t)
	require.EqualValues(t, users, a.Delivered()+b.Delivered())
	require.Empty(t, rcv.badSignatures())
}

// A user who opted out gets nothing: no check is scheduled for it, and a check scheduled
// before it opted out sends nothing.
func TestOptedOut(t *testing.T) {
	pool, _ := newDB(t)
	rcv := newReceiver(t)
	startNotifier(t, testConfig(pool, rcv.URL))
	ctx := context.Background()
	optOut := func(user string) {
		_, err := pool.Exec(ctx, "UPDATE users SET notify_webhook = false WHERE id = $1", user)
		require.NoError(t, err)
	}

	before := newChat(t, pool)
	optOut(before.to)
	m := before.send(t, "Hi")
	scannedPast(t, pool, m.ID.Bytes)
	require.Zero(t, jobsOf(t, pool, before.to, "chatd_notify_check"))

	later := newChat(t, pool)
	later.send(t, "Hi")
	require.Eventually(t, func() bool {
		n, err := countJobs(pool, later.to, "chatd_notify_check")
		return err == nil && n == 1
	},
		10*time.Second, 10*time.Millisecond)
	optOut(later.to)
	settled(t, pool, later.to, 1)
	rcv.none(t)
	require.Zero(t, jobsOf(t, pool, later.to, "chatd_notify_deliver"))
}

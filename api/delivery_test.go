package api

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"

	"github.com/chatd/chatd/db"
	"github.com/chatd/chatd/events"
)

func TestMessageOnOneInstanceReachesStreamsOnEvery(t *testing.T) {
	a, b := newInstance(t), newInstance(t)
	alice, bob := newUser(t, a, "alice"), newUser(t, b, "bob")
	conv := alice.direct(bob)

	bobStream, _ := openReady(t, b.URL+"/v1/events", bob.Token, nil)
	aliceOther, _ := openReady(t, a.URL+"/v1/events", alice.Token, nil)
	aliceOnB, _ := openReady(t, b.URL+"/v1/events", alice.Token, nil)
	m := alice.send(conv.ID, "hello from A")

	for _, s := range []*stream{bobStream, aliceOther, aliceOnB} {
		ev := s.nextOf("message", wait)
		require.True(t, ev.HasID)
		got := decode[events.Message](t, ev.Data)
		require.Equal(t, m.ID, got.ID)
		require.Equal(t, "hello from A", got.Body)
	}

	// Typing is ephemeral: it crosses instances too, carries no id and skips the typist,
	// both on the typist's instance and on the others (where the notification names the
	// typist to skip). Bob's stream on B has the typing event, so B has published it; the
	// message after it reaches every stream later than the typing event would have.
	r := alice.do("POST", "/v1/conversations/"+conv.ID+"/typing", map[string]any{"typing": true})
	require.Equal(t, 204, r.Status, "%s", r.Body)
	ev := bobStream.nextOf("typing", wait)
	require.False(t, ev.HasID)
	require.Equal(t, events.Typing{ConversationID: conv.ID, UserID: alice.ID, Typing: true}, decode[events.Typing](t, ev.Data))
	alice.send(conv.ID, "after typing")
	for _, s := range []*stream{aliceOther, aliceOnB} {
		for {
			ev := s.next(wait)
			require.NotEqual(t, "typing", ev.Type, "the typist's own streams do not get its typing event")
			if ev.Type == "message" {
				break
			}
		}
	}
}

// TestExactlyOnceInOrderUnderConcurrentWritersAndAHeldTransaction is the race the event-log
// fence exists for: events committed out of id order while one writing transaction stays
// open for a second. A client that keeps disconnecting and resuming must still receive
// every message exactly once, in each conversation's seq order.
func TestExactlyOnceInOrderUnderConcurrentWritersAndAHeldTransaction(t *testing.T) {
	// Quick heartbeats tell when a stream has finished its replay and relays live events.
	quick := func(c *Config, _ *events.Config) { c.Heartbeat = 50 * time.Millisecond }
	a, b := newInstance(t, quick), newInstance(t, quick)
	reader := newUser(t, a, "reader")
	const convs, writers, perWriter = 4, 8, 25
	ws := make([]*testUser, writers)
	for i := range ws {
		ws[i] = newUser(t, a, fmt.Sprintf("writer%d", i))
		if i%2 == 1 {
			ws[i] = ws[i].on(b) // half of the writers post through the other instance
		}
	}
	ids := make([]string, convs)
	for c := range ids {
		ids[c] = createGroup(t, reader, map[string]any{"participant_ids": []string{ws[c].ID, ws[c+convs].ID}})
	}
	heldConv := createGroup(t, reader, map[string]any{"participant_ids": []string{ws[1].ID}, "title": "held"})
	_, cursor := openReady(t, a.URL+"/v1/events", reader.Token, nil)

	// The held transaction takes its event id before most of the others, then commits
	// last: it stays open until every other writer has committed messages behind it. It
	// sends into a conversation of its own: a send into its conversation would wait for
	// its lock and, batched with sends into other conversations (db.Sender), hold those
	// up too; the fence is under test here, not the locks.
	release, heldDone := holdSendTransaction(a, heldConv, ws[1].ID)
	defer release() // a failure below must not leave the transaction (and its connection) open
	w := startWriters(ws, ids, perWriter)
	for i := range ws {
		select {
		case <-w.committed[i]:
		case err := <-w.errs:
			require.NoError(t, err)
		case <-time.After(wait):
			t.Fatalf("writer %d committed nothing while the transaction was held", i)
		}
	}
	// The others' messages are committed, yet behind the fence (a transaction older than
	// theirs, the held one, is open): the race the fence exists for. The held one ends last.
	var behind int
	require.NoError(t, a.Pool.QueryRow(context.Background(), `SELECT count(*) FROM events
		WHERE conversation_id = ANY($1::uuid[]) AND type = 'message' AND tx >= pg_snapshot_xmin(pg_current_snapshot())`,
		ids).Scan(&behind))
	require.GreaterOrEqual(t, behind, writers, "committed messages behind the held transaction")
	// The first stream replays and goes live (its first heartbeat) while the transaction
	// is still held: without the fence it would read past the held event now.
	first, _ := openReady(t, a.URL+"/v1/events", reader.Token, map[string]string{"Last-Event-ID": cursor})
	select {
	case <-first.pinged:
	case <-time.After(wait):
		t.Fatal("no heartbeat on the first stream")
	}
	release()

	total := writers*perWriter + 1
	seen := readResumingExactlyOnce(t, first, []*instance{a, b}, reader, cursor, total, w.errs)
	w.wg.Wait()
	close(w.errs)
	for err := range w.errs {
		require.NoError(t, err)
	}
	require.NoError(t, <-heldDone)
	require.Len(t, seen, total)
}

// createGroup creates a conversation as u with body and returns its id.
func createGroup(t *testing.T, u *testUser, body map[string]any) string {
	t.Helper()
	r := u.do("POST", "/v1/conversations", body)
	require.Equal(t, 201, r.Status)
	var conv events.Conversation
	r.JSON(t, &conv)
	return conv.ID
}

// holdSendTransaction sends a message to conv as sender in a transaction that stays open
// until release is called, and returns once the message is written (not committed). done
// receives the transaction's outcome; the instance's log is told of the write after it.
func holdSendTransaction(in *instance, conv, sender string) (release func(), done <-chan error) {
	held, hold := make(chan struct{}), make(chan struct{})
	heldDone := make(chan error, 1)
	go func() {
		heldDone <- db.InTx(context.Background(), in.Pool, func(q *db.Queries) error {
			id, _ := events.ParseUUID(conv)
			arg := db.SendMessagesParams{ConversationIds: []pgtype.UUID{id}, SenderIds: []string{sender}, Bodies: []string{"held"}, ClientIds: []string{""}}
			err := q.LockConversations(context.Background(), arg.ConversationIds)
			if err == nil {
				_, err = q.SendMessages(context.Background(), arg)
			}
			close(held)
			<-hold
			return err
		})
		in.Log.Written()
	}()
	<-held
	return sync.OnceFunc(func() { close(hold) }), heldDone
}

// writerGroup is the goroutines sending messages; committed[i] is closed at writer i's first
// message, and the first failed send of each writer arrives on errs.
type writerGroup struct {
	wg        sync.WaitGroup
	errs      chan error
	committed []chan struct{}
}

// startWriters has every writer i send perWriter messages to conversation ids[i%len(ids)].
func startWriters(ws []*testUser, ids []string, perWriter int) *writerGroup {
	w := &writerGroup{errs: make(chan error, len(ws)), committed: make([]chan struct{}, len(ws))}
	for i, u := range ws {
		w.wg.Add(1)
		w.committed[i] = make(chan struct{})
		go func() {
			defer w.wg.Done()
			for n := 0; n < perWriter; n++ {
				if _, err := u.trySend(ids[i%len(ids)], fmt.Sprintf("%s #%d", u.ID, n)); err != nil {
					w.errs <- err
					return
				}
				if n == 0 {
					close(w.committed[i])
				}
			}
		}()
	}
	return w
}

// readResumingExactlyOnce reads messages as reader until total have arrived: a few from
// first, then from new streams on alternating instances that resume from the last
// event read, each dropped mid-stream. It fails on a message delivered twice or out of its
// conversation's seq order, or on a send error, and returns the ids seen.
func readResumingExactlyOnce(t *testing.T, first *stream, instances []*instance, reader *testUser, cursor string,
	total int, sendErrs <-chan error) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	lastSeq := map[string]int64{}
	for round := 0; len(seen) < total; round++ {
		require.Less(t, round, 500, "never caught up: %d of %d", len(seen), total)
		select {
		case err := <-sendErrs:
			require.NoError(t, err)
		default:
		}
		s := first
		if round > 0 {
			s, _ = openReady(t, instances[round%2].URL+"/v1/events", reader.Token, map[string]string{"Last-Event-ID": cursor})
		}
		// Read a few events, then drop the connection mid-stream.
		for n := 0; n < 1+round%7 && len(seen) < total; n++ {
			ev := s.nextOf("message", wait)
			m := decode[events.Message](t, ev.Data)
			require.False(t, seen[m.ID], "message %s delivered twice", m.ID)
			seen[m.ID] = true
			require.Equal(t, lastSeq[m.ConversationID]+1, m.Seq, "conversation %s out of order", m.ConversationID)
			lastSeq[m.ConversationID] = m.Seq
			cursor = ev.LastID
		}
		s.close()
	}
	return seen
}

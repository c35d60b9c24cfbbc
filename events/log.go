package events

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chatd/chatd/db"
)

// Channels of the doorbell and of ephemeral events between instances.
const (
	doorbellChannel  = "chatd_events"
	ephemeralChannel = "chatd_ephemeral"
)

// Config tunes a Log. Zero values take the defaults noted on each field.
type Config struct {
	// Pool serves every query; the listener has a connection of its own.
	Pool *pgxpool.Pool
	// ListenURL is the listener's direct connection (LISTEN does not survive PgBouncer's
	// transaction pooling).
	ListenURL string
	// SafetyPoll reads the log even without a doorbell, so a lost notification delays
	// delivery by at most this long and never loses it. Default 1s.
	SafetyPoll time.Duration
	// PingAfter is how long the listener waits idle before it checks that its connection is
	// alive (TCP keepalive would take minutes to notice). Default 5s.
	PingAfter time.Duration
	// DoorbellInterval is the least time between two doorbells: the other instances learn
	// of new events at most this much later, and a busy instance sends at most one NOTIFY
	// per interval. Default 2ms.
	DoorbellInterval time.Duration
	// ReadInterval is the least time between two reads of the log. Default 1ms.
	ReadInterval time.Duration
	// BatchSize is how many events one read of the log takes. Default 1000.
	BatchSize int
	// StreamBuffer is how many events a stream may fall behind before the hub cuts it
	// off. Default 1024.
	StreamBuffer int
	// StreamBufferBytes is how many bytes of event data a stream may fall behind before
	// the hub cuts it off: a few large events weigh as much as many small ones. Default
	// 1 MiB.
	StreamBufferBytes int
	// Online answers the participants' online flag of conversation events; nil means false.
	Online func(ctx context.Context, users []string) map[string]bool
	Logger *slog.Logger
}

// Log reads the durable event log and publishes what is new to the hub. NOTIFY is only a
// doorbell: rung after commits, coalesced, never inside a message's own transaction
// (DESIGN-NOTES.md §1); the log table is the truth, read by cursor.
type Log struct {
	cfg      Config
	q        *db.Queries
	hub      *Hub
	instance string // tags this instance's own notifications, which it skips

	wake      chan struct{} // read the log now
	ring      chan struct{} // tell the other instances
	ephemeral chan []byte   // payloads for other instances
	carry     []byte        // an ephemeral payload that did not fit the last notification
	members   *memberCache  // recipients of conversation-addressed ephemeral events
	resolve   chan ephemeralMsg
	listening atomic.Bool
	published atomic.Uint64
	pos       Cursor // owned by the reader goroutine
}

// NewLog returns a Log with the Hub it publishes to (see Hub). Call Start to run it.
func NewLog(cfg Config) *Log {
	if cfg.SafetyPoll <= 0 {
		cfg.SafetyPoll = time.Second
	}
	if cfg.PingAfter <= 0 {
		cfg.PingAfter = 5 * time.Second
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	if cfg.ReadInterval <= 0 {
		cfg.ReadInterval = time.Millisecond
	}
	if cfg.DoorbellInterval <= 0 {
		cfg.DoorbellInterval = 2 * time.Millisecond
	}
	if cfg.StreamBuffer <= 0 {
		cfg.StreamBuffer = 1024
	}
	if cfg.StreamBufferBytes <= 0 {
		cfg.StreamBufferBytes = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	id := make([]byte, 8)
	_, _ = crand.Read(id) // crypto/rand never fails on supported platforms
	return &Log{
		cfg: cfg, q: db.New(cfg.Pool), hub: NewHub(Limit{Events: cfg.StreamBuffer, Bytes: cfg.StreamBufferBytes}), instance: hex.EncodeToString(id),
		wake: make(chan struct{}, 1), ring: make(chan struct{}, 1), ephemeral: make(chan []byte, 1024),
		members: newMemberCache(), resolve: make(chan ephemeralMsg, 1024),
	}
}

// Start positions the hub at the log's current head, so that startup replays nothing, and
// runs the reader, the listener and the doorbell until ctx ends.
func (l *Log) Start(ctx context.Context) error {
	head, err := l.Head(ctx)
	if err != nil {
		return err
	}
	l.pos = head
	l.hub.SetHead(head)
	go l.readLoop(ctx)
	go l.listenLoop(ctx)
	go l.sendLoop(ctx)
	go l.resolveLoop(ctx)
	return nil
}

// Hub is where the log publishes.
func (l *Log) Hub() *Hub { return l.hub }

// Published is the number of durable events this instance has read from the log.
func (l *Log) Published() uint64 { return l.published.Load() }

// Listening reports whether the listener holds a live connection (readiness).
func (l *Log) Listening() bool { return l.listening.Load() }

// Written is called after every write transaction ends, committed or not: it wakes this
// instance's reader and rings the other instances' doorbell. A rolled-back transaction
// rings too, because it may have been holding back the fence over others' commits.
func (l *Log) Written() {
	signal(l.wake)
	signal(l.ring)
}

// pace waits until at least interval has passed since last; false when ctx ended first.
func pace(ctx context.Context, last time.Time, interval time.Duration) bool {
	wait := interval - time.Since(last)
	if wait <= 0 {
		return true
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Head returns the newest final position of the log.
func (l *Log) Head(ctx context.Context) (Cursor, error) {
	h, err := l.q.EventHead(ctx)
	if errors.Is(err, pgx.ErrNoRows) {
		f, err := l.q.EventFloor(ctx)
		return Cursor{Tx: f.Tx, ID: f.ID}, err
	}
	return Cursor{Tx: h.Tx, ID: h.ID}, err
}

// Resumable reports whether a stream may resume after c: c is a position the log handed
// out and nothing after it has been pruned. reason says why not ("expired", "unknown").
func (l *Log) Resumable(ctx context.Context, c Cursor) (ok bool, reason string, err error) {
	st, err := l.q.CursorStatus(ctx, db.CursorStatusParams{Tx: c.Tx, ID: c.ID})
	if err != nil {
		return false, "", err
	}
	floor := Cursor{Tx: st.FloorTx, ID: st.FloorID}
	switch {
	case c == floor:
		return true, "", nil
	case c.Less(floor):
		return false, "expired", nil
	case !st.Found:
		return false, "unknown", nil
	}
	return true, "", nil
}

// Backfill calls fn with user's events in (from, upto], in log order, in batches.
func (l *Log) Backfill(ctx context.Context, user string, from, upto Cursor, fn func([]*Event) error) error {
	for from.Less(upto) {
		rows, err := l.q.BackfillEvents(ctx, db.BackfillEventsParams{UserID: user,
			AfterTx: from.Tx, AfterID: from.ID, UptoTx: upto.Tx, UptoID: upto.ID, RowLimit: int32(l.cfg.BatchSize)})
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			return nil
		}
		raw := make([]eventRow, len(rows))
		for i, r := range rows {
			raw[i] = eventRow{cursor: Cursor{Tx: r.Tx, ID: r.ID}, typ: r.Type, conv: r.ConversationID, user: r.UserID, seq: r.Seq,
				message: joinedMessage(r.MID, r.ConversationID, r.MSeq, r.MSenderID, r.MBody, r.MClientID, r.MCreatedAt, r.MEditedAt, r.MDeletedAt)}
		}
		evs, err := l.renderAll(ctx, raw)
		if err != nil {
			return err
		}
		from = raw[len(raw)-1].cursor
		if len(evs) == 0 {
			continue
		}
		if err := fn(evs); err != nil {
			return err
		}
		if len(rows) < l.cfg.BatchSize {
			return nil // a short batch is the end of the range
		}
	}
	return nil
}

// Ephemeral publishes an event that is not stored (typing, presence) to the recipients'
// streams on this instance at once and on every other instance through NOTIFY. Delivery is
// best effort, as befits a typing indicator.
func (l *Log) Ephemeral(e *Event) {
	l.hub.Publish([]*Event{e})
	l.notifyEphemeral(e.Type, e.Data, e.Recipients, e.Except)
}

// pack makes one NOTIFY payload, a JSON array, of first and whatever else is queued and
// fits: a burst of typing or presence events costs one notification, not one each. What
// does not fit waits in l.carry for the next payload.
func (l *Log) pack(first []byte) string {
	b := append(append(make([]byte, 0, maxPayload), '['), first...)
	for {
		next := l.carry
		if next == nil {
			select {
			case next = <-l.ephemeral:
			default:
				return string(append(b, ']'))
			}
		}
		if len(b)+1+len(next)+1 > maxPayload {
			l.carry = next
			return string(append(b, ']'))
		}
		l.carry = nil
		b = append(append(b, ','), next...)
	}
}

// maxPayload keeps NOTIFY payloads under PostgreSQL's 8000-byte limit.
const maxPayload = 7900

func (l *Log) notifyEphemeral(typ string, data []byte, recipients []string, except string) {
	payload, err := json.Marshal(ephemeralMsg{From: l.instance, Type: typ, Data: data, Recipients: recipients, Except: except})
	if err != nil {
		return
	}
	if len(payload) > maxPayload-2 && len(recipients) > 1 { // 2: the brackets of pack
		// A large group: split the recipients until each notification fits.
		half := len(recipients) / 2
		l.notifyEphemeral(typ, data, recipients[:half], except)
		l.notifyEphemeral(typ, data, recipients[half:], except)
		return
	}
	select {
	case l.ephemeral <- payload:
	default:
		l.cfg.Logger.Warn("ephemeral event dropped: notification queue full")
	}
}

// ephemeralMsg is the NOTIFY payload of an ephemeral event: addressed to recipients, or to
// the members of a conversation, whom each instance looks up itself.
type ephemeralMsg struct {
	From         string          `json:"from"`
	Type         string          `json:"type"`
	Data         json.RawMessage `json:"data"`
	Recipients   []string        `json:"recipients,omitempty"`
	Conversation string          `json:"conversation,omitempty"`
	Except       string          `json:"except,omitempty"`
}

// readLoop reads the log whenever woken, and on the safety timer. Reads are at least
// ReadInterval apart: under load, one read then takes every event of the interval instead
// of one query per message.
//
// After a wake it reads again a few times, 5 ms, 10 ms, 20 ms ... later, until a read
// finds nothing new: a transaction that rings no doorbell (another application's, or a
// presence update) may have been holding back the fence over events already committed.
func (l *Log) readLoop(ctx context.Context) {
	safety := time.NewTicker(l.cfg.SafetyPoll)
	defer safety.Stop()
	followUp := time.NewTimer(time.Hour)
	followUp.Stop()
	const firstFollowUp = 5 * time.Millisecond
	delay := time.Duration(0)
	var lastRead time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.wake:
			delay = firstFollowUp
		case <-followUp.C:
			delay *= 2
		case <-safety.C:
		}
		if !pace(ctx, lastRead, l.cfg.ReadInterval) {
			return
		}
		lastRead = time.Now()
		found, err := l.catchUp(ctx)
		if err != nil && ctx.Err() == nil {
			l.cfg.Logger.Error("read event log", "err", err)
		}
		if found > 0 && delay > 0 {
			delay = firstFollowUp
		}
		if delay > 0 && delay < l.cfg.SafetyPoll {
			followUp.Reset(delay)
		} else {
			delay = 0
		}
	}
}

// catchUp publishes every final event after the reader's position and returns how many
// rows it read.
func (l *Log) catchUp(ctx context.Context) (found int, err error) {
	for {
		rows, err := l.q.ReadEvents(ctx, db.ReadEventsParams{AfterTx: l.pos.Tx, AfterID: l.pos.ID, RowLimit: int32(l.cfg.BatchSize)})
		if err != nil {
			return found, err
		}
		found += len(rows)
		if len(rows) == 0 {
			return found, nil
		}
		// Only events someone here will receive are rendered; every instance reads the
		// whole log, but each renders only its own streams' share. The claim comes first,
		// so a stream that subscribes after the check replays this batch instead.
		l.hub.Claim(Cursor{Tx: rows[len(rows)-1].Tx, ID: rows[len(rows)-1].ID})
		raw := make([]eventRow, 0, len(rows))
		for _, r := range rows {
			if !l.hub.Interested(r.Recipients) {
				continue
			}
			raw = append(raw, eventRow{cursor: Cursor{Tx: r.Tx, ID: r.ID}, typ: r.Type, conv: r.ConversationID, user: r.UserID, seq: r.Seq,
				recipients: r.Recipients,
				message:    joinedMessage(r.MID, r.ConversationID, r.MSeq, r.MSenderID, r.MBody, r.MClientID, r.MCreatedAt, r.MEditedAt, r.MDeletedAt)})
		}
		evs, err := l.renderAll(ctx, raw)
		if err != nil {
			return found, err
		}
		l.hub.Publish(evs)
		l.published.Add(uint64(len(rows)))
		l.pos = Cursor{Tx: rows[len(rows)-1].Tx, ID: rows[len(rows)-1].ID}
		l.hub.SetHead(l.pos) // past any skipped row too
		if len(rows) < l.cfg.BatchSize {
			return found, nil
		}
	}
}

// eventRow is what the reader and the replay read of one event.
type eventRow struct {
	cursor     Cursor
	typ        string
	conv       pgtype.UUID
	user       *string
	seq        *int64
	message    *Message
	recipients []string
}

// errBadEvent marks an event row that cannot be rendered. It is logged and skipped: one
// malformed row must not stop delivery of everything after it.
var errBadEvent = errors.New("bad event")

// renderAll renders rows into events, in order, skipping (and logging) malformed ones; it
// fails only when the database does. Conversation events are rendered together, with one
// query for all of the batch's conversations, so a burst of new conversations does not
// hold up the messages behind it.
func (l *Log) renderAll(ctx context.Context, rows []eventRow) ([]*Event, error) {
	convs, err := l.newConversations(ctx, rows)
	if err != nil {
		return nil, err
	}
	evs := make([]*Event, 0, len(rows))
	for _, r := range rows {
		e := &Event{Cursor: r.cursor, Type: r.typ, Recipients: r.recipients}
		err := render(e, r, convs)
		if errors.Is(err, errBadEvent) {
			l.cfg.Logger.Error("skipping an event that cannot be rendered", "cursor", r.cursor.String(), "err", err)
			continue
		}
		if err != nil {
			return nil, err
		}
		evs = append(evs, e)
	}
	return evs, nil
}

// render fills in e.Data from the columns of an event row.
func render(e *Event, r eventRow, convs map[[16]byte]*Conversation) error {
	var data any
	switch r.typ {
	case "message", "message_updated", "message_deleted":
		if r.message == nil {
			return fmt.Errorf("%w %v: message missing", errBadEvent, r.cursor)
		}
		data = r.message
	case "read":
		if r.user == nil || r.seq == nil {
			return fmt.Errorf("%w %v: read without user or seq", errBadEvent, r.cursor)
		}
		data = Read{ConversationID: UUIDString(r.conv), UserID: *r.user, Seq: *r.seq}
	case "conversation":
		c := convs[r.conv.Bytes]
		if c == nil || len(c.Participants) == 0 {
			return fmt.Errorf("%w %v: conversation missing or empty", errBadEvent, r.cursor)
		}
		data = c
	default:
		return fmt.Errorf("%w %v: unknown type %q", errBadEvent, r.cursor, r.typ)
	}
	b, err := json.Marshal(data)
	e.Data = b
	return err
}

// newConversations loads the conversations of the conversation events among rows, as a
// participant sees a conversation when it is created: nothing sent, nothing read.
func (l *Log) newConversations(ctx context.Context, rows []eventRow) (map[[16]byte]*Conversation, error) {
	var ids []pgtype.UUID
	for _, r := range rows {
		if r.typ == "conversation" {
			ids = append(ids, r.conv)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	meta, err := l.q.ConversationsByID(ctx, ids)
	if err != nil {
		return nil, err
	}
	parts, err := l.q.ListParticipants(ctx, ids)
	if err != nil {
		return nil, err
	}
	users := make([]string, len(parts))
	for i, p := range parts {
		users[i] = p.ID
	}
	var online map[string]bool
	if l.cfg.Online != nil {
		online = l.cfg.Online(ctx, users)
	}
	out := make(map[[16]byte]*Conversation, len(meta))
	for _, m := range meta {
		out[m.ID.Bytes] = &Conversation{ID: UUIDString(m.ID), Kind: m.Kind, Title: m.Title, Participants: []Participant{},
			CreatedAt: Time(m.CreatedAt), UpdatedAt: Time(m.CreatedAt)}
	}
	for _, p := range parts {
		if c := out[p.ConversationID.Bytes]; c != nil {
			c.Participants = append(c.Participants, Participant{ID: p.ID, Name: p.Name, Online: p.TookPart && online[p.ID]})
		}
	}
	return out, nil
}

// listenLoop holds the instance's LISTEN connection: connect, LISTEN, catch up, wait; ping
// when idle; on any failure reconnect with backoff and jitter and catch up again.
func (l *Log) listenLoop(ctx context.Context) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			backoff := min(100*time.Millisecond<<min(attempt-1, 6), 5*time.Second)
			backoff = backoff/2 + rand.N(backoff/2+1)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
		}
		err := l.listen(ctx, func() { attempt = 0 })
		if ctx.Err() == nil {
			l.cfg.Logger.Warn("event listener lost its connection; reconnecting", "err", err)
		}
	}
}

// listen runs one listener connection until it fails; connected is called once it listens.
func (l *Log) listen(ctx context.Context, connected func()) error {
	cfg, err := pgx.ParseConfig(l.cfg.ListenURL)
	if err != nil {
		return err
	}
	cfg.RuntimeParams["application_name"] = "chatd_listener" // findable in pg_stat_activity
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.ConnectConfig(cctx, cfg)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, ch := range []string{doorbellChannel, ephemeralChannel} {
		if _, err := conn.Exec(ctx, "LISTEN "+ch); err != nil {
			return err
		}
	}
	l.listening.Store(true)
	defer l.listening.Store(false)
	connected()
	signal(l.wake) // notifications sent while we were away are lost: read the log
	for {
		wctx, cancel := context.WithTimeout(ctx, l.cfg.PingAfter)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			pctx, cancel := context.WithTimeout(ctx, l.cfg.PingAfter)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
		case err != nil:
			return err
		case n.Channel == doorbellChannel:
			if n.Payload != l.instance {
				signal(l.wake)
			}
		case n.Channel == ephemeralChannel:
			l.receiveEphemeral(n.Payload)
		}
	}
}

// receiveEphemeral publishes the ephemeral events of another instance's notification (a
// JSON array: the sender packs what it has queued into one NOTIFY).
func (l *Log) receiveEphemeral(payload string) {
	var msgs []ephemeralMsg
	if err := json.Unmarshal([]byte(payload), &msgs); err != nil {
		return
	}
	evs := make([]*Event, 0, len(msgs))
	for _, m := range msgs {
		switch {
		case m.From == l.instance:
		case m.Conversation != "":
			l.queueResolve(m)
		default:
			evs = append(evs, &Event{Type: m.Type, Data: m.Data, Recipients: m.Recipients, Except: m.Except})
		}
	}
	l.hub.Publish(evs)
}

// sendLoop sends the doorbell and ephemeral events to the other instances. Rings that
// arrive while one is being sent, or within DoorbellInterval after it, collapse into the
// next, so a burst of writes costs one notification, whatever its size: every NOTIFY is a
// commit that takes PostgreSQL's cluster-wide notification lock.
func (l *Log) sendLoop(ctx context.Context) {
	var lastRing time.Time
	for {
		var channel, payload string
		if first := l.carry; first != nil {
			l.carry = nil
			channel, payload = ephemeralChannel, l.pack(first)
		} else {
			select {
			case <-ctx.Done():
				return
			case <-l.ring:
				if !pace(ctx, lastRing, l.cfg.DoorbellInterval) {
					return
				}
				lastRing = time.Now()
				channel, payload = doorbellChannel, l.instance
			case p := <-l.ephemeral:
				channel, payload = ephemeralChannel, l.pack(p)
			}
		}
		if err := l.q.Notify(ctx, db.NotifyParams{Channel: channel, Payload: payload}); err != nil && ctx.Err() == nil {
			l.cfg.Logger.Warn("notify other instances", "channel", channel, "err", err)
		}
	}
}

package db

// Group commit for sends: concurrent sends, in any conversations, share one transaction.

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Send is one message to send. ClientID "" means none; Attachments is the checked JSON
// array to store (api/attachments.go), empty meaning none.
type Send struct {
	ConversationID pgtype.UUID
	SenderID       string
	Body           string
	ClientID       string
	Attachments    []byte
}

// Sent is the outcome of one Send: the message, or ok false when nothing was sent because
// the sender is not a participant, the conversation is closed or its client_id is already
// used (the caller looks it up to tell which).
type Sent struct {
	Message Message
	OK      bool
}

// Sender gathers concurrent sends into batches, each one transaction of three statements
// sent in one round trip (sendPlan, LockConversations, SendMessages: query.sql explains the
// order they keep). A commit is the costly part of a send (a WAL flush, and a round trip per
// statement), so under load many messages share one; with no load a send is a batch of one
// and waits for nobody: a batch starts as soon as one of Workers is free, and takes every
// send queued by then (at most MaxBatch). No goroutine runs between calls.
//
// The price: a send waits for the locks of every conversation in its batch, so a
// conversation whose lock is held (by another batch, for the few milliseconds it runs)
// delays the sends batched with it. chatd never holds the lock longer: a batch is sent
// whole, Sync included, so PostgreSQL never waits on the instance inside it; it commits,
// or rolls back when the instance's connection is gone.
type Sender struct {
	pool    *pgxpool.Pool
	max     int
	timeout time.Duration
	slots   chan struct{} // a token per batch that may run at once

	mu    sync.Mutex
	queue []*pending
}

type pending struct {
	send Send
	out  Sent
	err  error
	done chan struct{}
}

// SenderConfig tunes a Sender. Zero values take the defaults noted on each field.
type SenderConfig struct {
	// Workers is how many batches may run at once. Default 2: one batch executes while
	// another waits for its WAL flush, and few enough that batches fill under load
	// (BenchmarkSender on 2 cores shared with other builds: 1, 2, 3 and 4 workers gave
	// 1,650, 1,920, 2,070 and 1,730 sends/s, one send per transaction 430; the differences
	// between 2 and 3 are within that noise).
	Workers int
	// MaxBatch caps the sends of one batch. Default 128.
	MaxBatch int
	// Timeout bounds one batch, which runs on for every caller in it even when the caller
	// that started it goes away. Default 10s.
	Timeout time.Duration
}

// NewSender returns a Sender over pool.
func NewSender(pool *pgxpool.Pool, cfg SenderConfig) *Sender {
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 128
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	return &Sender{pool: pool, max: cfg.MaxBatch, timeout: cfg.Timeout, slots: make(chan struct{}, cfg.Workers)}
}

// Send queues s and returns its outcome once the batch that took it has committed (or
// failed: every send of a failed batch gets its error, and none of them was sent). The
// caller whose turn it is runs a batch of everything queued; the others wait for theirs.
func (b *Sender) Send(ctx context.Context, s Send) (Sent, error) {
	p := &pending{send: s, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, p)
	b.mu.Unlock()
	for {
		select {
		case <-p.done:
			return p.out, p.err
		case b.slots <- struct{}{}:
			batch := b.take()
			if len(batch) > 0 {
				b.run(context.WithoutCancel(ctx), batch)
			}
			<-b.slots
			if len(batch) == 0 { // another caller's batch took this send: it is running
				<-p.done
				return p.out, p.err
			}
		}
	}
}

// Queued is how many sends wait for a batch to take them.
func (b *Sender) Queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

// take removes up to MaxBatch sends from the head of the queue.
func (b *Sender) take() []*pending {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := min(len(b.queue), b.max)
	batch := b.queue[:n:n]
	b.queue = b.queue[n:]
	if len(b.queue) == 0 {
		b.queue = nil // let the backing array go
	}
	return batch
}

// run sends one batch and answers each of its callers.
func (b *Sender) run(ctx context.Context, batch []*pending) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	err := b.exec(ctx, batch)
	for _, p := range batch {
		p.err = err
		close(p.done)
	}
}

// sendPlan is the first statement of every batch: for this transaction only, SendMessages
// is planned once per connection (a generic plan) as index lookups per input row, with no
// sequential scan, hash or merge join. Left to itself PostgreSQL re-plans the statement at
// every call, because the plan it would keep is costed for a thousand input rows: at 500
// msgs/s over two instances the planning took about as long as the execution, and
// PostgreSQL's CPU per 1,000 messages fell from 1,788 to 1,156 ms with this (README,
// "Throughput over instances"). Lookups by index keep the kept plan right whatever the
// tables' sizes when it was made.
const sendPlan = `SELECT set_config('plan_cache_mode', 'force_generic_plan', true),
	set_config('enable_seqscan', 'off', true), set_config('enable_hashjoin', 'off', true),
	set_config('enable_mergejoin', 'off', true)`

// exec runs the batch's statements in one implicit transaction (a pgx batch is one).
func (b *Sender) exec(ctx context.Context, batch []*pending) error {
	arg := SendMessagesParams{
		ConversationIds: make([]pgtype.UUID, len(batch)),
		SenderIds:       make([]string, len(batch)),
		Bodies:          make([]string, len(batch)),
		ClientIds:       make([]string, len(batch)),
		Attachments:     make([]string, len(batch)),
	}
	for i, p := range batch {
		arg.ConversationIds[i] = p.send.ConversationID
		arg.SenderIds[i] = p.send.SenderID
		arg.Bodies[i] = p.send.Body
		arg.ClientIds[i] = p.send.ClientID
		arg.Attachments[i] = "[]"
		if len(p.send.Attachments) > 0 {
			arg.Attachments[i] = string(p.send.Attachments)
		}
	}
	pb := &pgx.Batch{}
	pb.Queue(sendPlan)
	pb.Queue(lockConversations, arg.ConversationIds)
	pb.Queue(sendMessages, arg.ConversationIds, arg.SenderIds, arg.Bodies, arg.ClientIds, arg.Attachments)
	res := b.pool.SendBatch(ctx, pb)
	defer res.Close()
	for range 2 {
		if _, err := res.Exec(); err != nil {
			return err
		}
	}
	rows, err := res.Query()
	if err != nil {
		return err
	}
	sent, err := pgx.CollectRows(rows, pgx.RowToStructByPos[SendMessagesRow])
	if err != nil {
		return err
	}
	for _, r := range sent {
		batch[r.Ord-1].out = Sent{OK: true, Message: Message{ID: r.ID, ConversationID: r.ConversationID,
			Seq: r.Seq, SenderID: r.SenderID, Body: r.Body, ClientID: r.ClientID,
			CreatedAt: r.CreatedAt, EditedAt: r.EditedAt, DeletedAt: r.DeletedAt, Kind: r.Kind, Attachments: r.Attachments}}
	}
	return res.Close()
}

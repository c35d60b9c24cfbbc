package events

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/chatd/chatd/db"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Presence tracks which users have at least one stream open on any instance. Each instance
// records its users in the presence table and beats in the instances table; the others
// expire an instance that stops beating, so the users of a dead instance go offline
// without its help. Streams only mark a user dirty; one goroutine writes, off the request
// path, what is true when it writes, and retries what failed at the next beat.
type Presence struct {
	pool     *pgxpool.Pool
	q        *db.Queries
	instance string
	logger   *slog.Logger
	publish  func(*Event)
	grace    time.Duration
	beat     time.Duration
	stale    time.Duration
	now      func() time.Time

	mu      sync.Mutex
	local   map[string]int         // open streams per user on this instance
	leaving map[string]*time.Timer // users in their grace period after the last stream closed
	dirty   map[string]bool        // users whose row here may not match the above
	kick    chan struct{}          // has a value while dirty is worth writing
}

// PresenceConfig is what Presence needs and how it is tuned; zero durations take the
// defaults noted on each field.
type PresenceConfig struct {
	Pool     *pgxpool.Pool
	Instance string       // this instance's id (Log.Instance)
	Logger   *slog.Logger // nil: slog.Default()
	// Publish sends a presence event to its recipients on every instance (Log.Ephemeral).
	Publish func(*Event)

	// Grace is how long a user stays online after the last stream closes, so a reconnect
	// within it is invisible. Default 5s.
	Grace time.Duration
	// Beat is how often the instance proves it is alive. Default 5s.
	Beat time.Duration
	// Stale is how long without a beat makes an instance dead: four missed beats, so a
	// busy database is not taken for a dead instance. With the defaults, a dead
	// instance's users go offline within 25 s. Default 20s.
	Stale time.Duration
}

// NewPresence returns a Presence over cfg's pool that announces changes with cfg.Publish.
func NewPresence(cfg PresenceConfig) *Presence {
	orDefault(&cfg.Grace, 5*time.Second)
	orDefault(&cfg.Beat, 5*time.Second)
	orDefault(&cfg.Stale, 20*time.Second)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Presence{
		pool: cfg.Pool, q: db.New(cfg.Pool), instance: cfg.Instance, logger: cfg.Logger, publish: cfg.Publish,
		grace: cfg.Grace, beat: cfg.Beat, stale: cfg.Stale, now: time.Now,
		local: make(map[string]int), leaving: make(map[string]*time.Timer),
		dirty: make(map[string]bool), kick: make(chan struct{}, 1),
	}
}

// Start registers the instance and runs the writer and the heartbeat until ctx ends; then
// the instance leaves, taking its presence rows with it.
func (p *Presence) Start(ctx context.Context) error {
	if err := p.q.InsertInstance(ctx, p.instance); err != nil {
		return err
	}
	go p.run(ctx)
	return nil
}

// Connect records that a stream of user opened on this instance. It never blocks.
func (p *Presence) Connect(user string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.local[user]++
	if t := p.leaving[user]; t != nil {
		t.Stop() // back within the grace period: still online in the table
		delete(p.leaving, user)
	} else if p.local[user] == 1 {
		p.markLocked(user)
	}
}

// Disconnect records that a stream of user closed; after the grace period without another
// stream the user goes offline.
func (p *Presence) Disconnect(user string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.local[user]--; p.local[user] > 0 {
		return
	}
	delete(p.local, user)
	var t *time.Timer
	t = time.AfterFunc(p.grace, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.leaving[user] == t {
			delete(p.leaving, user)
			p.markLocked(user)
		}
	})
	p.leaving[user] = t
}

// markLocked queues user for the writer; p.mu is held.
func (p *Presence) markLocked(user string) {
	p.dirty[user] = true
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// onlineHereLocked is the truth the writer records: a stream open, or in its grace period.
func (p *Presence) onlineHereLocked(user string) bool {
	return p.local[user] > 0 || p.leaving[user] != nil
}

// Stale is how long without a beat makes an instance, and its users' streams, count as gone.
func (p *Presence) Stale() time.Duration { return p.stale }

// Online returns which of users are online anywhere. On a database error it reports
// everyone offline rather than fail the request that wanted to show the flag.
func (p *Presence) Online(ctx context.Context, users []string) map[string]bool {
	online := make(map[string]bool)
	ids, err := p.q.OnlineAmong(ctx, db.OnlineAmongParams{UserIds: users, StaleSeconds: p.stale.Seconds()})
	if err != nil {
		p.logger.Warn("presence lookup", "err", err)
		return online
	}
	for _, id := range ids {
		online[id] = true
	}
	return online
}

// Report returns the presence of those of users who share a conversation with caller (and
// of caller), in the order asked; others are omitted.
func (p *Presence) Report(ctx context.Context, caller string, users []string) ([]PresenceEntry, error) {
	rows, err := p.q.PresenceOf(ctx, db.PresenceOfParams{UserIds: users, CallerID: caller, StaleSeconds: p.stale.Seconds()})
	if err != nil {
		return nil, err
	}
	byID := make(map[string]PresenceEntry, len(rows))
	now := Time(p.now())
	for _, r := range rows {
		e := PresenceEntry{ID: r.ID, Online: r.Online, LastSeenAt: timePtr(r.LastSeenAt)}
		if r.Online {
			e.LastSeenAt = &now
		}
		byID[r.ID] = e
	}
	out := make([]PresenceEntry, 0, len(byID))
	for _, u := range users {
		if e, ok := byID[u]; ok {
			out = append(out, e)
			delete(byID, u)
		}
	}
	return out, nil
}

func (p *Presence) run(ctx context.Context) {
	t := time.NewTicker(p.beat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// A clean exit: the instance's users are offline here at once.
			cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = p.q.LeaveInstance(cctx, p.instance)
			cancel()
			return
		case <-p.kick:
			p.flush(ctx)
		case <-t.C:
			p.heartbeat(ctx)
			p.flush(ctx) // retries what failed before
		}
	}
}

// flush writes the state of the dirty users as it is now, in one statement for those
// online here and one for those gone, and announces the users whose presence changed
// everywhere, not just here. What fails stays dirty for the next beat.
func (p *Presence) flush(ctx context.Context) {
	p.mu.Lock()
	var on, off []string
	for u := range p.dirty {
		if p.onlineHereLocked(u) {
			on = append(on, u)
		} else {
			off = append(off, u)
		}
	}
	p.dirty = make(map[string]bool)
	p.mu.Unlock()
	now := p.now()
	for _, set := range []struct {
		users  []string
		online bool
	}{{on, true}, {off, false}} {
		if len(set.users) == 0 {
			continue
		}
		slices.Sort(set.users)
		var changed []string
		err := db.InTx(ctx, p.pool, func(q *db.Queries) error {
			if err := q.LockPresence(ctx, set.users); err != nil {
				return err
			}
			var err error
			if set.online {
				changed, err = q.SetOnline(ctx, db.SetOnlineParams{UserIds: set.users, InstanceID: p.instance, StaleSeconds: p.stale.Seconds()})
			} else {
				changed, err = q.SetOffline(ctx, db.SetOfflineParams{UserIds: set.users, InstanceID: p.instance, StaleSeconds: p.stale.Seconds()})
			}
			return err
		})
		if err != nil {
			p.logger.Warn("presence update; retrying at the next beat", "users", len(set.users), "err", err)
			p.mu.Lock()
			for _, u := range set.users {
				p.dirty[u] = true
			}
			p.mu.Unlock()
			continue
		}
		p.announce(ctx, changed, set.online, now)
	}
}

// heartbeat keeps this instance alive in the table and expires instances that died.
func (p *Presence) heartbeat(ctx context.Context) {
	n, err := p.q.TouchInstance(ctx, p.instance)
	if err != nil {
		p.logger.Warn("presence heartbeat", "err", err)
		return
	}
	if n == 0 {
		// Taken for dead during a database outage, its rows deleted and its users
		// announced offline: come back, and write (and announce) every local user again.
		if err := p.q.InsertInstance(ctx, p.instance); err != nil {
			return
		}
		p.mu.Lock()
		for u := range p.local {
			p.markLocked(u)
		}
		for u := range p.leaving {
			p.markLocked(u)
		}
		p.mu.Unlock()
	}
	gone, err := p.q.ExpireInstances(ctx, p.stale.Seconds())
	if err != nil || len(gone) == 0 {
		return
	}
	users := make([]string, 0, len(gone))
	var seen time.Time
	for _, g := range gone {
		users = append(users, g.UserID)
		if g.HeartbeatAt.After(seen) {
			seen = g.HeartbeatAt
		}
	}
	slices.Sort(users)
	users = slices.Compact(users)
	var offline []string
	err = db.InTx(ctx, p.pool, func(q *db.Queries) error {
		if err := q.LockPresence(ctx, users); err != nil {
			return err
		}
		offline, err = q.MarkGone(ctx, db.MarkGoneParams{UserIds: users, SeenAt: &seen, StaleSeconds: p.stale.Seconds()})
		return err
	})
	if err != nil {
		p.logger.Warn("presence expiry", "err", err)
		return
	}
	p.announce(ctx, offline, false, seen)
}

// announce sends each user's presence event to everyone who shares a conversation with it.
func (p *Presence) announce(ctx context.Context, users []string, online bool, at time.Time) {
	if len(users) == 0 {
		return
	}
	rows, err := p.q.Contacts(ctx, users)
	if err != nil {
		p.logger.Warn("presence contacts", "err", err)
		return
	}
	seen := Time(at)
	for i := 0; i < len(rows); {
		user := rows[i].UserID
		var contacts []string
		for ; i < len(rows) && rows[i].UserID == user; i++ {
			contacts = append(contacts, rows[i].Contact)
		}
		data, err := json.Marshal(UserPresence{UserID: user, Online: online, LastSeenAt: &seen})
		if err != nil {
			continue
		}
		p.publish(&Event{Type: "presence", Data: data, Recipients: contacts})
	}
}

package events

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// Conversation-addressed ephemeral events. A typing event in a group of 256 would name 256
// recipients, many NOTIFYs' worth, each taking the cluster-wide notify lock; instead the
// notification names the conversation, and each instance looks up its members (cached),
// so one typing event is one small notification whatever the group's size.

// EphemeralIn publishes an ephemeral event to the members of conversation: here at once
// (members is who the caller checked them to be), and to the other instances by the
// conversation's id.
func (l *Log) EphemeralIn(conversation pgtype.UUID, members []string, e *Event) {
	id := UUIDString(conversation)
	l.members.put(id, members)
	e.Recipients = members
	l.hub.Publish([]*Event{e})
	payload, err := json.Marshal(ephemeralMsg{From: l.instance, Type: e.Type, Data: e.Data, Conversation: id, Except: e.Except})
	if err != nil {
		return
	}
	select {
	case l.ephemeral <- payload:
	default:
		l.cfg.Logger.Warn("ephemeral event dropped: notification queue full")
	}
}

// queueResolve hands a conversation-addressed event from another instance to the
// resolver, which may have to ask the database for the members: the listener never waits
// on a query.
func (l *Log) queueResolve(m ephemeralMsg) {
	select {
	case l.resolve <- m:
	default:
		l.cfg.Logger.Warn("ephemeral event dropped: resolver queue full")
	}
}

// resolveLoop publishes conversation-addressed events to the members of their
// conversation, one at a time so that a user's typing true and typing false stay in order.
func (l *Log) resolveLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-l.resolve:
			if l.hub.Streams() == 0 {
				continue // nobody here to tell
			}
			members, ok := l.members.get(m.Conversation)
			if !ok {
				conv, valid := ParseUUID(m.Conversation)
				if !valid {
					continue
				}
				var err error
				if members, err = l.q.ConversationMembers(ctx, conv); err != nil {
					l.cfg.Logger.Warn("ephemeral event dropped: members lookup", "err", err)
					continue
				}
				l.members.put(m.Conversation, members)
			}
			l.hub.Publish([]*Event{{Type: m.Type, Data: m.Data, Recipients: members, Except: m.Except}})
		}
	}
}

// memberCache remembers conversations' members for a while. Membership is fixed at
// creation today; the expiry bounds how stale an entry can be once it is not.
type memberCache struct {
	mu      sync.Mutex
	entries map[string]memberEntry
}

type memberEntry struct {
	members []string
	at      time.Time
}

const (
	memberCacheTTL  = time.Minute
	memberCacheSize = 10_000 // past it the cache starts over (a few more lookups)
)

func newMemberCache() *memberCache { return &memberCache{entries: make(map[string]memberEntry)} }

func (c *memberCache) get(conv string) ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[conv]
	if !ok || time.Since(e.at) > memberCacheTTL {
		return nil, false
	}
	return e.members, true
}

func (c *memberCache) put(conv string, members []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= memberCacheSize {
		c.entries = make(map[string]memberEntry)
	}
	c.entries[conv] = memberEntry{members: members, at: time.Now()}
}

package events

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// Ephemeral events (typing, presence) are never stored: they reach this instance's streams
// at once and the other instances' through NOTIFY payloads, packed several to a
// notification.
//
// Conversation-addressed ephemeral events: a typing event in a group of 256 would name 256
// recipients, many NOTIFYs' worth, each taking the cluster-wide notify lock; instead the
// notification names the conversation, and each instance looks up its members (cached),
// so one typing event is one small notification whatever the group's size.

// EphemeralIn publishes an ephemeral event to the members of conversation: here at once
// (members is who the caller checked them to be), and to the other instances by the
// conversation's id.
func (l *Log) EphemeralIn(conversation pgtype.UUID, members []string, e *Event) {
	id := UUIDString(conversation)
	l.members.put(id, members)
	e.Recipients, e.Conversation = members, id
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
			l.hub.Publish([]*Event{{Type: m.Type, Data: m.Data, Recipients: members, Except: m.Except, Conversation: m.Conversation}})
		}
	}
}

// memberCache remembers conversations' members for a while. The reader forgets a
// conversation's entry when it reads a member event of it; the expiry bounds how stale an
// entry can be otherwise (a change this instance has not read yet). The hub keeps a
// removed user's streams from typing events even then (Subscriber.left).
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

func (c *memberCache) forget(conv string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, conv)
}

func (c *memberCache) put(conv string, members []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= memberCacheSize {
		c.entries = make(map[string]memberEntry)
	}
	c.entries[conv] = memberEntry{members: members, at: time.Now()}
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

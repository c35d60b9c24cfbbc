package api

import "sync"

// slots counts what is open (connections, streams) in total and per key (a remote
// address, a user) against a cap on each; a cap of 0 means none. The connection limit
// and the stream limit both count this way.
type slots struct {
	mu     sync.Mutex
	total  int // cap on all keys together
	perKey int // cap on one key
	open   int
	keys   map[string]int // only keys with something open
}

func newSlots(total, perKey int) *slots {
	return &slots{total: total, perKey: perKey, keys: make(map[string]int)}
}

// refusal says which cap, if any, refused a slot.
type refusal int

const (
	slotTaken refusal = iota
	totalFull
	keyFull
)

// take takes a slot for key, unless a cap refuses it (the total cap is checked first).
func (s *slots) take(key string) refusal {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.total > 0 && s.open >= s.total {
		return totalFull
	}
	if s.perKey > 0 && s.keys[key] >= s.perKey {
		return keyFull
	}
	s.open++
	s.keys[key]++
	return slotTaken
}

// give returns a slot that take gave key.
func (s *slots) give(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open--
	if s.keys[key]--; s.keys[key] <= 0 {
		delete(s.keys, key)
	}
}

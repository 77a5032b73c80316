package eventgrid

import (
	"crypto/sha256"
	"sync"
)

// eventKey identifies an event by its source and ID (CloudEvents makes the pair unique; Event Grid's topic is the
// source). It is a hash so every entry of the window has the same small size whatever the sender sent.
type eventKey [16]byte

func keyOf(source, id string) eventKey {
	h := sha256.New()
	h.Write([]byte(source))
	h.Write([]byte{0})
	h.Write([]byte(id))
	var k eventKey
	copy(k[:], h.Sum(nil))
	return k
}

// recentEvents remembers the last size event keys, oldest forgotten first: Event Grid delivers at least once,
// and a retried delivery must not notify twice. A ring plus a set gives O(1) check-and-add in bounded memory.
type recentEvents struct {
	mu   sync.Mutex
	ring []eventKey
	next int // ring slot the next key goes to
	n    int // keys in the ring
	set  map[eventKey]struct{}
}

func newRecentEvents(size int) *recentEvents {
	return &recentEvents{ring: make([]eventKey, size), set: make(map[eventKey]struct{}, size)}
}

// add records k and reports whether it was new.
func (r *recentEvents) add(k eventKey) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, seen := r.set[k]; seen {
		return false
	}
	if r.n == len(r.ring) {
		delete(r.set, r.ring[r.next])
	} else {
		r.n++
	}
	r.ring[r.next] = k
	r.set[k] = struct{}{}
	r.next = (r.next + 1) % len(r.ring)
	return true
}

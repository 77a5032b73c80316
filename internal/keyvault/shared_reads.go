package keyvault

import (
	"container/list"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Bounds of the shared reads of one Factory.
const (
	// sharedSecretTTL is how long a version's key material is reused: VaultCertificates in many namespaces that
	// name one certificate through one connection are usually reconciled within seconds of each other.
	sharedSecretTTL = 30 * time.Second
	// sharedLatestTTL is how long "the latest version" read by a first sync is reused: long enough for
	// VaultCertificates created together in many namespaces, short enough that a rotation meanwhile is only
	// missed by syncs that then see it at their next look.
	sharedLatestTTL = 5 * time.Second
	// sharedMaxBytes bounds the key material kept over all connections; sharedMaxEntries the entries.
	sharedMaxBytes   = 32 << 20
	sharedMaxEntries = 4096
	// sharedMaxValue is the largest secret kept; a larger one (no real certificate's) is only coalesced.
	sharedMaxValue = 1 << 20
)

// sharedReads lets the callers of one client share reads: identical calls in flight at once become one call
// (metadata and key material), and a version's key material is reused for sharedSecretTTL. A version's key never
// changes, so reuse cannot serve stale material; whether it is enabled is seen again within the TTL. Entries are
// keyed by client, and a client is one connection (one identity): one identity's reads never answer another's.
type sharedReads struct {
	flight singleflight.Group
	now    func() time.Time

	mu      sync.Mutex
	entries map[readKey]*list.Element // of *sharedSecret, oldest first in order
	order   list.List
	bytes   int
}

// sharedSecret is one kept read.
type sharedSecret struct {
	key     readKey
	secret  Secret
	expires time.Time
}

func newSharedReads(now func() time.Time) *sharedReads {
	if now == nil {
		now = time.Now
	}
	return &sharedReads{now: now, entries: map[readKey]*list.Element{}}
}

// readKey names one read of one client; names and versions are case-insensitive, as Key Vault's are.
type readKey struct {
	client            uint64
	op, name, version string
}

// keyOf is the readKey of op on name and version through client.
func keyOf(client uint64, op, name, version string) readKey {
	return readKey{client: client, op: op, name: strings.ToLower(name), version: strings.ToLower(version)}
}

// size is what the key costs in the byte budget.
func (k readKey) size() int { return len(k.op) + len(k.name) + len(k.version) + 8 }

// String is the key's singleflight form.
func (k readKey) String() string {
	return strconv.FormatUint(k.client, 10) + "/" + k.op + "/" + k.name + "/" + k.version
}

// certificate runs read once for concurrent identical calls; each caller gets its own copy.
func (s *sharedReads) certificate(ctx context.Context, key readKey, read func(context.Context) (*Certificate, error)) (*Certificate, error) {
	v, err := s.do(ctx, key, func(ctx context.Context) (any, error) { return read(ctx) })
	if err != nil {
		return nil, err
	}
	return v.(*Certificate).clone(), nil
}

// sharedReadTimeout bounds a shared read, which no single caller's context may cancel for the others.
const sharedReadTimeout = 2 * time.Minute

// do runs read once for concurrent calls of key. The read outlives a caller that gives up (its context ends:
// that caller gets the context's error at once), so the others still get the answer.
func (s *sharedReads) do(ctx context.Context, key readKey, read func(context.Context) (any, error)) (any, error) {
	ch := s.flight.DoChan(key.String(), func() (any, error) {
		readCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sharedReadTimeout)
		defer cancel()
		return read(readCtx)
	})
	select {
	case res := <-ch:
		return res.Val, res.Err
	case <-ctx.Done():
		return nil, fmt.Errorf("Key Vault %s: %w", key.op, ctx.Err())
	}
}

// secret returns a kept read of key, else reads it once for concurrent callers and keeps it for ttl; a read of
// the latest version (versionKey set) is also kept under its exact version, for sharedSecretTTL.
func (s *sharedReads) secret(ctx context.Context, key readKey, ttl time.Duration, versionKey func(version string) readKey,
	read func(context.Context) (*Secret, error)) (*Secret, error) {
	if kept, ok := s.kept(key); ok {
		return kept, nil
	}
	v, err := s.do(ctx, key, func(ctx context.Context) (any, error) {
		sec, err := read(ctx)
		if err == nil {
			s.keep(key, sec, ttl)
			if versionKey != nil {
				s.keep(versionKey(sec.Version), sec, sharedSecretTTL)
			}
		}
		return sec, err
	})
	if err != nil {
		return nil, err
	}
	cp := *v.(*Secret)
	return &cp, nil
}

func (s *sharedReads) kept(key readKey) (*Secret, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked()
	if el, ok := s.entries[key]; ok {
		e := el.Value.(*sharedSecret)
		if !s.now().Before(e.expires) {
			s.removeLocked(el) // a short-lived entry behind a longer-lived one
			return nil, false
		}
		cp := e.secret
		return &cp, true
	}
	return nil, false
}

func (s *sharedReads) keep(key readKey, sec *Secret, ttl time.Duration) {
	size := len(sec.Value) + key.size()
	if len(sec.Value) > sharedMaxValue {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked()
	if _, ok := s.entries[key]; ok {
		return
	}
	for s.order.Len() > 0 && (s.bytes+size > sharedMaxBytes || s.order.Len() >= sharedMaxEntries) {
		s.removeLocked(s.order.Front())
	}
	s.entries[key] = s.order.PushBack(&sharedSecret{key: key, secret: *sec, expires: s.now().Add(ttl)})
	s.bytes += size
	// Key material leaves memory at its TTL even when nothing reads the cache again (an idle controller).
	time.AfterFunc(sharedSecretTTL+time.Second, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.expireLocked()
	})
}

// expireLocked drops expired entries from the front (roughly oldest first; kept checks each entry's own expiry).
func (s *sharedReads) expireLocked() {
	now := s.now()
	for el := s.order.Front(); el != nil && !now.Before(el.Value.(*sharedSecret).expires); el = s.order.Front() {
		s.removeLocked(el)
	}
}

func (s *sharedReads) removeLocked(el *list.Element) {
	e := s.order.Remove(el).(*sharedSecret)
	delete(s.entries, e.key)
	s.bytes -= len(e.secret.Value) + e.key.size()
}

// forgetIf drops the kept read of key when stale says so.
func (s *sharedReads) forgetIf(key readKey, stale func(*Secret) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.entries[key]; ok && stale(&el.Value.(*sharedSecret).secret) {
		s.removeLocked(el)
	}
}

// forgetClient drops what a replaced or forgotten client kept.
func (s *sharedReads) forgetClient(client uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for el := s.order.Front(); el != nil; {
		next := el.Next()
		if el.Value.(*sharedSecret).key.client == client {
			s.removeLocked(el)
		}
		el = next
	}
}

// clone is a deep copy: callers of a shared read may change what they got (e.g. its tags).
func (c *Certificate) clone() *Certificate {
	cp := *c
	cp.CER = slices.Clone(c.CER)
	cp.Tags = maps.Clone(c.Tags)
	if c.Exportable != nil {
		cp.Exportable = ptrTo(*c.Exportable)
	}
	if c.Policy != nil {
		cp.Policy = c.Policy.clone()
	}
	return &cp
}

// clone is a deep copy of the policy.
func (p *Policy) clone() *Policy {
	cp := *p
	cp.DNSNames, cp.IPAddresses, cp.Emails = slices.Clone(p.DNSNames), slices.Clone(p.IPAddresses), slices.Clone(p.Emails)
	cp.ExtendedKeyUsages, cp.KeyUsages = slices.Clone(p.ExtendedKeyUsages), slices.Clone(p.KeyUsages)
	if p.AutoRenew != nil {
		cp.AutoRenew = ptrTo(*p.AutoRenew)
	}
	if p.EmailContacts != nil {
		cp.EmailContacts = ptrTo(*p.EmailContacts)
	}
	return &cp
}

func ptrTo[T any](v T) *T { return &v }

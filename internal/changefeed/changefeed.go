// Package changefeed detects changed certificates vault-wide: for each connection (one vault, one identity) it
// pages Key Vault's certificate list, 25 certificates a page, keeps what it saw (each certificate's latest
// thumbprint and whether it is enabled), and answers a VaultCertificate due for a refresh from that listing
// instead of a read of its own. Certificates whose listing entry changed are woken at once.
//
// A listing costs ceil(certificates/25) calls and serves every VaultCertificate of the connection for their
// refresh interval, so an unchanged certificate costs no call of its own. When the identity may not list (roles
// on single certificates answer 403 to a list), or the vault lists more than the controller keeps, the answer is
// Unavailable and the caller reads the certificate itself.
//
// The listing is a cache of the vault, never of vaultcert's own decisions: a restarted controller lists again
// and reaches the same answers.
package changefeed

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/keyvault"
)

// Defaults of Options.
const (
	DefaultMaxCertificates = 50000
	DefaultMaxTotal        = 200000
	DefaultListTimeout     = 5 * time.Minute
	DefaultRetryRefused    = 30 * time.Minute
	DefaultRetryFailed     = time.Minute
	DefaultMaxConcurrent   = 4
	// pageCost is the least time between listings per page of the vault: a vault of 1,000 certificates (40
	// pages) is listed at most every 40 s, one of 50,000 every 33 minutes, whatever the refresh intervals, so
	// one VaultCertificate with a short interval cannot spend the vault's budget for every tenant on it.
	pageCost = time.Second
	pageSize = 25
	// maxNameLen is Key Vault's limit on object names; a longer name in a listing is not a real certificate's.
	maxNameLen = 127
)

// Options bound what the registry keeps and how often it retries a listing that failed.
type Options struct {
	// MaxCertificates is the most certificates one vault listing may hold; a larger vault is read per
	// certificate. Zero means DefaultMaxCertificates.
	MaxCertificates int
	// MaxTotal is the most listing entries kept over all connections, so many connections to large (or
	// hostile) vaults cannot exhaust memory. Zero means DefaultMaxTotal.
	MaxTotal int
	// ListTimeout bounds one whole listing. Zero means DefaultListTimeout.
	ListTimeout time.Duration
	// RetryRefused is how long an identity that may not list is read per certificate before listing is tried
	// again. Zero means DefaultRetryRefused.
	RetryRefused time.Duration
	// RetryFailed is the same after any other failed listing (throttled, unreachable). Zero means
	// DefaultRetryFailed.
	RetryFailed time.Duration
	// MaxConcurrent is how many listings run at once over all connections. Zero means DefaultMaxConcurrent.
	MaxConcurrent int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Verdict is the registry's answer for one certificate.
type Verdict int

const (
	// Unchanged: a listing no older than the caller's refresh interval shows the thumbprint the caller holds,
	// enabled. Key Vault need not be asked.
	Unchanged Verdict = iota
	// Changed: the listing shows another thumbprint, a disabled version, or no such certificate: read it.
	Changed
	// Waiting: a listing is under way; the caller is woken (Events) when it ends.
	Waiting
	// Unavailable: there is no listing to answer from (refused, too large, failing): read the certificate.
	Unavailable
)

// Query asks whether one VaultCertificate's certificate changed.
type Query struct {
	// Connection is the connection's key (one vault, one identity).
	Connection string
	// Client is the connection's Key Vault client, used when a listing must be made.
	Client keyvault.Client
	// Certificate is the certificate's name in the vault.
	Certificate string
	// Thumbprint and Version are what the caller holds (status.thumbprint, status.version).
	Thumbprint, Version string
	// Revision is the connection's revision: a listing made through another vault or identity never answers.
	Revision string
	// MaxAge is the oldest listing that may answer: the caller's refresh interval.
	MaxAge time.Duration
	// Who is the VaultCertificate asking: it is woken when its certificate's entry changes.
	Who types.NamespacedName
	// MayList lets Check start a listing when none is recent enough (the caller is due for a refresh). Without
	// it, Check only answers from a recent listing (a VaultCertificate woken by a change), else Unavailable.
	MayList bool
}

// Answer is the verdict, with why a listing is unavailable.
type Answer struct {
	Verdict Verdict
	// Why says why no listing can answer (Unavailable only).
	Why string
}

// Registry holds one listing per connection. Its methods are safe for concurrent use.
type Registry struct {
	opts   Options
	events chan event.GenericEvent
	// slots bounds the listings running at once.
	slots chan struct{}

	mu       sync.Mutex
	ctx      context.Context // set by Start; listings stop with it
	feeds    map[string]*feed
	interest map[types.NamespacedName]interest
	total    int // listing entries kept over all feeds
	// notified are VaultCertificates a certificate event named since they last asked: their next Check says
	// Changed. Only interested VaultCertificates are marked, so it is bounded like interest.
	notified map[types.NamespacedName]notice
}

// notice is a certificate event not yet acted on: the version it named ("" when none), and until when it holds.
type notice struct {
	version string
	until   time.Time
}

// noticeTTL is how long an event's mark makes a VaultCertificate read its certificate until it holds the version the
// event named: a read that failed (throttled) is retried, and a version that never comes stops costing reads.
const noticeTTL = 5 * time.Minute

// interest is the certificate one VaultCertificate last asked about.
type interest struct{ connection, name string }

// feed is one connection's listing.
type feed struct {
	// host is the vault's host (keyvault.VaultHost of the client's URL), for certificate events; revision the
	// connection's revision the listing was made with.
	host, revision string
	// took and pages describe the last listing: a listing is reused for at least twice as long as it took (so a
	// slow one still answers the waiters it served) and pageCost per page.
	took     time.Duration
	pages    int
	entries  map[string]entry // by lower-case name
	listedAt time.Time        // when the listing in entries started; zero before the first
	listing  bool
	// why and retryAt: the last listing failed; until retryAt, callers read per certificate.
	why     string
	retryAt time.Time
	waiters map[types.NamespacedName]struct{}
	// interested maps a lower-case certificate name to the VaultCertificates that asked about it.
	interested map[string]map[types.NamespacedName]struct{}
}

// entry is what a listing says of one certificate.
type entry struct {
	thumbprint string
	enabled    bool
	updated    time.Time
}

// NewRegistry returns an empty registry; Start gives it the context its listings run under.
func NewRegistry(opts Options) *Registry {
	positiveOr(&opts.MaxCertificates, DefaultMaxCertificates)
	positiveOr(&opts.MaxTotal, DefaultMaxTotal)
	positiveOr(&opts.ListTimeout, DefaultListTimeout)
	positiveOr(&opts.RetryRefused, DefaultRetryRefused)
	positiveOr(&opts.RetryFailed, DefaultRetryFailed)
	positiveOr(&opts.MaxConcurrent, DefaultMaxConcurrent)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Registry{opts: opts, events: make(chan event.GenericEvent, 1024), slots: make(chan struct{}, opts.MaxConcurrent),
		feeds: map[string]*feed{}, interest: map[types.NamespacedName]interest{}, notified: map[types.NamespacedName]notice{}}
}

// positiveOr sets *v to def unless it is positive.
func positiveOr[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Start records the context listings run under and waits for it to end (a manager Runnable).
func (r *Registry) Start(ctx context.Context) error {
	r.mu.Lock()
	r.ctx = ctx
	r.mu.Unlock()
	<-ctx.Done()
	return nil
}

// NeedLeaderElection is false: the registry only serves reconciles, which run on the leader anyway, and it must
// be started before them.
func (r *Registry) NeedLeaderElection() bool { return false }

// Events delivers the VaultCertificates to reconcile: those whose certificate's entry changed, and those that
// waited for a listing.
func (r *Registry) Events() <-chan event.GenericEvent { return r.events }

// Check answers q from the connection's listing, starting a listing when none is recent enough.
func (r *Registry) Check(q Query) Answer {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx == nil {
		return Answer{Verdict: Unavailable, Why: "the vault listing has not started"}
	}
	f := r.feeds[q.Connection]
	if f == nil {
		f = &feed{waiters: map[types.NamespacedName]struct{}{}, interested: map[string]map[types.NamespacedName]struct{}{}}
		r.feeds[q.Connection] = f
	}
	if f.revision != q.Revision && !f.listing {
		// Another vault or identity now: what was listed (or refused) through the old one says nothing.
		r.total -= len(f.entries)
		*f = feed{waiters: f.waiters, interested: f.interested, revision: q.Revision}
	}
	if q.Client != nil && f.host == "" {
		f.host, _ = keyvault.VaultHost(q.Client.VaultURL())
	}
	name := strings.ToLower(q.Certificate)
	r.registerLocked(q.Who, q.Connection, name)
	now := r.opts.Now()
	if r.noticedLocked(q, now) {
		return Answer{Verdict: Changed} // a certificate event named it: read it now, whatever the listing says
	}
	switch {
	case f.why != "" && now.Before(f.retryAt):
		return Answer{Verdict: Unavailable, Why: f.why}
	case !f.listedAt.IsZero() && f.revision == q.Revision && now.Sub(f.listedAt) < f.maxAge(q.MaxAge):
		if e, ok := f.entries[name]; ok && e.enabled && strings.EqualFold(e.thumbprint, q.Thumbprint) {
			return Answer{Verdict: Unchanged}
		}
		return Answer{Verdict: Changed}
	}
	if !q.MayList {
		return Answer{Verdict: Unavailable, Why: "no recent listing"}
	}
	if !f.listing && !r.startListingLocked(q, f) {
		return Answer{Verdict: Unavailable, Why: f.why}
	}
	f.waiters[q.Who] = struct{}{}
	return Answer{Verdict: Waiting}
}

// noticedLocked reports whether a certificate event asks q's VaultCertificate to read its certificate now: an event
// without a version once, one naming a version until the VaultCertificate holds it or noticeTTL has passed.
func (r *Registry) noticedLocked(q Query, now time.Time) bool {
	n, ok := r.notified[q.Who]
	switch {
	case !ok:
		return false
	case n.version == "":
		delete(r.notified, q.Who)
		return true
	case strings.EqualFold(n.version, q.Version) || !now.Before(n.until):
		delete(r.notified, q.Who) // the version is held, or it never came
		return false
	}
	return true
}

// startListingLocked starts a listing of f's vault through q's client, limited to what is left of the budget; false
// (with f.why) when nothing would be kept, so nothing is fetched.
func (r *Registry) startListingLocked(q Query, f *feed) bool {
	limit := min(r.opts.MaxCertificates, r.opts.MaxTotal-r.total+len(f.entries))
	if limit <= 0 {
		r.refuseLocked(f, errOverBudget)
		return false
	}
	f.listing, f.revision = true, q.Revision
	go r.list(r.ctx, q.Connection, f, q.Client, limit)
	return true
}

// maxAge is how old a listing may be to answer a caller whose refresh interval is interval: never less than twice
// what the last listing took, nor than pageCost per page.
func (f *feed) maxAge(interval time.Duration) time.Duration {
	return max(interval, 2*f.took, time.Duration(f.pages)*pageCost)
}

// registerLocked records that who asks about name on connection, replacing what it asked before.
func (r *Registry) registerLocked(who types.NamespacedName, connection, name string) {
	if old, ok := r.interest[who]; ok {
		if old.connection == connection && old.name == name {
			return
		}
		r.unregisterLocked(who, old)
	}
	f := r.feeds[connection]
	set := f.interested[name]
	if set == nil {
		set = map[types.NamespacedName]struct{}{}
		f.interested[name] = set
	}
	set[who] = struct{}{}
	r.interest[who] = interest{connection: connection, name: name}
}

func (r *Registry) unregisterLocked(who types.NamespacedName, in interest) {
	delete(r.interest, who)
	delete(r.notified, who)
	f := r.feeds[in.connection]
	if f == nil {
		return
	}
	delete(f.waiters, who)
	if set := f.interested[in.name]; set != nil {
		delete(set, who)
		if len(set) == 0 {
			delete(f.interested, in.name)
		}
	}
}

// Forget drops what the registry holds for a deleted VaultCertificate.
func (r *Registry) Forget(who types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if in, ok := r.interest[who]; ok {
		r.unregisterLocked(who, in)
	}
}

// ForgetConnection drops a deleted connection's listing.
func (r *Registry) ForgetConnection(connection string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.feeds[connection]
	if f == nil {
		return
	}
	r.total -= len(f.entries)
	for _, set := range f.interested {
		for who := range set {
			delete(r.interest, who)
			delete(r.notified, who)
		}
	}
	delete(r.feeds, connection)
}

// Notify is a certificate event (Event Grid): the VaultCertificates that follow certificate in the vault at
// vaultHost (or, when the event named no host, the vault called vaultName: the first label of the host) are
// woken and read it at once. It returns how many were woken. Only VaultCertificates that asked about the
// certificate before are known; the others still see the change at their next refresh. It never blocks: when
// the controller's queue is full, the mark stays and the VaultCertificate reads the certificate at its next look.
func (r *Registry) Notify(vaultHost, vaultName, certificate, version string) int {
	name := strings.ToLower(certificate)
	var wake []types.NamespacedName
	r.mu.Lock()
	for _, f := range r.feeds {
		if !sameVault(f.host, vaultHost, vaultName) {
			continue
		}
		for who := range f.interested[name] {
			r.notified[who] = notice{version: version, until: r.opts.Now().Add(noticeTTL)}
			wake = append(wake, who)
		}
	}
	r.mu.Unlock()
	r.wake(nil, wake)
	return len(wake)
}

// sameVault reports whether a feed's host is the event's vault: the same host, or without one the same first
// label.
func sameVault(feedHost, vaultHost, vaultName string) bool {
	if feedHost == "" {
		return false
	}
	if vaultHost != "" {
		h, err := keyvault.VaultHost("https://" + vaultHost + "/")
		return err == nil && strings.EqualFold(h, feedHost)
	}
	hostname, _, _ := strings.Cut(feedHost, ":")
	first, _, _ := strings.Cut(hostname, ".")
	return vaultName != "" && strings.EqualFold(first, vaultName)
}

// wake sends the VaultCertificates to the controller's event source, waiting for room until ctx ends; with a nil
// ctx it drops what does not fit.
func (r *Registry) wake(ctx context.Context, who []types.NamespacedName) {
	var done <-chan struct{}
	if ctx != nil {
		done = ctx.Done()
	}
	for _, w := range who {
		ev := event.GenericEvent{Object: &vaultcertv1.VaultCertificate{ObjectMeta: metav1.ObjectMeta{Namespace: w.Namespace, Name: w.Name}}}
		if ctx == nil {
			select {
			case r.events <- ev:
			default:
			}
			continue
		}
		select {
		case r.events <- ev:
		case <-done:
			return
		}
	}
}

// Unavailable says why connection's certificates are read one by one; "" while its listing answers (or none was
// tried yet).
func (r *Registry) Unavailable(connection string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f := r.feeds[connection]; f != nil && f.why != "" && r.opts.Now().Before(f.retryAt) {
		return f.why
	}
	return ""
}

// list makes one listing of f's vault, then wakes the waiters and the VaultCertificates whose entry changed.
func (r *Registry) list(ctx context.Context, connection string, f *feed, kv keyvault.Client, limit int) {
	select {
	case r.slots <- struct{}{}:
		defer func() { <-r.slots }()
	case <-ctx.Done():
		return
	}
	started := r.opts.Now()
	listCtx, cancel := context.WithTimeout(ctx, r.opts.ListTimeout)
	items, err := kv.ListCertificates(listCtx, limit)
	cancel()
	var tooMany *keyvault.TooManyCertificatesError
	if errors.As(err, &tooMany) && limit < r.opts.MaxCertificates {
		err = errOverBudget // the vault is not too large: the budget left was too small
	}

	r.mu.Lock()
	if r.feeds[connection] != f {
		r.mu.Unlock()
		return // the connection was forgotten meanwhile
	}
	f.listing = false
	wake := f.waiters
	f.waiters = map[types.NamespacedName]struct{}{}
	next, err := r.entriesLocked(f, items, err)
	if err != nil {
		r.refuseLocked(f, err)
		r.total -= len(f.entries)
		f.entries, f.listedAt = nil, time.Time{}
	} else {
		f.why, f.retryAt = "", time.Time{}
		if !f.listedAt.IsZero() {
			for name, set := range f.interested {
				if old, ok := f.entries[name]; !ok || old != next[name] {
					for who := range set {
						wake[who] = struct{}{}
					}
				}
			}
		}
		r.total += len(next) - len(f.entries)
		f.entries, f.listedAt = next, started
		f.took, f.pages = r.opts.Now().Sub(started), (len(items)+pageSize-1)/pageSize
	}
	r.mu.Unlock()
	r.wake(ctx, slices.Collect(maps.Keys(wake)))
}

// errOverBudget refuses a listing that would take the registry past MaxTotal entries.
var errOverBudget = errors.New("the controller already keeps as many vault listing entries as it may")

// entriesLocked turns a listing into entries, or says why it cannot be kept.
func (r *Registry) entriesLocked(f *feed, items []keyvault.CertificateItem, err error) (map[string]entry, error) {
	if err != nil {
		return nil, err
	}
	if r.total-len(f.entries)+len(items) > r.opts.MaxTotal {
		return nil, errOverBudget
	}
	next := make(map[string]entry, len(items))
	for _, it := range items {
		if len(it.Name) > maxNameLen {
			continue
		}
		next[strings.ToLower(it.Name)] = entry{thumbprint: it.Thumbprint, enabled: it.Enabled, updated: it.Updated}
	}
	return next, nil
}

// refuseLocked records why f's listing cannot answer and until when its certificates are read one by one: a
// refusal (no list permission, a vault too large, the budget spent) for RetryRefused, any other failure for
// RetryFailed. The reason is for the connection's status.
func (r *Registry) refuseLocked(f *feed, err error) {
	const perCertificate = "; each certificate is read on its own at every refresh"
	var forbidden *keyvault.ForbiddenError
	var tooMany *keyvault.TooManyCertificatesError
	retry := r.opts.RetryRefused
	switch {
	case errors.As(err, &forbidden):
		f.why = "the identity may not list the vault's certificates (" + forbidden.Error() + ")" + perCertificate +
			": assign 'Key Vault Certificate User' on the vault to let one list serve them all"
	case errors.As(err, &tooMany):
		f.why = tooMany.Error() + perCertificate
	case errors.Is(err, errOverBudget):
		f.why = errOverBudget.Error() + perCertificate
	default:
		f.why, retry = "listing the vault's certificates failed ("+err.Error()+"); each certificate is read on its own until it is tried again", r.opts.RetryFailed
	}
	f.retryAt = r.opts.Now().Add(retry)
}

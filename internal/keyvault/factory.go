package keyvault

import (
	"fmt"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// FactoryOptions configures a Factory.
type FactoryOptions struct {
	// Governor is the process-wide rate governor; nil means a new one with default settings.
	Governor *Governor
	// Transport replaces the HTTP transport of every client and credential (tests). When set,
	// CloudConfig.CABundle is ignored: the transport decides what to trust. It is still wrapped by the
	// host allow-list and the response cap.
	Transport policy.Transporter
	// UserAgent is prepended to the SDK's User-Agent (azcore keeps at most 24 characters, spaces become "/").
	UserAgent string

	// retry overrides the SDK retry options (tests shorten the delays).
	retry *policy.RetryOptions
}

// Factory builds and caches one Client per connection. A cached client is reused while the connection's
// Config keeps the same Fingerprint, and rebuilt (new credential, new token) when it changes, or after
// the vault refused its token with a 401 (UnauthorizedError). It is safe for concurrent use.
//
// Builds of different keys run in parallel: a slow build (a costly credential to parse) holds only its own
// key. The controller drops the clients of deleted connections with Forget, and sweeps with Retain.
type Factory struct {
	opts FactoryOptions
	gov  *Governor
	// reads are the reads its clients share (GetSecret of one version through one connection).
	reads *sharedReads

	mu      sync.Mutex // guards entries and the fields of every entry except build; never held while building
	entries map[string]*factoryEntry

	// buildHook, when set (tests), runs at the start of every build, with no lock but the key's held.
	buildHook func(key string)
}

// factoryEntry is one connection's cached client.
type factoryEntry struct {
	// build serialises builds of this key, so concurrent callers build a client once.
	build sync.Mutex

	// Guarded by Factory.mu.
	fingerprint string
	client      *azureClient // nil until the first build succeeds
}

// usable returns the cached client if it was built from fp and its token was not refused. Callers hold f.mu.
func (e *factoryEntry) usable(fp string) *azureClient {
	if e.client != nil && e.fingerprint == fp && !e.client.refused.Load() {
		return e.client
	}
	return nil
}

// NewFactory returns a Factory.
func NewFactory(opts FactoryOptions) *Factory {
	gov := opts.Governor
	if gov == nil {
		gov = NewGovernor(GovernorOptions{})
	}
	registerMetrics()
	// Shared reads expire on the governor's clock (tests set it).
	return &Factory{opts: opts, gov: gov, reads: newSharedReads(gov.opts.Now), entries: map[string]*factoryEntry{}}
}

// Governor returns the governor every client of this factory passes, so the controller can ask
// PausedUntil(host) before it even builds a client.
func (f *Factory) Governor() *Governor { return f.gov }

// Client returns the client for key (the connection's identity, e.g. "VaultConnection/ns/name"), building
// it when absent or when cfg's Fingerprint changed. Configuration errors wrap ErrInvalidConfig; building
// makes no network call.
//
// cfg.RequestsPerSecond and cfg.Burst limit this connection's client only, on top of the vault host's
// shared budget; with cfg.SetsHostBudget (ClusterVaultConnections only) they also set the host's budget on
// the Governor. Both are applied on every call, without a rebuild.
func (f *Factory) Client(key string, cfg Config) (Client, error) {
	if key == "" {
		return nil, fmt.Errorf("%w: empty connection key", ErrInvalidConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	fp := cfg.Fingerprint()
	for {
		f.mu.Lock()
		e := f.entries[key]
		if e == nil {
			e = &factoryEntry{}
			f.entries[key] = e
		}
		if c := e.usable(fp); c != nil {
			f.applyLimitsLocked(key, c, cfg)
			f.mu.Unlock()
			return c, nil
		}
		f.mu.Unlock()

		c, again, err := f.build(key, e, fp, cfg)
		if again {
			continue // the entry was forgotten while this call waited for it
		}
		return c, err
	}
}

// build builds key's client under the key's own lock. again reports that e was forgotten meanwhile.
func (f *Factory) build(key string, e *factoryEntry, fp string, cfg Config) (c Client, again bool, err error) {
	e.build.Lock()
	defer e.build.Unlock()

	f.mu.Lock()
	if f.entries[key] != e {
		f.mu.Unlock()
		return nil, true, nil
	}
	if c := e.usable(fp); c != nil { // built by the caller this one waited for
		f.applyLimitsLocked(key, c, cfg)
		f.mu.Unlock()
		return c, false, nil
	}
	f.mu.Unlock()

	if f.buildHook != nil {
		f.buildHook(key)
	}
	built, err := newAzureClient(cfg, azureClientOptions{
		governor:      f.gov,
		transport:     f.opts.Transport,
		applicationID: f.opts.UserAgent,
		retry:         f.opts.retry,
		reads:         f.reads,
	})

	f.mu.Lock()
	if err != nil {
		if e.client == nil && f.entries[key] == e {
			delete(f.entries, key) // no empty entries for keys that never build
		}
		f.mu.Unlock()
		return nil, false, err
	}
	if f.entries[key] != e {
		// Forgotten during the build: the connection is gone. This caller still gets a working client,
		// but it is not cached, so nothing of it outlives the call.
		f.mu.Unlock()
		return built, false, nil
	}
	old := e.client
	e.client, e.fingerprint = built, fp
	f.gov.acquire(built.host)
	hostLabels.acquire(built.host)
	if old != nil {
		f.releaseLocked(key, old, old.host != built.host)
	}
	f.applyLimitsLocked(key, built, cfg)
	f.mu.Unlock()
	if old != nil {
		old.close()
	}
	return built, false, nil
}

// applyLimitsLocked applies cfg's rate limits to c and, with SetsHostBudget, to c's host. Callers hold f.mu,
// so a Forget cannot slip between the client and its budget.
func (f *Factory) applyLimitsLocked(key string, c *azureClient, cfg Config) {
	c.limit.set(f.gov, cfg.RequestsPerSecond, cfg.Burst)
	if cfg.SetsHostBudget && (cfg.RequestsPerSecond > 0 || cfg.Burst > 0) {
		f.gov.setConnectionBudget(c.host, key, cfg.RequestsPerSecond, cfg.Burst)
	} else {
		f.gov.clearConnectionBudget(c.host, key)
	}
}

// releaseLocked drops key's hold on c's host: its host budget (when leftHost, or always on Forget), and one
// reference, which with the last client of the host drops the Governor's state and the host's metric
// series. Callers hold f.mu.
func (f *Factory) releaseLocked(key string, c *azureClient, leftHost bool) {
	if leftHost {
		f.gov.clearConnectionBudget(c.host, key)
	}
	f.gov.release(c.host)
	hostLabels.release(c.host)
	f.reads.forgetClient(c.id)
}

// Forget drops the cached client for key (the connection was deleted): the client, its credential and
// token, and its connection budget. When no other client of this Factory or another one uses its vault
// host any more, the Governor's state for that host (bucket, pause, backoff; budgets from SetLimit stay)
// and the host's metric series go too. Unknown keys are ignored. Calls in flight on the dropped client
// finish normally.
func (f *Factory) Forget(key string) {
	f.mu.Lock()
	e := f.entries[key]
	delete(f.entries, key)
	var old *azureClient
	if e != nil && e.client != nil {
		old = e.client
		f.releaseLocked(key, old, true)
	}
	f.mu.Unlock()
	if old != nil {
		old.close()
	}
}

// Retain forgets (see Forget) every cached client whose key keep rejects, and returns how many it forgot.
// The controller calls it periodically with a keep that reports whether the connection named by the key
// still exists, so a client built by a reconcile racing the connection's deletion does not stay forever. keep runs with no
// lock of the Factory held. Retain also sweeps Governor state left by requests that were still in flight
// when their client was forgotten.
func (f *Factory) Retain(keep func(key string) bool) int {
	f.mu.Lock()
	keys := make([]string, 0, len(f.entries))
	for k := range f.entries {
		keys = append(keys, k)
	}
	f.mu.Unlock()
	forgotten := 0
	for _, k := range keys {
		if !keep(k) {
			f.Forget(k)
			forgotten++
		}
	}
	f.gov.sweep()
	return forgotten
}

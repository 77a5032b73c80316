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
	// CloudConfig.CABundle is ignored: the transport decides what to trust.
	Transport policy.Transporter
	// UserAgent is prepended to the SDK's User-Agent (azcore keeps at most 24 characters, spaces become "/").
	UserAgent string

	// retry overrides the SDK retry options (tests shorten the delays).
	retry *policy.RetryOptions
}

// Factory builds and caches one Client per connection. A cached client is reused while the connection's
// Config keeps the same Fingerprint, and rebuilt (new credential, new token) when it changes, or after
// the vault refused its token with a 401 (UnauthorizedError). It is safe for concurrent use.
type Factory struct {
	opts FactoryOptions
	gov  *Governor

	mu      sync.Mutex
	clients map[string]cachedClient
}

// cachedClient is one connection's client and the fingerprint it was built from.
type cachedClient struct {
	fingerprint string
	client      *azureClient
}

// NewFactory returns a Factory.
func NewFactory(opts FactoryOptions) *Factory {
	gov := opts.Governor
	if gov == nil {
		gov = NewGovernor(GovernorOptions{})
	}
	registerMetrics()
	return &Factory{opts: opts, gov: gov, clients: map[string]cachedClient{}}
}

// Governor returns the governor every client of this factory passes, so the controller can ask
// PausedUntil(host) before it even builds a client.
func (f *Factory) Governor() *Governor { return f.gov }

// Client returns the client for key (the connection's identity, e.g. "VaultConnection/ns/name"), building
// it when absent or when cfg's Fingerprint changed. Configuration errors wrap ErrInvalidConfig; building
// makes no network call. A non-zero cfg.RequestsPerSecond or cfg.Burst is applied to the vault's budget
// on the shared Governor.
func (f *Factory) Client(key string, cfg Config) (Client, error) {
	if key == "" {
		return nil, fmt.Errorf("%w: empty connection key", ErrInvalidConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.RequestsPerSecond > 0 || cfg.Burst > 0 {
		host, _ := VaultHost(cfg.VaultURL) // validated above
		f.gov.SetLimit(host, cfg.RequestsPerSecond, cfg.Burst)
	}
	fp := cfg.Fingerprint()

	f.mu.Lock()
	defer f.mu.Unlock()
	if cached, ok := f.clients[key]; ok && cached.fingerprint == fp && !cached.client.refused.Load() {
		return cached.client, nil
	}
	// Building is local work (parsing, constructing pipelines), so holding the lock is cheap and keeps
	// two workers from building the same client twice.
	c, err := newAzureClient(cfg, azureClientOptions{
		governor:      f.gov,
		transport:     f.opts.Transport,
		applicationID: f.opts.UserAgent,
		retry:         f.opts.retry,
	})
	if err != nil {
		return nil, err
	}
	if old, ok := f.clients[key]; ok {
		old.client.close()
	}
	f.clients[key] = cachedClient{fingerprint: fp, client: c}
	return c, nil
}

// Forget drops the cached client for key (the connection was deleted). Unknown keys are ignored.
func (f *Factory) Forget(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if old, ok := f.clients[key]; ok {
		old.client.close()
		delete(f.clients, key)
	}
}

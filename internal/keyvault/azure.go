package keyvault

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azcertificates"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/vaultcert/vaultcert/internal/pki"
)

// SDK retry settings. 429 is deliberately absent from the retried statuses: the Governor owns every wait
// on a 429 (a pause the controller turns into a requeue), so the SDK's sleeps never stack on top of it.
const (
	sdkMaxRetries    = 3
	sdkRetryDelay    = 800 * time.Millisecond
	sdkMaxRetryDelay = 10 * time.Second
	sdkTryTimeout    = 30 * time.Second
	// maxObjectName is Key Vault's limit on object names; maxThumbprintBytes fits any x5t (SHA-1 is 20 bytes).
	maxObjectName      = 127
	maxThumbprintBytes = 64
	// maxPages bounds ListCertificateVersions against a service that never stops returning nextLink.
	maxPages = 1000
	// maxVersions bounds what ListCertificateVersions keeps in memory (a certificate renewed daily for 25 years
	// has about 9,000).
	maxVersions = 10000
)

// newRetryOptions is the SDK retry policy for Key Vault clients.
func newRetryOptions() policy.RetryOptions {
	return policy.RetryOptions{
		MaxRetries:    sdkMaxRetries,
		RetryDelay:    sdkRetryDelay,
		MaxRetryDelay: sdkMaxRetryDelay,
		TryTimeout:    sdkTryTimeout,
		StatusCodes: []int{
			http.StatusRequestTimeout,
			http.StatusInternalServerError,
			http.StatusBadGateway,
			http.StatusServiceUnavailable,
			http.StatusGatewayTimeout,
		},
	}
}

// azureClient implements Client on the Azure SDK.
type azureClient struct {
	vaultURL string
	host     string
	certs    *azcertificates.Client
	secrets  *azsecrets.Client
	gov      *Governor
	// httpClient is the client's own transport (nil when a transport was injected); closed on replacement.
	httpClient *http.Client
	// refused is set when the vault answered 401 to this client's token. The credential's cache would
	// keep offering that token, so the Factory builds a new client on its next call.
	refused atomic.Bool
	// limit is the connection's own request budget (Config.RequestsPerSecond and Burst).
	limit connLimiter
	// id names this client in reads, which share identical calls of this client only (one identity).
	id    uint64
	reads *sharedReads
}

// clientIDs numbers clients for sharedReads.
var clientIDs atomic.Uint64

// azureClientOptions is what newAzureClient needs besides the Config.
type azureClientOptions struct {
	governor      *Governor
	transport     policy.Transporter // nil: a transport built from cfg.Cloud.CABundle
	applicationID string
	retry         *policy.RetryOptions // nil: newRetryOptions(); tests shorten the delays
	reads         *sharedReads         // nil: nothing shared
}

// newAzureClient builds the credential and both SDK clients for cfg. It makes no network call.
func newAzureClient(cfg Config, o azureClientOptions) (*azureClient, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	host, _ := VaultHost(cfg.VaultURL)                    // validated above
	allowed, _ := normalizeAllowedHosts(cfg.AllowedHosts) // validated above
	c := &azureClient{vaultURL: cfg.VaultURL, host: host, gov: o.governor, id: clientIDs.Add(1), reads: o.reads}
	if c.reads == nil {
		c.reads = newSharedReads(nil)
	}
	c.limit.set(o.governor, cfg.RequestsPerSecond, cfg.Burst)

	next := o.transport
	if next == nil {
		hc, err := NewHTTPClient(cfg.Cloud.CABundle)
		if err != nil {
			return nil, err
		}
		c.httpClient, next = hc, hc
	}
	// One guard under every pipeline: the credential's (challenge tokens, discovery) and the vault clients'.
	transport := newGuardTransport(next, allowed)
	cred, err := newCredential(cfg.Auth, cfg.Cloud, credentialClientOptions(cfg.Cloud, transport, o.applicationID))
	if err != nil {
		return nil, err
	}

	retry := newRetryOptions()
	if o.retry != nil {
		retry = *o.retry
	}
	co := azcore.ClientOptions{
		Transport:        transport,
		Retry:            retry,
		Telemetry:        policy.TelemetryOptions{ApplicationID: o.applicationID},
		PerRetryPolicies: []policy.Policy{&vaultPolicy{gov: o.governor, now: time.Now, conn: &c.limit}},
		// Logging stays at its default: bodies are never logged, so secret values cannot leak there.
	}
	c.certs, err = azcertificates.NewClient(cfg.VaultURL, cred, &azcertificates.ClientOptions{
		ClientOptions:                        co,
		DisableChallengeResourceVerification: cfg.Cloud.DisableChallengeResourceVerification,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	c.secrets, err = azsecrets.NewClient(cfg.VaultURL, cred, &azsecrets.ClientOptions{
		ClientOptions:                        co,
		DisableChallengeResourceVerification: cfg.Cloud.DisableChallengeResourceVerification,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	return c, nil
}

// close releases idle connections of a client the factory replaced; in-flight calls finish normally.
func (c *azureClient) close() {
	if c.httpClient != nil {
		c.httpClient.CloseIdleConnections()
	}
}

// VaultURL implements Client.
func (c *azureClient) VaultURL() string { return c.vaultURL }

// classify is Classify plus the Governor's view of a 429: when the vault is paused, and for how long.
func (c *azureClient) classify(operation string, err error) error {
	err = Classify(operation, err)
	if th, ok := AsThrottled(err); ok && th.PausedUntil.IsZero() && c.gov != nil {
		th.PausedUntil = c.gov.PausedUntil(c.host)
	}
	if IsUnauthorized(err) {
		c.refused.Store(true)
	}
	return err
}

// GetCertificate implements Client.
func (c *azureClient) GetCertificate(ctx context.Context, name, version string) (*Certificate, error) {
	return c.reads.certificate(ctx, keyOf(c.id, "GetCertificate", name, version), func(ctx context.Context) (*Certificate, error) {
		return c.getCertificate(ctx, name, version)
	})
}

// getCertificate is GetCertificate without sharing.
func (c *azureClient) getCertificate(ctx context.Context, name, version string) (*Certificate, error) {
	const op = "GetCertificate"
	if name == "" {
		return nil, fmt.Errorf("Key Vault %s: empty certificate name", op)
	}
	resp, err := c.certs.GetCertificate(ctx, name, version, nil)
	if err != nil {
		return nil, c.classify(op, err)
	}
	return mapCertificate(name, version, resp.Certificate)
}

// mapCertificate turns the SDK bundle into a Certificate, checking the invariants the controller relies on.
func mapCertificate(name, version string, b azcertificates.Certificate) (*Certificate, error) {
	const op = "GetCertificate"
	if b.ID == nil {
		return nil, fmt.Errorf("Key Vault %s %s: the response has no id", op, name)
	}
	got := b.ID.Version()
	if got == "" {
		return nil, fmt.Errorf("Key Vault %s %s: the response id %q has no version", op, name, string(*b.ID))
	}
	if version != "" && !strings.EqualFold(got, version) {
		return nil, fmt.Errorf("Key Vault %s %s: asked for version %s, got %s", op, name, version, got)
	}
	cert := &Certificate{
		Name:    name,
		Version: got,
		ID:      string(*b.ID),
		CER:     b.CER,
		Tags:    tags(b.Tags),
		Enabled: true,
	}
	if n := b.ID.Name(); n != "" {
		cert.Name = n
	}
	if b.SID != nil {
		cert.SecretID = string(*b.SID)
	}
	cert.Thumbprint = thumbprint(b.X509Thumbprint, b.CER)
	if a := b.Attributes; a != nil {
		cert.Enabled = enabled(a.Enabled)
		cert.NotBefore = derefTime(a.NotBefore)
		cert.Expires = derefTime(a.Expires)
		cert.Created = derefTime(a.Created)
		cert.Updated = derefTime(a.Updated)
	}
	if p := b.Policy; p != nil {
		if p.SecretProperties != nil && p.SecretProperties.ContentType != nil {
			cert.ContentType = *p.SecretProperties.ContentType
		}
		if p.KeyProperties != nil && p.KeyProperties.Exportable != nil {
			v := *p.KeyProperties.Exportable
			cert.Exportable = &v
		}
		cert.Policy = fromSDKPolicy(p)
	}
	// The bundle's own contentType is the secret's; use it when the policy is absent.
	if cert.ContentType == "" && b.ContentType != nil {
		cert.ContentType = *b.ContentType
	}
	return cert, nil
}

// ListCertificateVersions implements Client. It follows every page and sorts newest first.
func (c *azureClient) ListCertificateVersions(ctx context.Context, name string) ([]CertificateVersion, error) {
	const op = "ListCertificateVersions"
	if name == "" {
		return nil, fmt.Errorf("Key Vault %s: empty certificate name", op)
	}
	var out []CertificateVersion
	pager := c.certs.NewListCertificatePropertiesVersionsPager(name, nil)
	for pages := 0; pager.More(); pages++ {
		if pages == maxPages {
			return nil, fmt.Errorf("Key Vault %s %s: more than %d pages", op, name, maxPages)
		}
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, c.classify(op, err)
		}
		for _, item := range page.Value {
			if item == nil || item.ID == nil {
				continue
			}
			v := CertificateVersion{
				Version:    item.ID.Version(),
				Thumbprint: thumbprint(item.X509Thumbprint, nil),
				Enabled:    true,
				Tags:       tags(item.Tags),
			}
			if ValidateTags(v.Tags) != nil {
				// Key Vault never stores these: a hostile list is not kept (nor trusted as an owner record).
				v.Tags = nil
			}
			if a := item.Attributes; a != nil {
				v.Enabled = enabled(a.Enabled)
				v.Created = derefTime(a.Created)
				v.NotBefore = derefTime(a.NotBefore)
				v.Expires = derefTime(a.Expires)
			}
			if len(out) == maxVersions {
				return nil, fmt.Errorf("Key Vault %s %s: more than %d versions", op, name, maxVersions)
			}
			out = append(out, v)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

// ListCertificates implements Client.
func (c *azureClient) ListCertificates(ctx context.Context, limit int) ([]CertificateItem, error) {
	const op = "ListCertificates"
	var out []CertificateItem
	pager := c.certs.NewListCertificatePropertiesPager(nil)
	// Pages can be sparse (Key Vault skips pending certificates), but a vault that answers empty pages with a
	// nextLink forever is stopped.
	pageLimit := max(maxPages, limit/5)
	for pages := 0; pager.More(); pages++ {
		if pages == pageLimit {
			return nil, fmt.Errorf("Key Vault %s: more than %d pages", op, pageLimit)
		}
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, c.classify(op, err)
		}
		for _, item := range page.Value {
			if item == nil || item.ID == nil {
				continue
			}
			name := item.ID.Name()
			if name == "" || len(name) > maxObjectName || len(item.X509Thumbprint) > maxThumbprintBytes {
				continue // no real certificate's: not kept, so a hostile page cannot grow the listing
			}
			if len(out) == limit {
				return nil, &TooManyCertificatesError{Max: limit}
			}
			// Copies, so the kept strings do not hold the page's buffers.
			it := CertificateItem{Name: strings.Clone(name), Thumbprint: thumbprint(item.X509Thumbprint, nil), Enabled: true}
			if a := item.Attributes; a != nil {
				it.Enabled = enabled(a.Enabled)
				it.Updated = derefTime(a.Updated)
			}
			out = append(out, it)
		}
	}
	return out, nil
}

// GetSecret implements Client.
func (c *azureClient) GetSecret(ctx context.Context, name, version string) (*Secret, error) {
	read := func(ctx context.Context) (*Secret, error) { return c.getSecret(ctx, name, version) }
	if version == "" {
		// "The latest" changes with every rotation: kept for seconds only, and under the version it named.
		return c.reads.secret(ctx, keyOf(c.id, "GetSecret", name, ""), sharedLatestTTL,
			func(v string) readKey { return keyOf(c.id, "GetSecret", name, v) }, read)
	}
	return c.reads.secret(ctx, keyOf(c.id, "GetSecret", name, version), sharedSecretTTL, nil, read)
}

// GetLatestSecret implements Client. Its reads are shared among callers told of a change (many namespaces woken by
// one listing), under a key of their own: a read of the latest already in flight for anyone else may have started
// before the change. A kept one naming the held version is stale for the caller and dropped.
func (c *azureClient) GetLatestSecret(ctx context.Context, name, held string) (*Secret, error) {
	key := keyOf(c.id, "GetLatestSecret", name, "")
	c.reads.forgetIf(key, func(kept *Secret) bool { return kept.Version == held })
	return c.reads.secret(ctx, key, sharedLatestTTL, func(v string) readKey { return keyOf(c.id, "GetSecret", name, v) },
		func(ctx context.Context) (*Secret, error) { return c.getSecret(ctx, name, "") })
}

// getSecret is GetSecret without sharing.
func (c *azureClient) getSecret(ctx context.Context, name, version string) (*Secret, error) {
	const op = "GetSecret"
	if name == "" {
		return nil, fmt.Errorf("Key Vault %s: a name is required", op)
	}
	resp, err := c.secrets.GetSecret(ctx, name, version, nil)
	if err != nil {
		return nil, c.classify(op, redactDecodeError(err))
	}
	s := resp.Secret
	var got string
	if s.ID != nil {
		got = s.ID.Version()
	}
	switch {
	case version == "" && got == "":
		// The latest version is only useful when the answer says which it is.
		return nil, fmt.Errorf("Key Vault %s %s: the answer names no version", op, name)
	case got != "" && version != "" && !strings.EqualFold(got, version):
		return nil, fmt.Errorf("Key Vault %s %s: asked for version %s, got %s", op, name, version, got)
	case s.Managed == nil || !*s.Managed:
		// A plain secret of that name is not a certificate's key material (Key Vault marks those managed).
		return nil, &NotFoundError{ServiceError{StatusCode: http.StatusNotFound, Code: "CertificateNotFound", Operation: op,
			Message: fmt.Sprintf("secret %q is not the key material of a certificate (it is not managed by a certificate)", name)}}
	}
	out := &Secret{Version: version}
	if got != "" {
		out.Version = got
	}
	if s.ContentType != nil {
		out.ContentType = *s.ContentType
	}
	if s.Value == nil || *s.Value == "" {
		return nil, fmt.Errorf("Key Vault %s %s/%s: the secret has no value", op, name, out.Version)
	}
	out.Value = *s.Value
	return out, nil
}

// redactDecodeError drops the text of a failure to decode a (successful) secret response: JSON errors
// can quote bytes of the body, which here is key material.
func redactDecodeError(err error) error {
	var re *azcore.ResponseError
	if errors.As(err, &re) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if strings.HasPrefix(err.Error(), "unmarshalling type") {
		return errors.New("could not decode the secret response (details withheld: the body holds key material)")
	}
	return err
}

// CheckAccess implements Client: one page of at most one certificate.
func (c *azureClient) CheckAccess(ctx context.Context) error {
	const op = "CheckAccess"
	pager := c.certs.NewListCertificatePropertiesPager(nil)
	if _, err := pager.NextPage(withMaxResults(ctx, 1)); err != nil {
		return c.classify(op, err)
	}
	return nil
}

// thumbprint is Key Vault's x5t as upper-case hex; computed from the DER when the service sent none.
func thumbprint(x5t, der []byte) string {
	switch {
	case len(x5t) > 0:
		return strings.ToUpper(hex.EncodeToString(x5t))
	case len(der) > 0:
		return pki.ThumbprintDER(der)
	}
	return ""
}

// tags flattens the SDK's map of pointers; nil when there are none.
func tags(in map[string]*string) map[string]string {
	if len(in) == 0 {
		return nil
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		if v != nil {
			out[k] = *v
		}
	}
	return out
}

// enabled reads attributes.enabled; absent means enabled, Key Vault's default for a new object.
func enabled(b *bool) bool {
	return b == nil || *b
}

func derefTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

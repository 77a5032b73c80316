package eventgrid

import (
	"cmp"
	"context"
	"crypto"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/golang-jwt/jwt/v5"
)

// EventGridAppID is the application (client) ID of Azure Event Grid's service principal, the same in every
// tenant: the appid (v1 tokens) or azp (v2 tokens) of the tokens Event Grid presents.
const EventGridAppID = "4962773b-9cdb-44cf-a8bf-237846a00ab7"

// Defaults of EntraOptions.
const (
	DefaultAuthorityHost  = "https://login.microsoftonline.com/"
	DefaultClockSkew      = 2 * time.Minute
	DefaultKeysTTL        = time.Hour
	DefaultKeysMinRefresh = time.Minute
	DefaultFetchTimeout   = 10 * time.Second
	DefaultMaxFetchBytes  = 1 << 20
)

// Bounds of the token path, whatever the options.
const (
	maxTokenBytes = 16 << 10 // Entra tokens are a few KiB; a larger one is not worth parsing
	maxKeys       = 64       // keys kept from one JWKS (Entra publishes fewer than ten)
	maxKidLen     = 256
	// maxStale is how long after their fetch keys stay in use while refreshes fail: long enough to ride out an
	// Entra or network outage, short enough that a key Entra withdrew stops being trusted.
	maxStale = 24 * time.Hour
)

// EntraOptions configures validation of Microsoft Entra ID tokens, what Event Grid sends as
// "Authorization: Bearer <token>" when the subscription names an Entra application
// (--azure-active-directory-tenant-id / --azure-active-directory-application-id-or-uri).
type EntraOptions struct {
	// TenantID is the tenant whose keys sign the tokens (a GUID, or a domain name of the tenant). Required.
	TenantID string
	// Audiences are the accepted aud values: the application ID URI or application (client) ID given to Event
	// Grid. Entra puts whatever identifier was asked for in v1 tokens and the client ID in v2 tokens, so listing
	// both is harmless. At least one is required.
	Audiences []string
	// AuthorityHost is the https URL of Entra ID; the OIDC metadata is read from
	// {AuthorityHost}{TenantID}/v2.0/.well-known/openid-configuration. Empty means DefaultAuthorityHost.
	AuthorityHost string
	// HTTPClient fetches the metadata and the keys. Required: the caller decides which CAs are trusted and which
	// hosts may be reached (the metadata names the JWKS URL). Its own Timeout, if any, applies too.
	HTTPClient *http.Client
	// Issuers, when set, are the only accepted iss values. Empty means the issuer of the tenant's metadata (v2
	// tokens) and https://sts.windows.net/{tenant ID}/ (v1 tokens, what an application gets unless its manifest
	// asks for v2); set it for national clouds, whose v1 issuer is on another host.
	Issuers []string
	// AllowedAppIDs, when set, restricts the caller: the token's azp (v2) or appid (v1) must be one of them.
	// EventGridAppID is Event Grid's. Empty accepts any caller the audience's application let in.
	AllowedAppIDs []string
	// RequiredRole, when set, must be among the token's roles (for example
	// AzureEventGridSecureWebhookSubscriber, the app role Microsoft's setup script assigns to Event Grid).
	RequiredRole string
	// ClockSkew is the leeway on exp and nbf. Zero means DefaultClockSkew.
	ClockSkew time.Duration
	// KeysTTL is how long fetched keys are used before they are fetched again. Zero means DefaultKeysTTL.
	KeysTTL time.Duration
	// KeysMinRefresh is the least time between two fetches, so tokens naming unknown key IDs (anyone can send
	// those) cannot make the handler hammer Entra. Zero means DefaultKeysMinRefresh.
	KeysMinRefresh time.Duration
	// FetchTimeout bounds one fetch of metadata plus keys. Zero means DefaultFetchTimeout.
	FetchTimeout time.Duration
	// MaxFetchBytes bounds each fetched document. Zero means DefaultMaxFetchBytes.
	MaxFetchBytes int64
}

// Errors of token validation. errKeysUnavailable is the one that is not the sender's fault.
var (
	errKeysUnavailable = errors.New("the Entra signing keys could not be fetched")
	errUnknownKey      = errors.New("token signed by a key the tenant does not publish")
	errBadIssuer       = errors.New("token issuer not accepted")
	errBadApp          = errors.New("token caller (azp/appid) not accepted")
	errMissingRole     = errors.New("token lacks the required role")
	errTokenTooLarge   = errors.New("token too large")
)

// entraClaims are the claims read from a token; the registered ones are checked by the jwt parser.
type entraClaims struct {
	jwt.RegisteredClaims
	AppID string   `json:"appid"`
	AZP   string   `json:"azp"`
	Roles []string `json:"roles"`
}

// tokenValidator checks Entra tokens against a tenant's published keys, which it fetches and caches.
type tokenValidator struct {
	opts        EntraOptions
	metadataURL string
	now         func() time.Time
	log         logr.Logger
	parser      *jwt.Parser

	fetchMu sync.Mutex // one fetch at a time; waiters then find its result

	mu      sync.Mutex
	keys    map[string]crypto.PublicKey // by kid
	issuers []string
	fetched time.Time // last successful fetch
	tried   time.Time // last fetch attempt
}

func newTokenValidator(o EntraOptions, now func() time.Time, log logr.Logger) (*tokenValidator, error) {
	// The multi-tenant aliases would accept tokens of any tenant; their metadata names no issuer to check.
	if o.TenantID == "" || strings.ContainsAny(o.TenantID, "/?#%") ||
		slices.Contains([]string{"common", "organizations", "consumers"}, strings.ToLower(o.TenantID)) {
		return nil, errors.New("eventgrid: Entra TenantID is required and must be one tenant's ID or domain")
	}
	if len(o.Audiences) == 0 || slices.Contains(o.Audiences, "") {
		return nil, errors.New("eventgrid: Entra Audiences are required and must not be empty")
	}
	if o.HTTPClient == nil {
		return nil, errors.New("eventgrid: Entra HTTPClient is required")
	}
	metadataURL, err := oidcMetadataURL(cmp.Or(o.AuthorityHost, DefaultAuthorityHost), o.TenantID)
	if err != nil {
		return nil, err
	}
	o.ClockSkew = orDefault(o.ClockSkew, DefaultClockSkew)
	o.KeysTTL = orDefault(o.KeysTTL, DefaultKeysTTL)
	o.KeysMinRefresh = orDefault(o.KeysMinRefresh, DefaultKeysMinRefresh)
	o.FetchTimeout = orDefault(o.FetchTimeout, DefaultFetchTimeout)
	o.MaxFetchBytes = orDefault(o.MaxFetchBytes, DefaultMaxFetchBytes)
	return &tokenValidator{
		opts:        o,
		metadataURL: metadataURL,
		now:         now,
		log:         log,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{"RS256", "ES256"}),
			jwt.WithLeeway(o.ClockSkew),
			jwt.WithTimeFunc(now),
			jwt.WithExpirationRequired(),
			jwt.WithAudience(o.Audiences...),
		),
	}, nil
}

// validate checks a token: signature by a key of the tenant, exp/nbf, audience, issuer and, when configured,
// the caller and role. An error wrapping errKeysUnavailable means the token could not be checked.
func (v *tokenValidator) validate(ctx context.Context, token string) error {
	if len(token) > maxTokenBytes {
		return errTokenTooLarge
	}
	var c entraClaims
	if _, err := v.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		return v.key(ctx, kid)
	}); err != nil {
		return err
	}
	v.mu.Lock()
	issuers := v.issuers
	v.mu.Unlock()
	switch {
	case !slices.Contains(issuers, c.Issuer):
		return errBadIssuer
	case len(v.opts.AllowedAppIDs) > 0 && !slices.Contains(v.opts.AllowedAppIDs, cmp.Or(c.AZP, c.AppID)):
		return errBadApp
	case v.opts.RequiredRole != "" && !slices.Contains(c.Roles, v.opts.RequiredRole):
		return errMissingRole
	}
	return nil
}

// key returns the public key named kid, fetching the key set when it is missing, expired or lacks kid (Entra
// publishes new keys before signing with them). A kid missing from a set fetched within KeysMinRefresh is the
// sender's problem; missing from an older set that could not be refreshed, it may be a new key, and the token
// could not be checked.
func (v *tokenValidator) key(ctx context.Context, kid string) (crypto.PublicKey, error) {
	if kid == "" || len(kid) > maxKidLen {
		return nil, errUnknownKey
	}
	if k, age, _ := v.cached(kid); k != nil && age < v.opts.KeysTTL {
		return k, nil
	}
	v.refresh(ctx)
	k, age, usable := v.cached(kid)
	switch {
	case !usable:
		return nil, errKeysUnavailable
	case k != nil:
		return k, nil
	case age < v.opts.KeysMinRefresh:
		return nil, errUnknownKey
	}
	return nil, errKeysUnavailable
}

// cached looks kid up in the key set; age is the set's, usable says whether there is a set fetched within
// KeysTTL plus maxStale.
func (v *tokenValidator) cached(kid string) (k crypto.PublicKey, age time.Duration, usable bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.fetched.IsZero() {
		return nil, 0, false
	}
	age = v.now().Sub(v.fetched)
	if age >= v.opts.KeysTTL+maxStale {
		return nil, age, false
	}
	return v.keys[kid], age, true
}

// refresh fetches metadata and keys unless a fetch was tried within KeysMinRefresh. Failures keep the previous
// keys (cached bounds how long) and are logged, never answered: the sender only learns it was refused.
func (v *tokenValidator) refresh(ctx context.Context) {
	v.fetchMu.Lock()
	defer v.fetchMu.Unlock()
	now := v.now()
	v.mu.Lock()
	recent := !v.tried.IsZero() && now.Sub(v.tried) < v.opts.KeysMinRefresh
	if !recent {
		v.tried = now
	}
	v.mu.Unlock()
	if recent {
		return
	}
	// Not the request's own context: a sender hanging up must not abort the fetch every waiter shares.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), v.opts.FetchTimeout)
	defer cancel()
	keys, issuers, err := v.fetch(ctx)
	if err != nil {
		v.log.Error(err, "cannot fetch the Entra ID signing keys; tokens are checked against the previous keys, if any", "metadata", v.metadataURL)
		return
	}
	v.mu.Lock()
	v.keys, v.issuers, v.fetched = keys, issuers, now
	v.mu.Unlock()
}

// orDefault returns v, or def when v is zero or negative.
func orDefault[T int | int64 | float64 | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

package keyvault

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// ErrInvalidConfig marks configuration errors (bad vault URL, missing IDs, unreadable client certificate,
// CA bundle without certificates): retrying does not help until the connection's spec or Secret changes.
var ErrInvalidConfig = errors.New("invalid Key Vault connection configuration")

// AuthMethod selects how a connection authenticates to Entra ID.
type AuthMethod string

const (
	// AuthDefault uses the controller's own identity (azidentity.DefaultAzureCredential).
	AuthDefault AuthMethod = "Default"
	// AuthClientSecret is a service principal with a client secret.
	AuthClientSecret AuthMethod = "ClientSecret"
	// AuthClientCertificate is a service principal with a client certificate (PEM or PFX).
	AuthClientCertificate AuthMethod = "ClientCertificate"
	// AuthManagedIdentity is a user-assigned (ClientID set) or system-assigned managed identity.
	AuthManagedIdentity AuthMethod = "ManagedIdentity"
	// AuthWorkloadIdentity exchanges a Kubernetes ServiceAccount token (from Assertion) for an Entra ID token.
	AuthWorkloadIdentity AuthMethod = "WorkloadIdentity"
	// AuthControllerWorkloadIdentity is the controller's own workload identity: the token file the Azure
	// workload identity webhook projects into the controller's pod (AZURE_FEDERATED_TOKEN_FILE) is exchanged
	// for TenantID and ClientID. Only a ClusterVaultConnection may select it.
	AuthControllerWorkloadIdentity AuthMethod = "ControllerWorkloadIdentity"
)

// Config is everything needed to build a Client for one (vault, identity). Secret material lives only here and
// in the credential built from it; Fingerprint hashes it so a changed credential Secret rebuilds the client.
type Config struct {
	// VaultURL is the vault's base URL, e.g. https://myvault.vault.azure.net/.
	VaultURL string
	// Auth is the identity.
	Auth AuthConfig
	// Cloud holds sovereign-cloud and private-endpoint settings.
	Cloud CloudConfig
	// AllowedHosts, when non-empty, is every host this client may talk to: each HTTP request any part of it
	// makes (the vault's 401 challenge probe, vault calls, token requests, instance and metadata discovery,
	// a managed identity endpoint) to a host not in the list fails with a *HostNotAllowedError before it
	// leaves the process. Entries are "host" or "host:port" (IPv6 as "[::1]:443"), case-insensitive; a
	// missing port means 443, so a plain-http endpoint (IMDS, http://169.254.169.254) needs its ":80".
	// Empty allows every host. Part of the Fingerprint.
	AllowedHosts []string
	// RequestsPerSecond is this connection's own steady rate, applied to its client only and in addition
	// to the vault host's shared budget (a request waits for both). Zero, with Burst zero, means no
	// per-connection limit; zero with a non-zero Burst takes the Governor's default rate.
	RequestsPerSecond float64
	// Burst is this connection's own token bucket size; zero takes the Governor's default burst.
	Burst int
	// SetsHostBudget makes RequestsPerSecond and Burst also the budget every connection to this vault host
	// shares (Governor.SetLimit's bucket), until this connection stops asking for it or is forgotten. Only a
	// ClusterVaultConnection may set it: a namespaced connection must not raise or lower other tenants'
	// budget. Otherwise the host budget is the Governor's (GovernorOptions, from flags).
	SetsHostBudget bool
}

// AuthConfig is one identity.
type AuthConfig struct {
	// Method selects the credential type.
	Method AuthMethod
	// TenantID is the Entra ID tenant (not used by managed identity).
	TenantID string
	// ClientID is the application (client) ID.
	ClientID string
	// ClientSecret is the service principal's secret (AuthClientSecret). Sensitive.
	ClientSecret string
	// ClientCertificate holds PEM (certificate and key) or PFX bytes (AuthClientCertificate). Sensitive.
	ClientCertificate []byte
	// Assertion returns a fresh ServiceAccount token for AuthWorkloadIdentity.
	Assertion func(ctx context.Context) (string, error)
	// AssertionKey identifies the ServiceAccount behind Assertion (namespace/name, and its UID) for caching;
	// for AuthControllerWorkloadIdentity, the token file.
	AssertionKey string
	// TokenFile is the projected ServiceAccount token of AuthControllerWorkloadIdentity; empty means
	// AZURE_FEDERATED_TOKEN_FILE.
	TokenFile string
}

// CloudConfig selects the authority and the trust roots.
type CloudConfig struct {
	// AuthorityHost is the Entra ID authority, e.g. https://login.microsoftonline.com/; empty means Azure public.
	AuthorityHost string
	// DisableInstanceDiscovery skips Entra ID instance discovery (private clouds, emulators).
	DisableInstanceDiscovery bool
	// DisableChallengeResourceVerification accepts a challenge whose resource does not match the vault host.
	DisableChallengeResourceVerification bool
	// CABundle is PEM roots trusted (in addition to the system roots) for the vault and the authority.
	CABundle []byte
}

// Fingerprint is a hex SHA-256 over everything that shapes a client: the vault URL, the cloud settings
// (with a hash of the CA bundle), the auth method, tenant and client IDs, hashes of the client secret and
// certificate, AssertionKey, and AllowedHosts (normalised, in any order). It never reveals the secret
// material. The rate limits are not part of it: they are applied to the cached client and the Governor
// without rebuilding the client.
func (c Config) Fingerprint() string {
	h := sha256.New()
	field := func(b []byte) {
		// Length-prefixed so that ("ab","c") and ("a","bc") differ.
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	str := func(s string) { field([]byte(s)) }
	secret := func(b []byte) {
		if len(b) == 0 {
			field(nil)
			return
		}
		sum := sha256.Sum256(b)
		field(sum[:])
	}
	str("v1")
	str(c.VaultURL)
	str(c.Cloud.AuthorityHost)
	str(fmt.Sprint(c.Cloud.DisableInstanceDiscovery, c.Cloud.DisableChallengeResourceVerification))
	secret(c.Cloud.CABundle)
	str(string(c.Auth.Method))
	str(c.Auth.TenantID)
	str(c.Auth.ClientID)
	secret([]byte(c.Auth.ClientSecret))
	secret(c.Auth.ClientCertificate)
	str(c.Auth.AssertionKey)
	allowed, err := normalizeAllowedHosts(c.AllowedHosts)
	if err != nil {
		// Validate refuses such a config; still, never let a bad list hash like an empty one.
		allowed = append([]string{"\x00invalid"}, c.AllowedHosts...)
	}
	str(strconv.Itoa(len(allowed)))
	for _, h := range allowed {
		str(h)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Validate checks what can be checked without talking to anyone: an https vault URL with a host, well-formed
// AllowedHosts entries, and the IDs each auth method needs. Errors wrap ErrInvalidConfig. A vault or
// authority outside AllowedHosts is not a validation error: the first call fails with HostNotAllowedError.
func (c Config) Validate() error {
	if _, err := VaultHost(c.VaultURL); err != nil {
		return err
	}
	if _, err := normalizeAllowedHosts(c.AllowedHosts); err != nil {
		return err
	}
	switch c.Auth.Method {
	case AuthClientSecret, AuthClientCertificate, AuthWorkloadIdentity, AuthControllerWorkloadIdentity:
		return requireFields(c.Auth, true, true)
	case AuthManagedIdentity, AuthDefault, "":
		return nil
	default:
		return fmt.Errorf("%w: unknown auth method %q", ErrInvalidConfig, c.Auth.Method)
	}
}

// VaultHost returns the host (with port, if any, lower-case) of an https vault URL: the key under which
// the Governor keeps that vault's budget and pause.
func VaultHost(vaultURL string) (string, error) {
	u, err := url.Parse(vaultURL)
	if err != nil {
		return "", fmt.Errorf("%w: vault URL %q: %v", ErrInvalidConfig, vaultURL, err)
	}
	if !strings.EqualFold(u.Scheme, "https") {
		return "", fmt.Errorf("%w: vault URL %q must use https", ErrInvalidConfig, vaultURL)
	}
	if u.Host == "" {
		return "", fmt.Errorf("%w: vault URL %q has no host", ErrInvalidConfig, vaultURL)
	}
	return normalizeHost(u.Host), nil
}

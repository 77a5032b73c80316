// Package keyvault is vaultcert's only door to Azure Key Vault. It speaks certificates, not HTTP:
// the controllers ask for a certificate's metadata or its key material and get domain values or typed
// errors back. The implementation uses the official azcertificates, azsecrets and azidentity SDKs.
package keyvault

import (
	"context"
	"time"
)

// Client reads (and, for issuance, writes) certificates in one vault with one identity.
// Every method passes the caller's context to the SDK and returns errors classified by Classify.
type Client interface {
	// VaultURL is the vault this client talks to, as configured.
	VaultURL() string
	// GetCertificate returns a certificate's metadata; version "" means the latest version.
	GetCertificate(ctx context.Context, name, version string) (*Certificate, error)
	// ListCertificateVersions returns every version of a certificate with its tags, newest first.
	ListCertificateVersions(ctx context.Context, name string) ([]CertificateVersion, error)
	// GetSecret returns the certificate-backed secret (the key material) of exactly that version; version ""
	// means the latest, whose version the answer names (Secret.Version). A plain secret that no certificate
	// manages is a NotFoundError.
	GetSecret(ctx context.Context, name, version string) (*Secret, error)
	// GetLatestSecret is GetSecret(name, "") for a caller told that a newer version than held exists (a vault
	// listing, a certificate event): a read of the latest shared in the last seconds that names held is stale
	// for it, so the vault is asked again.
	GetLatestSecret(ctx context.Context, name, held string) (*Secret, error)
	// ListCertificates pages through every certificate of the vault (25 a page): the latest version's
	// thumbprint, enabled and updated. Past limit certificates it stops with TooManyCertificatesError.
	ListCertificates(ctx context.Context, limit int) ([]CertificateItem, error)
	// CheckAccess makes one cheap call (list one certificate) to prove the vault answers these credentials.
	CheckAccess(ctx context.Context) error

	// CreateCertificate starts issuing a new version with policy p (the first version when the certificate
	// does not exist), tagged with tags (within MaxTags, MaxTagNameLen, MaxTagValueLen; nil for none), and
	// returns the pending operation. 409 ConflictError while another operation is pending, or with InnerCode
	// ObjectIsDeletedButRecoverable when the name is soft-deleted.
	CreateCertificate(ctx context.Context, name string, p Policy, tags map[string]string) (*Operation, error)
	// SetCertificateTags replaces the tags of one version (version "" is the latest), leaving its attributes
	// and the policy alone.
	SetCertificateTags(ctx context.Context, name, version string, tags map[string]string) error
	// GetCertificateOperation returns the certificate's current (or last) operation; NotFoundError when none.
	GetCertificateOperation(ctx context.Context, name string) (*Operation, error)
	// GetCertificatePolicy returns the certificate's policy.
	GetCertificatePolicy(ctx context.Context, name string) (*Policy, error)
	// UpdateCertificatePolicy patches the certificate's policy with p's fields and returns the result.
	UpdateCertificatePolicy(ctx context.Context, name string, p Policy) (*Policy, error)
	// RecoverDeletedCertificate recovers a soft-deleted certificate. vaultcert never purges or deletes.
	RecoverDeletedCertificate(ctx context.Context, name string) error
}

// Certificate is the metadata Key Vault returns for one certificate version (no private key).
type Certificate struct {
	// Name is the certificate's name in the vault.
	Name string
	// Version is the 32-character version identifier.
	Version string
	// ID is the certificate identifier URL, with version.
	ID string
	// SecretID is the identifier URL of the certificate-backed secret that holds the key material.
	SecretID string
	// Thumbprint is the SHA-1 of the DER certificate, upper-case hex (Key Vault's x5t, decoded).
	Thumbprint string
	// CER is the DER encoding of the leaf certificate.
	CER []byte
	// Enabled says whether this version may be read.
	Enabled bool
	// NotBefore and Expires are the validity window; Created and Updated are Key Vault's timestamps.
	NotBefore, Expires, Created, Updated time.Time
	// ContentType is the secret's content type from the policy ("application/x-pkcs12" or
	// "application/x-pem-file"); empty when the policy does not say.
	ContentType string
	// Exportable is the policy's key_props.exportable; nil when the policy does not say.
	Exportable *bool
	// Tags are the certificate's tags.
	Tags map[string]string
	// Policy is the certificate's policy when the bundle carried one (Key Vault sends it with GET
	// certificate); nil otherwise. Its AutoRenew trigger gives the renewal time.
	Policy *Policy
}

// Pending reports whether this is a first version still being issued: Key Vault answers it disabled and
// without a certificate.
func (c *Certificate) Pending() bool { return c != nil && !c.Enabled && len(c.CER) == 0 }

// CertificateItem is one entry of the vault's certificate list: it names no version, but its thumbprint is the
// latest version's.
type CertificateItem struct {
	// Name is the certificate's name.
	Name string
	// Thumbprint is the latest version's SHA-1 thumbprint, upper-case hex.
	Thumbprint string
	// Enabled says whether the latest version may be read.
	Enabled bool
	// Updated is when the certificate last changed.
	Updated time.Time
}

// CertificateVersion is one entry of a certificate's version list.
type CertificateVersion struct {
	// Version is the version identifier.
	Version string
	// Thumbprint is the SHA-1 of the DER certificate, upper-case hex.
	Thumbprint string
	// Enabled says whether this version may be read.
	Enabled bool
	// Created is when Key Vault created the version.
	Created time.Time
	// NotBefore and Expires are the validity window.
	NotBefore, Expires time.Time
	// Tags are the version's tags (nil when it has none).
	Tags map[string]string
}

// Secret is a certificate-backed secret: the certificate chain with its private key.
// Value is sensitive: never log it, never put it in an error, event or status.
type Secret struct {
	// Version is the secret version, equal to the certificate version.
	Version string
	// ContentType is "application/x-pkcs12" (Value is base64 of a PFX) or "application/x-pem-file" (Value is PEM).
	ContentType string
	// Value is the secret value as Key Vault returned it.
	Value string
}

// String keeps the value out of any accidental %v formatting.
func (s *Secret) String() string {
	return "keyvault.Secret{Version: " + s.Version + ", ContentType: " + s.ContentType + ", Value: <redacted>}"
}

// GoString keeps the value out of %#v formatting.
func (s *Secret) GoString() string { return s.String() }

package fakevault

import (
	"crypto"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/vaultcert/vaultcert/internal/fakevault/issuer"
)

// Recovery settings of the fake vault (soft delete on, purge protection off).
const (
	recoverableDays = 90
	recoveryLevel   = "Recoverable+Purgeable"
)

// certificate is one Key Vault certificate and its versions.
type certificate struct {
	name          string // casing of the first creation
	versions      []*version
	policy        *wirePolicy // normalized, without id/attributes
	policyCreated time.Time
	policyUpdated time.Time
	spec          *CertSpec  // set by Seed; Rotate and AutoRenew reuse it
	op            *operation // the certificate operation, nil when none (imported, or deleted)
}

// version is one version of a certificate (and of its key and secret).
type version struct {
	id        string
	pending   bool // created but not issued yet: no certificate, disabled
	enabled   bool
	created   time.Time
	updated   time.Time
	nbf, exp  time.Time
	tags      map[string]string
	leaf      *x509.Certificate
	chain     []*x509.Certificate // leaf first up to the root (logical order)
	secretOrd []*x509.Certificate // order in the secret value
	key       crypto.Signer       // the certificate's key
	secretKey crypto.PrivateKey   // what the secret value carries (nil: no key)
	ctype     string              // secret content type
	secretVal string              // cached secret value
}

type deletedCert struct {
	cert      *certificate
	deletedAt time.Time
	visibleAt time.Time // GET /deletedcertificates/{n} 404s before this (deletion delay)
}

func (c *certificate) latest() *version {
	for i := len(c.versions) - 1; i >= 0; i-- {
		if !c.versions[i].pending {
			return c.versions[i]
		}
	}
	if len(c.versions) > 0 {
		return c.versions[len(c.versions)-1]
	}
	return nil
}

// at returns the version a request names: id "" is the latest.
func (c *certificate) at(id string) *version {
	if id == "" {
		return c.latest()
	}
	return c.find(id)
}

func (c *certificate) find(id string) *version {
	for _, v := range c.versions {
		if strings.EqualFold(v.id, id) {
			return v
		}
	}
	return nil
}

func (c *certificate) removeVersion(v *version) {
	for i, x := range c.versions {
		if x == v {
			c.versions = append(c.versions[:i], c.versions[i+1:]...)
			return
		}
	}
}

// lookupLocked finds a live certificate (advancing its operation), or the service's 404.
func (s *Server) lookupLocked(name string) (*certificate, *vaultError) {
	c, ok := s.certs[strings.ToLower(name)]
	if !ok {
		return nil, errCertNotFound(name, "")
	}
	s.advanceLocked(c)
	if len(c.versions) == 0 {
		return nil, errCertNotFound(name, "")
	}
	return c, nil
}

// checkNameFreeLocked returns the service's 409 when name is soft-deleted.
func (s *Server) checkNameFreeLocked(name string) *vaultError {
	if d, ok := s.deleted[strings.ToLower(name)]; ok {
		if s.now().Before(d.visibleAt) {
			return errBeingDeleted(name)
		}
		return errDeletedButRecoverable(name)
	}
	return nil
}

func (v *version) attributes(full bool) *wireAttributes {
	a := &wireAttributes{
		Enabled:   ptr(v.enabled && !v.pending),
		NotBefore: unix(v.nbf),
		Expires:   unix(v.exp),
		Created:   unix(v.created),
		Updated:   unix(v.updated),
	}
	if full {
		a.RecoveryLevel = recoveryLevel
		a.RecoverableDays = ptr(recoverableDays)
	}
	return a
}

func x5t(c *x509.Certificate) string {
	h := sha1.Sum(c.Raw)
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// Thumbprint returns the SHA-1 of the certificate's DER in upper-case hex.
func Thumbprint(c *x509.Certificate) string {
	h := sha1.Sum(c.Raw)
	return fmt.Sprintf("%X", h[:])
}

func (s *Server) policyJSON(base string, c *certificate) *wirePolicy {
	p := clonePolicy(c.policy)
	p.ID = base + "certificates/" + c.name + "/policy"
	p.Attributes = &wireAttributes{Enabled: ptr(true), Created: unix(c.policyCreated), Updated: unix(c.policyUpdated)}
	return p
}

func (s *Server) bundleLocked(base string, c *certificate, v *version) *wireBundle {
	b := &wireBundle{
		ID:         base + "certificates/" + c.name + "/" + v.id,
		KID:        base + "keys/" + c.name + "/" + v.id,
		SID:        base + "secrets/" + c.name + "/" + v.id,
		Attributes: v.attributes(true),
		Tags:       maps.Clone(v.tags),
		Policy:     s.policyJSON(base, c),
	}
	if v.leaf != nil {
		b.X5T = x5t(v.leaf)
		b.CER = base64.StdEncoding.EncodeToString(v.leaf.Raw)
	}
	if c.op != nil {
		b.Pending = &wirePendingRef{ID: base + "certificates/" + c.name + "/pending"}
	}
	if c.op != nil && c.op.preserveCertOrder {
		b.PreserveCertOrder = ptr(true)
	}
	return b
}

func (s *Server) itemLocked(base string, c *certificate, v *version, withVersion bool) wireItem {
	id := base + "certificates/" + c.name
	if withVersion {
		id += "/" + v.id
	}
	it := wireItem{ID: id, Attributes: v.attributes(false), Tags: maps.Clone(v.tags), Subject: ptr("")}
	if v.leaf != nil {
		it.X5T = x5t(v.leaf)
	}
	return it
}

func (s *Server) deletedBundleLocked(base string, d *deletedCert) *wireBundle {
	c := d.cert
	b := s.bundleLocked(base, c, c.latest())
	b.wireDeleted = d.wire(base)
	return b
}

// wire is the deleted certificate's recoveryId, deletedDate and scheduledPurgeDate
// (deletedDate + recoverableDays*86400, as KEYVAULT.md gives it).
func (d *deletedCert) wire(base string) wireDeleted {
	return wireDeleted{
		RecoveryID:         base + "deletedcertificates/" + d.cert.name,
		DeletedDate:        unix(d.deletedAt),
		ScheduledPurgeDate: unix(d.deletedAt.Add(recoverableDays * 24 * time.Hour)),
	}
}

// secretValueLocked returns (and caches) the version's secret value.
func (s *Server) secretValueLocked(v *version) (string, error) {
	if v.secretVal != "" {
		return v.secretVal, nil
	}
	val, err := issuer.Encode(v.ctype, v.secretKey, v.secretOrd)
	if err != nil {
		return "", err
	}
	v.secretVal = val
	return val, nil
}

// versionOf builds the exported Version for a stored version.
func (s *Server) versionOf(c *certificate, v *version) Version {
	return Version{
		Name:       c.name,
		Version:    v.id,
		Thumbprint: thumbOrEmpty(v.leaf),
		Leaf:       v.leaf,
		Chain:      append([]*x509.Certificate(nil), v.chain...),
		SecretID:   s.baseURL + "secrets/" + c.name + "/" + v.id,
		Enabled:    v.enabled && !v.pending,
		Pending:    v.pending,
	}
}

func thumbOrEmpty(c *x509.Certificate) string {
	if c == nil {
		return ""
	}
	return Thumbprint(c)
}

package fakevault

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/vaultcert/vaultcert/internal/fakevault/issuer"
)

// CertSpec describes a certificate to seed (see Seed).
type CertSpec struct {
	// Name matches ^[0-9a-zA-Z-]{1,127}$ (Key Vault names are case-insensitive).
	Name string `json:"name"`
	// KeyType is "RSA" (default) or "EC".
	KeyType string `json:"keyType,omitempty"`
	// KeySize is the RSA size in bits, default 2048.
	KeySize int `json:"keySize,omitempty"`
	// Curve is the EC curve: "P-256" (default), "P-384", "P-521".
	Curve string `json:"curve,omitempty"`
	// DNSNames are the SANs; default {Name + ".example.com"}.
	DNSNames []string `json:"dnsNames,omitempty"`
	// Subject defaults to "CN=" + the first DNS name.
	Subject string `json:"subject,omitempty"`
	// ChainDepth: 1 = self-signed leaf (default), 2 = root->leaf, 3 = root->intermediate->leaf.
	// The issuing CAs are per-server test CAs, stable across versions.
	ChainDepth int `json:"chainDepth,omitempty"`
	// ContentType is "application/x-pkcs12" (default) or "application/x-pem-file".
	ContentType string `json:"contentType,omitempty"`
	// ScrambleChain stores the chain in the secret value in a non-leaf-first order
	// (the issuers top-down, then the leaf), like third-party imports.
	ScrambleChain bool `json:"scrambleChain,omitempty"`
	// NotExportable: the secret value carries no private key (policy key_props.exportable false).
	NotExportable bool `json:"notExportable,omitempty"`
	// Validity is the lifetime from Now() (default 365 days); nbf is Now() - 10 min like the service.
	Validity time.Duration `json:"validity,omitempty"`
	// Tags are the version's tags.
	Tags map[string]string `json:"tags,omitempty"`
	// AutoRenewPercentage, when set, gives the policy an AutoRenew lifetime action at this
	// percentage of the lifetime (AdvanceRenewals / the Now clock then add versions from this spec).
	// Seeded certificates otherwise get EmailContacts at 80 % and are never renewed by themselves.
	AutoRenewPercentage int `json:"autoRenewPercentage,omitempty"`
	// AutoRenewDaysBeforeExpiry is the days_before_expiry variant of AutoRenewPercentage.
	AutoRenewDaysBeforeExpiry int `json:"autoRenewDaysBeforeExpiry,omitempty"`
}

// Version is one version of a certificate as seeded or found.
type Version struct {
	// Name is the certificate name; Version is 32 lower-case hex characters like the service's.
	Name, Version string
	// Thumbprint is the SHA-1 of the leaf DER, upper-case hex.
	Thumbprint string
	// Leaf is the certificate (nil for a pending version).
	Leaf *x509.Certificate
	// Chain is leaf first, then issuers up to and including the root.
	Chain []*x509.Certificate
	// SecretID is https://127.0.0.1:PORT/secrets/{name}/{version}.
	SecretID string
	// Enabled is the version's enabled attribute.
	Enabled bool
	// Pending is true while the version is being issued.
	Pending bool
}

func (spec *CertSpec) normalize() error {
	if !nameRE.MatchString(spec.Name) {
		return fmt.Errorf("fakevault: invalid certificate name %q", spec.Name)
	}
	if spec.KeyType == "" {
		spec.KeyType = "RSA"
	}
	ks := issuer.KeySpec{Type: spec.KeyType, Size: spec.KeySize, Curve: spec.Curve}.Normalize()
	if err := ks.Validate(); err != nil {
		return fmt.Errorf("fakevault: %w", err)
	}
	spec.KeyType, spec.KeySize, spec.Curve = strings.ToUpper(ks.Type), ks.Size, ks.Curve
	if len(spec.DNSNames) == 0 {
		spec.DNSNames = []string{strings.ToLower(spec.Name) + ".example.com"}
	}
	if spec.Subject == "" {
		spec.Subject = "CN=" + spec.DNSNames[0]
	}
	if spec.ChainDepth <= 0 {
		spec.ChainDepth = 1
	}
	if spec.ChainDepth > 3 {
		return fmt.Errorf("fakevault: ChainDepth %d not supported (1..3)", spec.ChainDepth)
	}
	switch strings.ToLower(spec.ContentType) {
	case "":
		spec.ContentType = issuer.ContentTypePKCS12
	case issuer.ContentTypePKCS12, issuer.ContentTypePEM:
		spec.ContentType = strings.ToLower(spec.ContentType)
	default:
		return fmt.Errorf("fakevault: invalid content type %q", spec.ContentType)
	}
	if spec.Validity <= 0 {
		spec.Validity = 365 * 24 * time.Hour
	}
	return nil
}

func (spec CertSpec) keySpec() issuer.KeySpec {
	return issuer.KeySpec{Type: spec.KeyType, Size: spec.KeySize, Curve: spec.Curve}
}

func (spec CertSpec) policy() *wirePolicy {
	ks := spec.keySpec().Normalize()
	kp := &wireKeyProps{Exportable: ptr(!spec.NotExportable), Kty: ks.Type, KeySize: ptr(ks.Size), ReuseKey: ptr(false)}
	ku := []string{"digitalSignature", "keyEncipherment"}
	if ks.IsEC() {
		kp.Crv = ks.Curve
		ku = []string{"digitalSignature"}
	}
	months := int(spec.Validity.Hours()/24/30.4375 + 0.5)
	if months < 1 {
		months = 1
	}
	iss := IssuerSelf
	if spec.ChainDepth > 1 {
		iss = IssuerUnknown
	}
	action := wireLifetimeAction{Trigger: wireTrigger{LifetimePercentage: ptr(80)}, Action: wireAction{ActionType: "EmailContacts"}}
	if spec.AutoRenewPercentage > 0 {
		action = wireLifetimeAction{Trigger: wireTrigger{LifetimePercentage: ptr(spec.AutoRenewPercentage)}, Action: wireAction{ActionType: "AutoRenew"}}
	} else if spec.AutoRenewDaysBeforeExpiry > 0 {
		action = wireLifetimeAction{Trigger: wireTrigger{DaysBeforeExpiry: ptr(spec.AutoRenewDaysBeforeExpiry)}, Action: wireAction{ActionType: "AutoRenew"}}
	}
	return &wirePolicy{
		KeyProps:    kp,
		SecretProps: &wireSecretProps{ContentType: spec.ContentType},
		X509Props: &wireX509Props{
			Subject:          spec.Subject,
			Sans:             &wireSans{DNSNames: spec.DNSNames},
			Ekus:             []string{issuer.EKUServerAuth, issuer.EKUClientAuth},
			KeyUsage:         ku,
			ValidityMonths:   ptr(months),
			BasicConstraints: &wireBasicConstraints{CA: false},
		},
		LifetimeActions: []wireLifetimeAction{action},
		Issuer:          &wireIssuer{Name: iss},
	}
}

// issueFromSpec makes a key (or reuses key) and the chain for spec.
func (s *Server) issueFromSpec(spec CertSpec, key crypto.Signer, now time.Time) (*version, error) {
	if key == nil {
		var err error
		if key, err = issuer.NewKey(spec.keySpec()); err != nil {
			return nil, err
		}
	}
	subject, err := issuer.ParseSubject(spec.Subject)
	if err != nil {
		return nil, fmt.Errorf("fakevault: subject: %w", err)
	}
	ku := []string{"digitalSignature", "keyEncipherment"}
	if spec.keySpec().IsEC() {
		ku = []string{"digitalSignature"}
	}
	kbits, _ := issuer.ParseKeyUsage(ku)
	l := issuer.Leaf{
		Subject:   subject,
		DNSNames:  spec.DNSNames,
		EKUs:      []string{issuer.EKUServerAuth, issuer.EKUClientAuth},
		KeyUsage:  kbits,
		NotBefore: now.Add(-10 * time.Minute).Truncate(time.Second),
		NotAfter:  now.Add(spec.Validity).Truncate(time.Second),
	}
	var chain []*x509.Certificate
	if spec.ChainDepth <= 1 {
		leaf, err := issuer.SelfSigned(key, l)
		if err != nil {
			return nil, err
		}
		chain = []*x509.Certificate{leaf}
	} else if chain, err = s.seedCA.Issue(key.Public(), l, spec.ChainDepth); err != nil {
		return nil, err
	}
	v := newVersion(key, chain, now)
	v.ctype = spec.ContentType
	v.tags = maps.Clone(spec.Tags)
	if spec.ScrambleChain && len(chain) > 1 {
		ord := make([]*x509.Certificate, 0, len(chain))
		for i := 1; i < len(chain); i++ {
			ord = append(ord, chain[i])
		}
		v.secretOrd = append(ord, chain[0])
	}
	if spec.NotExportable {
		v.secretKey = nil
	}
	return v, nil
}

// newVersion makes an enabled version for key and chain (leaf first).
func newVersion(key crypto.Signer, chain []*x509.Certificate, now time.Time) *version {
	leaf := chain[0]
	return &version{
		id:        newHexID(),
		enabled:   true,
		created:   now,
		updated:   now,
		nbf:       leaf.NotBefore,
		exp:       leaf.NotAfter,
		leaf:      leaf,
		chain:     chain,
		secretOrd: chain,
		key:       key,
		secretKey: key,
		ctype:     issuer.ContentTypePKCS12,
	}
}

// Seed creates the certificate, or adds a new latest version with a NEW key when it exists
// (the stored spec is replaced, and the policy follows it). The name must not be soft-deleted.
func (s *Server) Seed(spec CertSpec) (Version, error) {
	if err := spec.normalize(); err != nil {
		return Version{}, err
	}
	now := s.now()
	v, err := s.issueFromSpec(spec, nil, now)
	if err != nil {
		return Version{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.checkNameFreeLocked(spec.Name); e != nil {
		return Version{}, e.apiError()
	}
	c := s.certs[strings.ToLower(spec.Name)]
	if c == nil {
		c = &certificate{name: spec.Name, policyCreated: now}
		s.certs[strings.ToLower(spec.Name)] = c
	} else {
		s.advanceLocked(c)
		if c.op != nil && c.op.status == statusInProgress {
			return Version{}, fmt.Errorf("fakevault: certificate %s has a pending operation", spec.Name)
		}
	}
	spec.Tags = maps.Clone(spec.Tags)
	c.spec = &spec
	c.policy = spec.policy()
	c.policyUpdated = now
	c.versions = append(c.versions, v)
	c.op = completedOperation(c, now)
	return s.versionOf(c, v), nil
}

// Rotate adds a new latest version with a new key: from the seeded spec, or else from the
// certificate's policy (self-signed for Self and Unknown issuers, CA-signed for named issuers).
func (s *Server) Rotate(name string) (Version, error) {
	s.mu.Lock()
	c, e := s.lookupLocked(name)
	if e != nil {
		s.mu.Unlock()
		return Version{}, e.apiError()
	}
	spec, policy := c.spec, clonePolicy(c.policy)
	s.mu.Unlock()
	if spec != nil {
		return s.Seed(*spec)
	}
	return s.renewFromPolicy(name, policy, nil)
}

// renewFromPolicy issues a new completed version from a policy (Rotate and AutoRenew).
func (s *Server) renewFromPolicy(name string, policy *wirePolicy, reuse crypto.Signer) (Version, error) {
	now := s.now()
	key := reuse
	if key == nil {
		var err error
		if key, err = issuer.NewKey(keySpecOf(policy)); err != nil {
			return Version{}, err
		}
	}
	s.mu.Lock()
	at := s.issueTimeLocked(name, now)
	s.mu.Unlock()
	chain, err := s.issueChain(policy, key, at)
	if err != nil {
		return Version{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, e := s.lookupLocked(name)
	if e != nil {
		return Version{}, e.apiError()
	}
	v := newVersion(key, chain, now)
	v.ctype = policy.SecretProps.ContentType
	if keyNotExportable(policy) {
		v.secretKey = nil
	}
	if l := c.latest(); l != nil {
		v.tags = maps.Clone(l.tags)
	}
	c.versions = append(c.versions, v)
	if c.op == nil || c.op.status != statusInProgress {
		c.op = completedOperation(c, now)
	}
	return s.versionOf(c, v), nil
}

// Latest returns the latest version (what GET /certificates/{name}/ returns).
func (s *Server) Latest(name string) (Version, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, e := s.lookupLocked(name)
	if e != nil {
		return Version{}, e.apiError()
	}
	return s.versionOf(c, c.latest()), nil
}

// Versions returns every version in creation order (oldest first).
func (s *Server) Versions(name string) ([]Version, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, e := s.lookupLocked(name)
	if e != nil {
		return nil, e.apiError()
	}
	out := make([]Version, 0, len(c.versions))
	for _, v := range c.versions {
		out = append(out, s.versionOf(c, v))
	}
	return out, nil
}

func (s *Server) versionLocked(name, ver string) (*certificate, *version, error) {
	c, e := s.lookupLocked(name)
	if e != nil {
		return nil, nil, e.apiError()
	}
	v := c.latest()
	if ver != "" {
		v = c.find(ver)
	}
	if v == nil {
		return nil, nil, fmt.Errorf("fakevault: certificate %s has no version %q", name, ver)
	}
	return c, v, nil
}

// SetEnabled enables or disables a version ("" = latest). A disabled version's certificate is
// still readable (enabled=false); its secret answers 403 SecretDisabled.
func (s *Server) SetEnabled(name, ver string, enabled bool) error {
	return s.editVersion(name, ver, func(v *version) {
		v.enabled = enabled
		v.updated = s.now()
	})
}

// editVersion runs edit on that version ("" = latest) under s.mu.
func (s *Server) editVersion(name, ver string, edit func(v *version)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, v, err := s.versionLocked(name, ver)
	if err != nil {
		return err
	}
	edit(v)
	return nil
}

// CorruptKey makes that version's secret carry a key of the same type that matches no
// certificate in it ("" = latest).
func (s *Server) CorruptKey(name, version string) error {
	s.mu.Lock()
	_, v, err := s.versionLocked(name, version)
	if err != nil || v.key == nil {
		s.mu.Unlock()
		if err == nil {
			err = errors.New("fakevault: version has no key")
		}
		return err
	}
	spec := issuer.SpecOf(v.key.Public())
	s.mu.Unlock()
	other, err := issuer.NewKey(spec)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v.secretKey = other
	v.secretVal = ""
	return nil
}

// StripKey makes that version's secret carry no key ("" = latest).
func (s *Server) StripKey(name, ver string) error {
	return s.editVersion(name, ver, func(v *version) {
		v.secretKey = nil
		v.secretVal = ""
	})
}

// Delete soft-deletes the certificate like DELETE /certificates/{name}: reads answer 404,
// create/import on the name 409 ObjectIsDeletedButRecoverable, until Recover or Purge.
func (s *Server) Delete(name string) error {
	return s.lockedAPI(func() *vaultError { _, e := s.deleteLocked(name); return e })
}

// Recover restores a soft-deleted certificate like POST /deletedcertificates/{name}/recover.
func (s *Server) Recover(name string) error {
	return s.lockedAPI(func() *vaultError { _, e := s.recoverLocked(name); return e })
}

// Purge removes a soft-deleted certificate for good like DELETE /deletedcertificates/{name}.
func (s *Server) Purge(name string) error {
	return s.lockedAPI(func() *vaultError { return s.purgeLocked(name) })
}

// lockedAPI runs op under s.mu and returns its service error, if any, as the Go methods do.
func (s *Server) lockedAPI(op func() *vaultError) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := op(); e != nil {
		return e.apiError()
	}
	return nil
}

func (s *Server) deleteLocked(name string) (*deletedCert, *vaultError) {
	c, e := s.lookupLocked(name)
	if e != nil {
		return nil, e
	}
	now := s.now()
	d := &deletedCert{cert: c, deletedAt: now, visibleAt: now.Add(s.deletionDelay)}
	delete(s.certs, strings.ToLower(name))
	s.deleted[strings.ToLower(name)] = d
	return d, nil
}

func (s *Server) recoverLocked(name string) (*certificate, *vaultError) {
	d, ok := s.deleted[strings.ToLower(name)]
	if !ok || s.now().Before(d.visibleAt) {
		return nil, errDeletedNotFound(name)
	}
	delete(s.deleted, strings.ToLower(name))
	s.certs[strings.ToLower(name)] = d.cert
	return d.cert, nil
}

func (s *Server) purgeLocked(name string) *vaultError {
	d, ok := s.deleted[strings.ToLower(name)]
	if !ok || s.now().Before(d.visibleAt) {
		return errDeletedNotFound(name)
	}
	delete(s.deleted, strings.ToLower(name))
	return nil
}

// SetDeletionDelay makes soft deletion asynchronous like the service (GET /deletedcertificates/{n}
// 404s and the name answers 409 ObjectIsBeingDeleted for d after the delete, on the Now clock). Default 0.
func (s *Server) SetDeletionDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deletionDelay = d
}

package issuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/url"
	"time"
)

// CA is a two-level test certificate authority: a self-signed root and an
// intermediate signed by it. Both use ECDSA P-256 keys.
type CA struct {
	// Root is the self-signed root certificate.
	Root *x509.Certificate
	// RootKey signs the intermediate (and leaves of depth-2 chains).
	RootKey crypto.Signer
	// Intermediate is signed by Root.
	Intermediate *x509.Certificate
	// IntermediateKey signs leaves of depth-3 chains.
	IntermediateKey crypto.Signer
}

// NewCA creates a root "<name> Root CA" and an intermediate "<name> Issuing CA 1",
// valid from ten minutes ago for ten years.
func NewCA(name string) (*CA, error) {
	now := time.Now()
	root, rootKey, err := newCACert(name+" Root CA", now, nil, nil)
	if err != nil {
		return nil, err
	}
	inter, intKey, err := newCACert(name+" Issuing CA 1", now, root, rootKey)
	if err != nil {
		return nil, err
	}
	return &CA{Root: root, RootKey: rootKey, Intermediate: inter, IntermediateKey: intKey}, nil
}

// newCACert makes a CA certificate named cn with a new P-256 key: self-signed when parent is nil,
// else signed by parent and limited to signing leaves (path length zero).
func newCACert(cn string, now time.Time, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"fakevault"}},
		NotBefore:             now.Add(-10 * time.Minute),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        parent != nil,
		SubjectKeyId:          ski(&key.PublicKey),
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	cert, err := sign(tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// Leaf describes the certificate to issue, in x509 terms.
type Leaf struct {
	Subject     pkix.Name  // subject (see ParseSubject)
	DNSNames    []string   // DNS SANs
	IPAddresses []net.IP   // IP SANs
	Emails      []string   // email SANs
	URIs        []*url.URL // URI SANs
	// EKUs are dotted OIDs ("1.3.6.1.5.5.7.3.1"); nil means none.
	EKUs []string
	// KeyUsage is the x509 key usage bit set.
	KeyUsage  x509.KeyUsage
	NotBefore time.Time // validity start
	NotAfter  time.Time // validity end
}

// SelfSigned issues a self-signed leaf for key (CA:false, AKI = SKI, like the service's "Self" issuer).
func SelfSigned(key crypto.Signer, l Leaf) (*x509.Certificate, error) {
	tmpl, err := l.template(key.Public())
	if err != nil {
		return nil, err
	}
	tmpl.AuthorityKeyId = tmpl.SubjectKeyId
	return sign(tmpl, tmpl, key.Public(), key)
}

// Issue signs a leaf for pub. depth 2 returns [leaf, root] (leaf signed by the root),
// depth 3 (or more) returns [leaf, intermediate, root].
func (ca *CA) Issue(pub crypto.PublicKey, l Leaf, depth int) ([]*x509.Certificate, error) {
	tmpl, err := l.template(pub)
	if err != nil {
		return nil, err
	}
	if depth <= 2 {
		leaf, err := sign(tmpl, ca.Root, pub, ca.RootKey)
		if err != nil {
			return nil, err
		}
		return []*x509.Certificate{leaf, ca.Root}, nil
	}
	leaf, err := sign(tmpl, ca.Intermediate, pub, ca.IntermediateKey)
	if err != nil {
		return nil, err
	}
	return []*x509.Certificate{leaf, ca.Intermediate, ca.Root}, nil
}

func (l Leaf) template(pub crypto.PublicKey) (*x509.Certificate, error) {
	if l.NotAfter.IsZero() || !l.NotAfter.After(l.NotBefore) {
		return nil, errors.New("issuer: NotAfter must be after NotBefore")
	}
	t := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               l.Subject,
		DNSNames:              l.DNSNames,
		IPAddresses:           l.IPAddresses,
		EmailAddresses:        l.Emails,
		URIs:                  l.URIs,
		NotBefore:             l.NotBefore,
		NotAfter:              l.NotAfter,
		KeyUsage:              l.KeyUsage,
		BasicConstraintsValid: true,
		IsCA:                  false,
		SubjectKeyId:          ski(pub),
	}
	t.ExtKeyUsage, t.UnknownExtKeyUsage = ParseEKUs(l.EKUs)
	return t, nil
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// serial returns a random positive 128-bit serial number, like the service's 16-byte serials.
func serial() *big.Int {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[0] &= 0x7f
	b[0] |= 0x40
	return new(big.Int).SetBytes(b)
}

func ski(pub crypto.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil
	}
	h := sha1.Sum(der)
	return h[:]
}

// CSR builds a PKCS#10 request for key with the leaf's subject, SANs, key usage and EKUs,
// the way the service shows it in a certificate operation.
func CSR(key crypto.Signer, l Leaf) ([]byte, error) {
	tmpl := &x509.CertificateRequest{
		Subject:        l.Subject,
		DNSNames:       l.DNSNames,
		IPAddresses:    l.IPAddresses,
		EmailAddresses: l.Emails,
		URIs:           l.URIs,
	}
	return x509.CreateCertificateRequest(rand.Reader, tmpl, key)
}

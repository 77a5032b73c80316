package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

// keyAlg names the key types the tests generate.
type keyAlg string

const (
	algRSA  keyAlg = "RSA-2048"
	algP256 keyAlg = "P-256"
	algP384 keyAlg = "P-384"
	algP521 keyAlg = "P-521"
)

var allAlgs = []keyAlg{algRSA, algP256, algP384, algP521}

// Key types Go can parse but Key Vault and TLS stacks do not use; not in allAlgs.
const (
	algP224    keyAlg = "P-224"
	algEd25519 keyAlg = "ed25519"
)

// keyCache reuses generated keys by (alg, role): RSA generation dominates
// test time, and distinct roles still get distinct keys.
var keyCache sync.Map

func testKey(t testing.TB, alg keyAlg, role string) crypto.Signer {
	t.Helper()
	id := string(alg) + "/" + role
	if k, ok := keyCache.Load(id); ok {
		return k.(crypto.Signer)
	}
	var (
		k   crypto.Signer
		err error
	)
	switch alg {
	case algRSA:
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case algP256:
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case algP384:
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case algP521:
		k, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case algP224:
		k, err = ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	case algEd25519:
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("unknown alg %q", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	actual, _ := keyCache.LoadOrStore(id, k)
	return actual.(crypto.Signer)
}

// issued is a certificate with its key.
type issued struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// certOpts tweaks generated certificates.
type certOpts struct {
	ca       bool
	noAKI    bool // issue without an AuthorityKeyId, to exercise DN matching
	notAfter time.Time
}

// mint creates a certificate for key named cn, signed by parent (self-signed if nil).
func mint(t testing.TB, cn string, key crypto.Signer, parent *issued, o certOpts) *issued {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	notAfter := o.notAfter
	if notAfter.IsZero() {
		notAfter = time.Now().Add(24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"vaultcert tests"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if o.ca {
		tmpl.IsCA = true
		tmpl.BasicConstraintsValid = true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	} else {
		tmpl.DNSNames = []string{strings.ToLower(cn) + ".example.test"}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	parentCert, signer := tmpl, key
	if parent != nil {
		parentCert, signer = parent.cert, parent.key
		if o.noAKI {
			// CreateCertificate copies the issuer's SubjectKeyId into the
			// AuthorityKeyId; hide it to get a name-only link.
			c := *parent.cert
			c.SubjectKeyId = nil
			parentCert = &c
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &issued{cert: cert, key: key}
}

// pki3 is a root -> intermediate -> leaf hierarchy.
type pki3 struct {
	root, inter, leaf *issued
}

// newChain makes root -> intermediate -> leaf, all keys of alg.
func newChain(t testing.TB, alg keyAlg) pki3 {
	t.Helper()
	root := mint(t, "Test Root "+string(alg), testKey(t, alg, "root"), nil, certOpts{ca: true})
	inter := mint(t, "Test Intermediate "+string(alg), testKey(t, alg, "inter"), root, certOpts{ca: true})
	leaf := mint(t, "leaf-"+strings.ToLower(string(alg)), testKey(t, alg, "leaf"), inter, certOpts{})
	return pki3{root: root, inter: inter, leaf: leaf}
}

// eachAlg runs test as a parallel subtest for every key type in allAlgs, with a chain of that type.
func eachAlg(t *testing.T, test func(t *testing.T, alg keyAlg, c pki3)) {
	t.Helper()
	for _, alg := range allAlgs {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			test(t, alg, newChain(t, alg))
		})
	}
}

// selfSigned makes a self-signed, non-CA leaf like Key Vault's "Self" issuer does.
func selfSigned(t testing.TB, alg keyAlg) *issued {
	t.Helper()
	return mint(t, "self-"+strings.ToLower(string(alg)), testKey(t, alg, "self"), nil, certOpts{})
}

// pfxValue encodes key and certs (first cert gets the key's localKeyID, as
// Key Vault does) as a Key Vault PKCS#12 secret value: base64, empty password.
func pfxValue(t testing.TB, key crypto.Signer, certs ...*x509.Certificate) string {
	t.Helper()
	der, err := pkcs12.LegacyDES.Encode(key, certs[0], certs[1:], "")
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

// certPEM encodes certificates as PEM.
func certPEM(certs ...*x509.Certificate) string {
	var sb strings.Builder
	for _, c := range certs {
		sb.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	}
	return sb.String()
}

// keyPEM encodes key in the given block type (PRIVATE KEY, RSA PRIVATE KEY, EC PRIVATE KEY).
func keyPEM(t testing.TB, key crypto.Signer, blockType string) string {
	t.Helper()
	var (
		der []byte
		err error
	)
	switch blockType {
	case "PRIVATE KEY":
		der, err = x509.MarshalPKCS8PrivateKey(key)
	case "RSA PRIVATE KEY":
		der = x509.MarshalPKCS1PrivateKey(key.(*rsa.PrivateKey))
	case "EC PRIVATE KEY":
		der, err = x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
	default:
		t.Fatalf("unknown block type %q", blockType)
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}))
}

// tamper returns a copy of c with one signature bit flipped.
func tamper(t testing.TB, c *x509.Certificate) *x509.Certificate {
	t.Helper()
	raw := append([]byte(nil), c.Raw...)
	raw[len(raw)-5] ^= 0x01 // inside the signature for RSA
	out, err := x509.ParseCertificate(raw)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// raws turns certificates into comparable DER strings.
func raws(certs []*x509.Certificate) []string {
	out := make([]string, len(certs))
	for i, c := range certs {
		out[i] = string(c.Raw)
	}
	return out
}

// pemCerts parses every CERTIFICATE block in data.
func pemCerts(t testing.TB, data []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out
		}
		if b.Type != "CERTIFICATE" {
			t.Fatalf("unexpected block %q", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

// sameCerts fails unless got and want are the same certificates in the same order.
func sameCerts(t testing.TB, what string, got, want []*x509.Certificate) {
	t.Helper()
	g, w := raws(got), raws(want)
	if len(g) != len(w) {
		t.Fatalf("%s: got %d certificates %s, want %d %s", what, len(g), describeAll(got), len(w), describeAll(want))
	}
	for i := range g {
		if g[i] != w[i] {
			t.Fatalf("%s: certificate #%d is %s, want %s", what, i, describe(got[i]), describe(want[i]))
		}
	}
}

// certs is shorthand for a certificate list.
func certs(is ...*issued) []*x509.Certificate {
	out := make([]*x509.Certificate, len(is))
	for i, x := range is {
		out[i] = x.cert
	}
	return out
}

package pki

import (
	"bytes"
	"encoding/base64"
	"errors"
	"hash/crc32"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

// fuzzSeeds is valid material for the corpora. ECDSA P-256 keeps most seeds
// small and cheap to parse, so the fuzzer (and its minimiser) runs fast; one
// RSA chain covers the RSA paths.
type fuzzSeeds struct {
	rsa, ec pki3
	self    *issued
}

func newFuzzSeeds(f *testing.F) fuzzSeeds {
	return fuzzSeeds{rsa: newChain(f, algRSA), ec: newChain(f, algP256), self: selfSigned(f, algP256)}
}

var (
	fuzzModes     = []ChainMode{ChainLeafAndIntermediates, ChainFull, ChainLeafOnly}
	fuzzEncodings = []KeyEncoding{KeyPKCS8, KeyPKCS1}
)

// checkDecoded asserts what every parse must give: a classified error, or a
// bundle that verifies, encodes, and reads back the same through ParseTLS.
// One mode and encoding per input, picked from its hash, keeps each run cheap.
func checkDecoded(t *testing.T, input []byte, b *Bundle, err error) {
	t.Helper()
	if err != nil {
		for _, s := range []error{ErrNoPrivateKey, ErrKeyMismatch, ErrChainBroken, ErrMalformed} {
			if errors.Is(err, s) {
				return
			}
		}
		t.Fatalf("unclassified error: %v", err)
	}
	if err := b.Verify(time.Time{}); err != nil {
		t.Fatalf("decoded bundle does not verify: %v", err)
	}
	h := crc32.ChecksumIEEE(input)
	mode, enc := fuzzModes[h%3], fuzzEncodings[h/3%2]
	key, err := b.PrivateKeyPEM(enc)
	if err != nil {
		t.Fatalf("PrivateKeyPEM(%s): %v", enc, err)
	}
	back, err := ParseTLS(b.CertificatesPEM(mode), key)
	if err != nil {
		t.Fatalf("ParseTLS(%s, %s): %v", mode, enc, err)
	}
	if !bytes.Equal(back.CertificatesPEM(ChainFull), b.CertificatesPEM(mode)) {
		t.Fatalf("ParseTLS(%s, %s) changed the chain", mode, enc)
	}
	if len(b.CAPEM()) == 0 || len(b.LeafDER()) == 0 {
		t.Fatal("empty ca.crt or tls.der")
	}
}

// FuzzDecodePFX feeds arbitrary DER to the PKCS#12 path. Seeds use one KDF
// iteration, or none (Passwordless), so that each run and the minimiser stay
// fast; Key Vault's 2000 iterations are covered by the unit tests.
func FuzzDecodePFX(f *testing.F) {
	s := newFuzzSeeds(f)
	cheap := pkcs12.LegacyDES.WithIterations(1)
	for _, x := range []struct {
		enc   *pkcs12.Encoder
		key   *issued
		certs []*issued
	}{
		{pkcs12.Passwordless, s.self, []*issued{s.self}},
		{pkcs12.Passwordless, s.ec.leaf, []*issued{s.ec.inter, s.ec.root, s.ec.leaf}},
		{cheap, s.ec.leaf, []*issued{s.ec.leaf, s.ec.inter}},
		{cheap, s.rsa.leaf, []*issued{s.rsa.leaf}},
		{pkcs12.Modern.WithIterations(1), s.self, []*issued{s.ec.leaf}},
	} {
		cs := certs(x.certs...)
		der, err := x.enc.Encode(x.key.key, cs[0], cs[1:], "")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
	}
	noKey, err := pkcs12.Passwordless.EncodeTrustStore(certs(s.self), "")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(noKey)
	f.Add([]byte{})
	f.Add([]byte{0x30, 0x80})

	f.Fuzz(func(t *testing.T, der []byte) {
		b, err := Decode(ContentTypePKCS12, base64.StdEncoding.EncodeToString(der))
		checkDecoded(t, der, b, err)
	})
}

// FuzzDecodePEM feeds arbitrary text to the PEM path.
func FuzzDecodePEM(f *testing.F) {
	s := newFuzzSeeds(f)
	f.Add(keyPEM(f, s.ec.leaf.key, "PRIVATE KEY") + certPEM(s.ec.leaf.cert, s.ec.inter.cert, s.ec.root.cert))
	f.Add(certPEM(s.ec.inter.cert, s.ec.leaf.cert) + keyPEM(f, s.ec.leaf.key, "EC PRIVATE KEY"))
	f.Add(certPEM(s.self.cert) + keyPEM(f, s.self.key, "PRIVATE KEY"))
	f.Add(keyPEM(f, s.rsa.leaf.key, "RSA PRIVATE KEY") + certPEM(s.rsa.leaf.cert))
	f.Add(certPEM(s.self.cert))
	f.Add("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n")
	f.Add("")

	f.Fuzz(func(t *testing.T, value string) {
		b, err := Decode(ContentTypePEM, value)
		checkDecoded(t, []byte(value), b, err)
	})
}

// FuzzParseTLS feeds arbitrary tls.crt and tls.key pairs.
func FuzzParseTLS(f *testing.F) {
	s := newFuzzSeeds(f)
	f.Add([]byte(certPEM(s.ec.leaf.cert, s.ec.inter.cert, s.ec.root.cert)), []byte(keyPEM(f, s.ec.leaf.key, "EC PRIVATE KEY")))
	f.Add([]byte(certPEM(s.self.cert)), []byte(keyPEM(f, s.self.key, "PRIVATE KEY")))
	f.Add([]byte(certPEM(s.ec.inter.cert, s.ec.leaf.cert)), []byte(keyPEM(f, s.ec.leaf.key, "PRIVATE KEY")))
	f.Add([]byte(certPEM(s.rsa.leaf.cert)), []byte(keyPEM(f, s.rsa.leaf.key, "RSA PRIVATE KEY")))
	f.Add([]byte{}, []byte{})

	f.Fuzz(func(t *testing.T, crt, key []byte) {
		b, err := ParseTLS(crt, key)
		checkDecoded(t, append(append([]byte(nil), crt...), key...), b, err)
	})
}

package pki

import (
	"runtime"
	"fmt"
	"os"
	"bytes"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

// fuzzSeeds is valid material for the corpora: a three-level RSA chain, an
// ECDSA chain and a self-signed leaf.
type fuzzSeeds struct {
	rsa, ec pki3
	self    *issued
}

func newFuzzSeeds(f *testing.F) fuzzSeeds {
	return fuzzSeeds{rsa: newChain(f, algRSA), ec: newChain(f, algP256), self: selfSigned(f, algP384)}
}

// checkDecoded asserts what every successful parse must give: a bundle that
// verifies, encodes, and reads back the same through ParseTLS.
func checkDecoded(t *testing.T, b *Bundle, err error) {
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
	for _, mode := range []ChainMode{ChainLeafAndIntermediates, ChainFull, ChainLeafOnly} {
		for _, enc := range []KeyEncoding{KeyPKCS8, KeyPKCS1} {
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
		}
	}
	_ = b.CAPEM()
	_ = b.LeafDER()
	if _, err := b.PrivateKeyDER(); err != nil {
		t.Fatalf("PrivateKeyDER: %v", err)
	}
}

// FuzzDecodePFX feeds arbitrary DER to the PKCS#12 path.
func FuzzDecodePFX(f *testing.F) {
	s := newFuzzSeeds(f)
	for _, x := range []struct {
		key   *issued
		certs []*issued
	}{
		{s.rsa.leaf, []*issued{s.rsa.inter, s.rsa.root, s.rsa.leaf}},
		{s.ec.leaf, []*issued{s.ec.leaf, s.ec.inter}},
		{s.self, []*issued{s.self}},
		{s.ec.leaf, []*issued{s.rsa.leaf}},
	} {
		cs := certs(x.certs...)
		der, err := pkcs12.LegacyDES.Encode(x.key.key, cs[0], cs[1:], "")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
	}
	noKey, err := pkcs12.LegacyDES.EncodeTrustStore(certs(s.rsa.leaf), "")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(noKey)
	f.Add([]byte{})
	f.Add([]byte{0x30, 0x80})

	f.Fuzz(func(t *testing.T, der []byte) {
		b, err := Decode(ContentTypePKCS12, base64.StdEncoding.EncodeToString(der))
		checkDecoded(t, b, err)
	})
}

// FuzzDecodePEM feeds arbitrary text to the PEM path.
func FuzzDecodePEM(f *testing.F) {
	s := newFuzzSeeds(f)
	f.Add(keyPEM(f, s.rsa.leaf.key, "PRIVATE KEY") + certPEM(s.rsa.leaf.cert, s.rsa.inter.cert, s.rsa.root.cert))
	f.Add(certPEM(s.ec.inter.cert, s.ec.leaf.cert) + keyPEM(f, s.ec.leaf.key, "EC PRIVATE KEY"))
	f.Add(certPEM(s.self.cert) + keyPEM(f, s.self.key, "PRIVATE KEY"))
	f.Add(keyPEM(f, s.rsa.leaf.key, "RSA PRIVATE KEY") + certPEM(s.rsa.root.cert, s.rsa.leaf.cert))
	f.Add(certPEM(s.rsa.leaf.cert))
	f.Add("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n")
	f.Add("")

	f.Fuzz(func(t *testing.T, value string) {
		os.WriteFile(fmt.Sprintf("/tmp/lastinput-%d", os.Getpid()), []byte(value), 0o644)
		tm := time.AfterFunc(2*time.Second, func() {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			os.WriteFile(fmt.Sprintf("/tmp/stack-%d", os.Getpid()), buf[:n], 0o644)
		})
		defer tm.Stop()
		b, err := Decode(ContentTypePEM, value)
		checkDecoded(t, b, err)
	})
}

// FuzzParseTLS feeds arbitrary tls.crt and tls.key pairs.
func FuzzParseTLS(f *testing.F) {
	s := newFuzzSeeds(f)
	f.Add([]byte(certPEM(s.rsa.leaf.cert, s.rsa.inter.cert)), []byte(keyPEM(f, s.rsa.leaf.key, "RSA PRIVATE KEY")))
	f.Add([]byte(certPEM(s.ec.leaf.cert, s.ec.inter.cert, s.ec.root.cert)), []byte(keyPEM(f, s.ec.leaf.key, "EC PRIVATE KEY")))
	f.Add([]byte(certPEM(s.self.cert)), []byte(keyPEM(f, s.self.key, "PRIVATE KEY")))
	f.Add([]byte(certPEM(s.ec.inter.cert, s.ec.leaf.cert)), []byte(keyPEM(f, s.ec.leaf.key, "PRIVATE KEY")))
	f.Add([]byte{}, []byte{})

	f.Fuzz(func(t *testing.T, crt, key []byte) {
		b, err := ParseTLS(crt, key)
		checkDecoded(t, b, err)
	})
}

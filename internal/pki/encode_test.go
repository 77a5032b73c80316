package pki

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"

	"software.sslmate.com/src/go-pkcs12"
)

// TestEncodingsRoundTrip writes every ChainMode and KeyEncoding for every key
// type and reads the result back with ParseTLS, Decode and go-pkcs12.
func TestEncodingsRoundTrip(t *testing.T) {
	t.Parallel()
	eachAlg(t, func(t *testing.T, alg keyAlg, c pki3) {
		b, err := Decode(ContentTypePKCS12, pfxValue(t, c.leaf.key, c.root.cert, c.leaf.cert, c.inter.cert))
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		sameCerts(t, "Chain", b.Chain(), certs(c.leaf, c.inter, c.root))

		modes := []struct {
			mode ChainMode
			want []*x509.Certificate
		}{
			{"", certs(c.leaf, c.inter)},
			{ChainLeafAndIntermediates, certs(c.leaf, c.inter)},
			{ChainFull, certs(c.leaf, c.inter, c.root)},
			{ChainLeafOnly, certs(c.leaf)},
		}
		pkcs1Type := "EC PRIVATE KEY"
		if alg == algRSA {
			pkcs1Type = "RSA PRIVATE KEY"
		}
		encodings := []struct {
			enc       KeyEncoding
			blockType string
		}{
			{"", "PRIVATE KEY"},
			{KeyPKCS8, "PRIVATE KEY"},
			{KeyPKCS1, pkcs1Type},
		}

		for _, m := range modes {
			crt := b.CertificatesPEM(m.mode)
			sameCerts(t, "tls.crt "+string(m.mode), pemCerts(t, crt), m.want)
			for _, e := range encodings {
				name := string(m.mode) + "/" + string(e.enc)
				key, err := b.PrivateKeyPEM(e.enc)
				if err != nil {
					t.Fatalf("%s: PrivateKeyPEM: %v", name, err)
				}
				if blk, rest := pem.Decode(key); blk == nil || blk.Type != e.blockType || len(bytes.TrimSpace(rest)) > 0 {
					t.Fatalf("%s: tls.key is not one %q block", name, e.blockType)
				}
				back, err := ParseTLS(crt, key)
				if err != nil {
					t.Fatalf("%s: ParseTLS: %v", name, err)
				}
				sameCerts(t, name+" ParseTLS chain", back.Chain(), m.want)
				if !KeyMatches(back.Leaf, back.Key) {
					t.Fatalf("%s: ParseTLS key does not match", name)
				}
				// Re-encoding what a Secret holds is stable.
				if again := back.CertificatesPEM(m.mode); !bytes.Equal(again, crt) {
					t.Fatalf("%s: re-encoded tls.crt differs", name)
				}

				combined, err := b.CombinedPEM(m.mode, e.enc)
				if err != nil {
					t.Fatalf("%s: CombinedPEM: %v", name, err)
				}
				if !bytes.Equal(combined, append(key, crt...)) {
					t.Fatalf("%s: tls-combined.pem is not key then certificates", name)
				}
				fromCombined, err := Decode(ContentTypePEM, string(combined))
				if err != nil {
					t.Fatalf("%s: Decode(tls-combined.pem): %v", name, err)
				}
				sameCerts(t, name+" combined chain", fromCombined.Chain(), m.want)
			}

			// keystore.p12 opens with the password and holds the same chain.
			p12, err := b.PKCS12("s3cret", m.mode)
			if err != nil {
				t.Fatalf("%s: PKCS12: %v", m.mode, err)
			}
			key, leaf, cas, err := pkcs12.DecodeChain(p12, "s3cret")
			if err != nil {
				t.Fatalf("%s: pkcs12.DecodeChain: %v", m.mode, err)
			}
			sameCerts(t, "keystore.p12 "+string(m.mode), append([]*x509.Certificate{leaf}, cas...), m.want)
			if signer, err := supportedKey(key); err != nil || !KeyMatches(leaf, signer) {
				t.Fatalf("%s: keystore.p12 key does not match its leaf (%v)", m.mode, err)
			}
			if _, _, _, err := pkcs12.DecodeChain(p12, "wrong"); !errors.Is(err, pkcs12.ErrIncorrectPassword) {
				t.Fatalf("%s: wrong password: got %v", m.mode, err)
			}
		}

		// ca.crt is the root.
		sameCerts(t, "ca.crt", pemCerts(t, b.CAPEM()), certs(c.root))

		// tls.der and key.der.
		if !bytes.Equal(b.LeafDER(), c.leaf.cert.Raw) {
			t.Fatal("tls.der is not the leaf")
		}
		der, err := b.PrivateKeyDER()
		if err != nil {
			t.Fatalf("PrivateKeyDER: %v", err)
		}
		k, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			t.Fatalf("key.der is not PKCS#8: %v", err)
		}
		if signer, err := supportedKey(k); err != nil || !KeyMatches(c.leaf.cert, signer) {
			t.Fatal("key.der is not the leaf's key")
		}
	})
}

// TestEncodeSelfSigned checks that a self-signed leaf is both tls.crt and
// ca.crt in every mode.
func TestEncodeSelfSigned(t *testing.T) {
	t.Parallel()
	self := selfSigned(t, algP256)
	b, err := Decode(ContentTypePEM, certPEM(self.cert)+keyPEM(t, self.key, "EC PRIVATE KEY"))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	for _, mode := range []ChainMode{"", ChainLeafAndIntermediates, ChainFull, ChainLeafOnly} {
		sameCerts(t, "tls.crt "+string(mode), pemCerts(t, b.CertificatesPEM(mode)), certs(self))
	}
	sameCerts(t, "ca.crt", pemCerts(t, b.CAPEM()), certs(self))
}

// TestEncodeLeafAndIntermediate checks ca.crt is the last intermediate when
// the root is unknown, and Full then adds nothing.
func TestEncodeLeafAndIntermediate(t *testing.T) {
	t.Parallel()
	c := newChain(t, algRSA)
	b, err := Decode(ContentTypePKCS12, pfxValue(t, c.leaf.key, c.inter.cert, c.leaf.cert))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	sameCerts(t, "ca.crt", pemCerts(t, b.CAPEM()), certs(c.inter))
	sameCerts(t, "tls.crt Full", pemCerts(t, b.CertificatesPEM(ChainFull)), certs(c.leaf, c.inter))
}

// TestEncodeBadInput covers the encoders' own errors.
func TestEncodeBadInput(t *testing.T) {
	t.Parallel()
	c := newChain(t, algP256)
	b := &Bundle{Leaf: c.leaf.cert, Key: c.leaf.key}
	if _, err := b.PrivateKeyPEM("PKCS7"); err == nil {
		t.Error("unknown encoding accepted")
	}
	if _, err := b.CombinedPEM("", "PKCS7"); err == nil {
		t.Error("unknown encoding accepted by CombinedPEM")
	}
	empty := &Bundle{}
	if _, err := empty.PrivateKeyPEM(""); !errors.Is(err, ErrNoPrivateKey) {
		t.Errorf("PrivateKeyPEM without key: %v", err)
	}
	if _, err := empty.PrivateKeyDER(); !errors.Is(err, ErrNoPrivateKey) {
		t.Errorf("PrivateKeyDER without key: %v", err)
	}
	if _, err := empty.PKCS12("", ""); !errors.Is(err, ErrMalformed) {
		t.Errorf("PKCS12 without leaf: %v", err)
	}
	if empty.CertificatesPEM("") != nil || empty.CAPEM() != nil || empty.LeafDER() != nil || empty.Chain() != nil {
		t.Error("an empty bundle encoded certificates")
	}
	var nilBundle *Bundle
	if nilBundle.Chain() != nil || nilBundle.CAPEM() != nil {
		t.Error("a nil bundle encoded certificates")
	}
}

// TestModeAndEncodingValid pins which spec values the encoders know.
func TestModeAndEncodingValid(t *testing.T) {
	t.Parallel()
	for _, m := range []ChainMode{"", ChainLeafAndIntermediates, ChainFull, ChainLeafOnly} {
		if !m.Valid() {
			t.Errorf("%q not valid", m)
		}
	}
	if ChainMode("Root").Valid() || KeyEncoding("PKCS7").Valid() {
		t.Error("unknown value valid")
	}
	for _, e := range []KeyEncoding{"", KeyPKCS8, KeyPKCS1} {
		if !e.Valid() {
			t.Errorf("%q not valid", e)
		}
	}
}

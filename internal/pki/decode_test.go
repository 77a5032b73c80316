package pki

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// decodeCase is a value Decode must read, and the bundle it must give.
type decodeCase struct {
	name        string
	contentType string
	value       string
	leaf        *issued
	inters      []*x509.Certificate
	root        *x509.Certificate
}

// TestDecodeOrdersChain decodes PFX and PEM values whose certificates and
// key arrive in many orders and checks the bundle's leaf, intermediates and
// root, and the tls.crt / ca.crt they produce.
func TestDecodeOrdersChain(t *testing.T) {
	t.Parallel()
	eachAlg(t, func(t *testing.T, alg keyAlg, c pki3) {
		self := selfSigned(t, alg)
		inter2 := mint(t, "Test Intermediate 2 "+string(alg), testKey(t, alg, "inter2"), c.inter, certOpts{ca: true})
		leaf4 := mint(t, "leaf4-"+string(alg), testKey(t, alg, "leaf4"), inter2, certOpts{})
		nameOnlyInter := mint(t, "Name-only Intermediate "+string(alg), testKey(t, alg, "inter3"), c.root, certOpts{ca: true, noAKI: true})
		nameOnlyLeaf := mint(t, "name-only-leaf-"+string(alg), testKey(t, alg, "leaf5"), nameOnlyInter, certOpts{noAKI: true})

		traditional := "EC PRIVATE KEY"
		if alg == algRSA {
			traditional = "RSA PRIVATE KEY"
		}
		leafKey := keyPEM(t, c.leaf.key, "PRIVATE KEY")

		tests := []decodeCase{
			{"pfx scrambled intermediate root leaf", ContentTypePKCS12,
				pfxValue(t, c.leaf.key, c.inter.cert, c.root.cert, c.leaf.cert),
				c.leaf, certs(c.inter), c.root.cert},
			{"pfx leaf first", ContentTypePKCS12,
				pfxValue(t, c.leaf.key, c.leaf.cert, c.inter.cert, c.root.cert),
				c.leaf, certs(c.inter), c.root.cert},
			{"pfx leaf and intermediate, no root", ContentTypePKCS12,
				pfxValue(t, c.leaf.key, c.inter.cert, c.leaf.cert),
				c.leaf, certs(c.inter), nil},
			{"pfx leaf only, issuer absent", ContentTypePKCS12,
				pfxValue(t, c.leaf.key, c.leaf.cert),
				c.leaf, nil, nil},
			{"pfx self-signed leaf", ContentTypePKCS12,
				pfxValue(t, self.key, self.cert),
				self, nil, nil},
			{"pfx four levels reversed", ContentTypePKCS12,
				pfxValue(t, leaf4.key, c.root.cert, c.inter.cert, inter2.cert, leaf4.cert),
				leaf4, certs(inter2, c.inter), c.root.cert},
			{"pfx duplicates", ContentTypePKCS12,
				pfxValue(t, c.leaf.key, c.leaf.cert, c.inter.cert, c.leaf.cert, c.root.cert, c.inter.cert),
				c.leaf, certs(c.inter), c.root.cert},
			{"pfx base64 with line breaks", ContentTypePKCS12,
				wrap(pfxValue(t, c.leaf.key, c.leaf.cert, c.inter.cert), 64),
				c.leaf, certs(c.inter), nil},
			{"pfx empty content type", "",
				pfxValue(t, c.leaf.key, c.root.cert, c.leaf.cert, c.inter.cert),
				c.leaf, certs(c.inter), c.root.cert},
			{"pem key first (Key Vault)", ContentTypePEM,
				leafKey + certPEM(c.leaf.cert, c.inter.cert, c.root.cert),
				c.leaf, certs(c.inter), c.root.cert},
			{"pem key last", ContentTypePEM,
				certPEM(c.leaf.cert, c.inter.cert) + leafKey,
				c.leaf, certs(c.inter), nil},
			{"pem key in the middle, certificates scrambled", ContentTypePEM,
				certPEM(c.root.cert) + leafKey + certPEM(c.leaf.cert, c.inter.cert),
				c.leaf, certs(c.inter), c.root.cert},
			{"pem traditional key", ContentTypePEM,
				keyPEM(t, c.leaf.key, traditional) + certPEM(c.inter.cert, c.leaf.cert),
				c.leaf, certs(c.inter), nil},
			{"pem self-signed, key last", ContentTypePEM,
				certPEM(self.cert) + keyPEM(t, self.key, traditional),
				self, nil, nil},
			{"pem with text around blocks", ContentTypePEM,
				"Bag Attributes\n    localKeyID: 01 00 00 00\n" + leafKey + "subject=CN = leaf\n" + certPEM(c.leaf.cert) + "\n\n",
				c.leaf, nil, nil},
			{"pem with CRLF line endings", ContentTypePEM,
				strings.ReplaceAll(leafKey+certPEM(c.leaf.cert, c.inter.cert), "\n", "\r\n"),
				c.leaf, certs(c.inter), nil},
			{"pem empty content type", "",
				certPEM(c.inter.cert, c.leaf.cert) + leafKey,
				c.leaf, certs(c.inter), nil},
			{"pem content type with parameters and case", "Application/X-PEM-File; charset=utf-8",
				leafKey + certPEM(c.leaf.cert),
				c.leaf, nil, nil},
			{"pem duplicates", ContentTypePEM,
				leafKey + certPEM(c.leaf.cert, c.leaf.cert, c.inter.cert, c.inter.cert),
				c.leaf, certs(c.inter), nil},
			{"links by name when key identifiers are absent", ContentTypePEM,
				certPEM(c.root.cert, nameOnlyLeaf.cert, nameOnlyInter.cert) + keyPEM(t, nameOnlyLeaf.key, "PRIVATE KEY"),
				nameOnlyLeaf, certs(nameOnlyInter), c.root.cert},
		}
		if alg != algRSA {
			// OpenSSL's `ecparam -genkey` writes the curve ahead of the key.
			tests = append(tests, decodeCase{"pem with EC PARAMETERS", ContentTypePEM,
				"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n" +
					keyPEM(t, c.leaf.key, "EC PRIVATE KEY") + certPEM(c.leaf.cert),
				c.leaf, nil, nil})
		}

		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				b, err := Decode(tc.contentType, tc.value)
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if !bytes.Equal(b.Leaf.Raw, tc.leaf.cert.Raw) {
					t.Fatalf("leaf is %s, want %s", describe(b.Leaf), describe(tc.leaf.cert))
				}
				if !KeyMatches(b.Leaf, b.Key) || !b.Key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(tc.leaf.key.Public()) {
					t.Fatal("key is not the leaf's")
				}
				sameCerts(t, "intermediates", b.Intermediates, tc.inters)
				if (b.Root == nil) != (tc.root == nil) || b.Root != nil && !bytes.Equal(b.Root.Raw, tc.root.Raw) {
					t.Fatalf("root is %s, want %s", describe(b.Root), describe(tc.root))
				}
				if err := b.Verify(b.Leaf.NotBefore); err != nil {
					t.Fatalf("Verify: %v", err)
				}

				// tls.crt by default: leaf and intermediates, never the root.
				wantCrt := append([]*x509.Certificate{tc.leaf.cert}, tc.inters...)
				sameCerts(t, "tls.crt", pemCerts(t, b.CertificatesPEM("")), wantCrt)
				// ca.crt: root, else the last intermediate, else the leaf.
				wantCA := tc.leaf.cert
				switch {
				case tc.root != nil:
					wantCA = tc.root
				case len(tc.inters) > 0:
					wantCA = tc.inters[len(tc.inters)-1]
				}
				sameCerts(t, "ca.crt", pemCerts(t, b.CAPEM()), []*x509.Certificate{wantCA})
			})
		}
	})
}

// TestDecodeCycleTerminates feeds two CAs that issued each other; ordering
// must stop instead of looping.
func TestDecodeCycleTerminates(t *testing.T) {
	t.Parallel()
	ka, kb := testKey(t, algP256, "cycle-a"), testKey(t, algP256, "cycle-b")
	a0 := mint(t, "Cycle A", ka, nil, certOpts{ca: true})
	b := mint(t, "Cycle B", kb, a0, certOpts{ca: true}) // B issued by A
	a := mint(t, "Cycle A", ka, b, certOpts{ca: true})  // A issued by B
	leaf := mint(t, "cycle-leaf", testKey(t, algP256, "cycle-leaf"), a, certOpts{})

	got, err := Decode(ContentTypePEM, keyPEM(t, leaf.key, "PRIVATE KEY")+certPEM(b.cert, leaf.cert, a.cert))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	sameCerts(t, "chain", got.Chain(), certs(leaf, a, b))

	// With A's self-signed twin present it becomes the root above B.
	got, err = Decode(ContentTypePEM, keyPEM(t, leaf.key, "PRIVATE KEY")+certPEM(b.cert, a0.cert, leaf.cert, a.cert))
	if err != nil {
		t.Fatalf("Decode with self-signed A: %v", err)
	}
	sameCerts(t, "chain", got.Chain(), certs(leaf, a, b, a0))
}

// TestDecodeErrors checks each failure's class and that its message names
// the problem, and never echoes key material.
func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	c := newChain(t, algRSA)
	other := newChain(t, algP256)
	self := selfSigned(t, algRSA)
	key := keyPEM(t, c.leaf.key, "PRIVATE KEY")
	// An issuer with the intermediate's name but another key, linked by name only.
	impostor := mint(t, c.inter.cert.Subject.CommonName, testKey(t, algRSA, "impostor"), c.root, certOpts{ca: true, noAKI: true})
	nameOnlyLeaf := mint(t, "name-only", testKey(t, algRSA, "leaf5"), c.inter, certOpts{noAKI: true})
	// A non-CA certificate that signed a leaf anyway.
	notCA := mint(t, "Not A CA", testKey(t, algP256, "notca"), c.root, certOpts{})
	underNotCA := mint(t, "under-not-ca", testKey(t, algP256, "leaf6"), notCA, certOpts{})
	// Two certificates for one key.
	twin := mint(t, "twin", c.leaf.key, c.inter, certOpts{})
	// A chain longer than the guard.
	long := []*issued{c.root}
	for i := 0; i < maxChainLength; i++ {
		long = append(long, mint(t, "Long "+strings.Repeat("I", i+1), testKey(t, algP256, fmt.Sprintf("long%d", i)), long[len(long)-1], certOpts{ca: true}))
	}

	tests := []struct {
		name        string
		contentType string
		value       string
		want        error
		msg         string // a substring the message must have
	}{
		{"pfx without key", ContentTypePKCS12, pfxTrustStore(t, c.leaf.cert, c.inter.cert), ErrNoPrivateKey, "non-exportable"},
		{"pem without key", ContentTypePEM, certPEM(c.leaf.cert, c.inter.cert), ErrNoPrivateKey, "2 certificate(s)"},
		{"pem key for another certificate", ContentTypePEM, key + certPEM(other.leaf.cert, other.inter.cert), ErrKeyMismatch, "matches none of the 2"},
		{"pfx key for another certificate", ContentTypePKCS12, pfxValue(t, c.leaf.key, other.leaf.cert), ErrKeyMismatch, "RSA 2048"},
		{"missing intermediate", ContentTypePEM, key + certPEM(c.leaf.cert, c.root.cert), ErrChainBroken, `issuer "CN=Test Intermediate RSA-2048`},
		{"stray unrelated certificate", ContentTypePEM, key + certPEM(c.leaf.cert, c.inter.cert, c.root.cert, other.root.cert), ErrChainBroken, "Test Root P-256"},
		{"tampered leaf signature", ContentTypePEM, key + certPEM(tamper(t, c.leaf.cert), c.inter.cert), ErrChainBroken, "does not verify"},
		{"tampered root signature", ContentTypePEM, key + certPEM(c.leaf.cert, c.inter.cert, tamper(t, c.root.cert)), ErrChainBroken, "does not verify with its own key"},
		{"tampered self-signed leaf", ContentTypePKCS12, pfxValue(t, self.key, tamper(t, self.cert)), ErrChainBroken, "self-signed"},
		{"same-name issuer with another key", ContentTypePEM, keyPEM(t, nameOnlyLeaf.key, "PRIVATE KEY") + certPEM(nameOnlyLeaf.cert, impostor.cert), ErrChainBroken, "does not verify"},
		{"issuer is not a CA", ContentTypePEM, keyPEM(t, underNotCA.key, "PRIVATE KEY") + certPEM(underNotCA.cert, notCA.cert), ErrChainBroken, "does not verify"},
		{"key matches two certificates", ContentTypePEM, key + certPEM(c.leaf.cert, twin.cert, c.inter.cert), ErrChainBroken, "cannot tell"},
		{"chain too long", ContentTypePEM, keyPEM(t, long[len(long)-1].key, "PRIVATE KEY") + certPEM(certs(long...)...), ErrChainBroken, "at most 10"},
		{"two keys", ContentTypePEM, key + keyPEM(t, other.leaf.key, "PRIVATE KEY") + certPEM(c.leaf.cert), ErrMalformed, "2 private keys"},
		{"key without certificate", ContentTypePEM, key, ErrMalformed, "no certificate"},
		{"empty value", ContentTypePKCS12, " \n", ErrMalformed, "empty"},
		{"not base64", ContentTypePKCS12, "this is not base64!", ErrMalformed, "base64"},
		{"base64 of garbage", ContentTypePKCS12, "aGVsbG8gd29ybGQ=", ErrMalformed, "PKCS#12"},
		{"truncated pfx", ContentTypePKCS12, truncatedPFX(t, c), ErrMalformed, "PKCS#12"},
		{"pfx with a password", ContentTypePKCS12, pfxWithPassword(t, c), ErrMalformed, "password"},
		{"pem garbage", ContentTypePEM, "hello world", ErrMalformed, "no PEM block"},
		{"truncated pem key", ContentTypePEM, key[:len(key)/2] + certPEM(c.leaf.cert), ErrMalformed, "truncated"},
		{"corrupted key body", ContentTypePEM, corruptKeyPEM(t, c.leaf.key) + certPEM(c.leaf.cert), ErrMalformed, "PRIVATE KEY"},
		{"corrupted certificate", ContentTypePEM, key + "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n", ErrMalformed, "not a valid certificate"},
		{"encrypted PKCS#8 key", ContentTypePEM, relabel(key, "ENCRYPTED PRIVATE KEY") + certPEM(c.leaf.cert), ErrMalformed, "encrypted"},
		{"legacy encrypted key", ContentTypePEM, legacyEncrypted(t, c.leaf.key) + certPEM(c.leaf.cert), ErrMalformed, "encrypted"},
		{"unknown block type", ContentTypePEM, relabel(key, "OPENSSH PRIVATE KEY") + certPEM(c.leaf.cert), ErrMalformed, "unsupported type"},
		{"pkcs1 label on pkcs8 body", ContentTypePEM, relabel(key, "RSA PRIVATE KEY") + certPEM(c.leaf.cert), ErrMalformed, "RSA PRIVATE KEY"},
		{"unsupported curve", ContentTypePEM, selfSignedPEM(t, algP224), ErrMalformed, "P-224"},
		{"unsupported key type", ContentTypePEM, selfSignedPEM(t, algEd25519), ErrMalformed, "ed25519"},
		{"unknown content type", "text/plain", key + certPEM(c.leaf.cert), ErrMalformed, "text/plain"},
		{"value too large", ContentTypePEM, key + strings.Repeat("\n", maxValueBytes), ErrMalformed, "at most"},
		{"pfx with an unsupported key type", ContentTypePKCS12, ed25519PFX(t), ErrMalformed, "ed25519"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := Decode(tc.contentType, tc.value)
			if err == nil {
				t.Fatalf("Decode succeeded with leaf %s; want %v", describe(b.Leaf), tc.want)
			}
			checkClass(t, err, tc.want)
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("message %q does not mention %q", err, tc.msg)
			}
			assertNoLeak(t, err, tc.value)
			t.Log(err)
		})
	}
}

// checkClass fails unless err is of class want and of no other class.
func checkClass(t testing.TB, err, want error) {
	t.Helper()
	for _, s := range []error{ErrNoPrivateKey, ErrKeyMismatch, ErrChainBroken, ErrMalformed} {
		if got := errors.Is(err, s); got != (s == want) {
			t.Errorf("errors.Is(%q, %v) = %v, want %v", err, s, got, !got)
		}
	}
	if n := strings.Count(err.Error(), want.Error()); n != 1 {
		t.Errorf("%q names its class %d times, want once", err, n)
	}
}

// wrap breaks s into lines of n characters.
func wrap(s string, n int) string {
	var sb strings.Builder
	for len(s) > n {
		sb.WriteString(s[:n] + "\n")
		s = s[n:]
	}
	sb.WriteString(s)
	return sb.String()
}

// relabel changes the type of the (first) PEM block in s.
func relabel(s, typ string) string {
	i, j := strings.Index(s, "-----BEGIN ")+len("-----BEGIN "), strings.Index(s, "-----\n")
	old := s[i:j]
	return strings.ReplaceAll(s, old+"-----", typ+"-----")
}

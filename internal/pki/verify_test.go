package pki

import (
	"crypto/x509"
	"testing"
	"time"
)

// TestVerify checks hand-built bundles, as a caller might assemble or alter
// them, against the invariants Decode guarantees.
func TestVerify(t *testing.T) {
	t.Parallel()
	c := newChain(t, algP256)
	inter2 := mint(t, "Test Intermediate 2", testKey(t, algP256, "inter2"), c.inter, certOpts{ca: true})
	leaf4 := mint(t, "leaf4", testKey(t, algP256, "leaf4"), inter2, certOpts{})
	self := selfSigned(t, algRSA)
	past := time.Now().Add(-30 * time.Minute)
	expiredRoot := mint(t, "Expired Root", testKey(t, algP256, "expired-root"), nil, certOpts{ca: true, notAfter: past})
	expiredLeaf := mint(t, "expired", testKey(t, algP256, "expired-leaf"), expiredRoot, certOpts{notAfter: past})
	// The real root's key under another name: the signature verifies, the name link does not.
	renamedRoot := mint(t, "Renamed Root", c.root.key, nil, certOpts{ca: true})

	now := time.Now()
	tests := []struct {
		name string
		b    *Bundle
		want error // nil: valid
	}{
		{"three levels", &Bundle{Leaf: c.leaf.cert, Intermediates: certs(c.inter), Root: c.root.cert, Key: c.leaf.key}, nil},
		{"four levels", &Bundle{Leaf: leaf4.cert, Intermediates: certs(inter2, c.inter), Root: c.root.cert, Key: leaf4.key}, nil},
		{"no root", &Bundle{Leaf: c.leaf.cert, Intermediates: certs(c.inter), Key: c.leaf.key}, nil},
		{"leaf alone", &Bundle{Leaf: c.leaf.cert, Key: c.leaf.key}, nil},
		{"self-signed", &Bundle{Leaf: self.cert, Key: self.key}, nil},
		{"expired is still valid material", &Bundle{Leaf: expiredLeaf.cert, Root: expiredRoot.cert, Key: expiredLeaf.key}, nil},
		{"nil bundle", nil, ErrMalformed},
		{"no leaf", &Bundle{Key: c.leaf.key}, ErrMalformed},
		{"no key", &Bundle{Leaf: c.leaf.cert}, ErrNoPrivateKey},
		{"wrong key", &Bundle{Leaf: c.leaf.cert, Key: c.inter.key}, ErrKeyMismatch},
		{"intermediates reversed", &Bundle{Leaf: leaf4.cert, Intermediates: certs(c.inter, inter2), Root: c.root.cert, Key: leaf4.key}, ErrChainBroken},
		{"intermediate missing", &Bundle{Leaf: leaf4.cert, Intermediates: certs(c.inter), Key: leaf4.key}, ErrChainBroken},
		{"root did not issue the top intermediate", &Bundle{Leaf: c.leaf.cert, Intermediates: certs(c.inter), Root: expiredRoot.cert, Key: c.leaf.key}, ErrChainBroken},
		{"root with the right key but another name", &Bundle{Leaf: c.leaf.cert, Intermediates: certs(c.inter), Root: renamedRoot.cert, Key: c.leaf.key}, ErrChainBroken},
		{"root is not self-signed", &Bundle{Leaf: leaf4.cert, Intermediates: certs(inter2), Root: c.inter.cert, Key: leaf4.key}, ErrChainBroken},
		{"self-signed intermediate", &Bundle{Leaf: c.leaf.cert, Intermediates: certs(c.inter, c.root), Key: c.leaf.key}, ErrChainBroken},
		{"self-signed leaf with a root", &Bundle{Leaf: self.cert, Root: c.root.cert, Key: self.key}, ErrChainBroken},
		{"tampered root", &Bundle{Leaf: c.leaf.cert, Intermediates: certs(c.inter), Root: tamper(t, c.root.cert), Key: c.leaf.key}, ErrChainBroken},
		{"nil intermediate", &Bundle{Leaf: c.leaf.cert, Intermediates: []*x509.Certificate{nil}, Key: c.leaf.key}, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.b.Verify(now)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Verify succeeded, want %v", tc.want)
			}
			checkClass(t, err, tc.want)
		})
	}
}

// TestKeyMatches covers the nil and cross-type cases Decode never reaches.
func TestKeyMatches(t *testing.T) {
	t.Parallel()
	rsaLeaf, ecLeaf := selfSigned(t, algRSA), selfSigned(t, algP256)
	tests := []struct {
		name string
		ok   bool
		got  bool
	}{
		{"rsa", true, KeyMatches(rsaLeaf.cert, rsaLeaf.key)},
		{"ec", true, KeyMatches(ecLeaf.cert, ecLeaf.key)},
		{"rsa key, ec certificate", false, KeyMatches(ecLeaf.cert, rsaLeaf.key)},
		{"other ec key", false, KeyMatches(ecLeaf.cert, testKey(t, algP256, "other"))},
		{"other curve", false, KeyMatches(ecLeaf.cert, testKey(t, algP384, "self"))},
		{"nil certificate", false, KeyMatches(nil, rsaLeaf.key)},
		{"nil key", false, KeyMatches(rsaLeaf.cert, nil)},
	}
	for _, tc := range tests {
		if tc.got != tc.ok {
			t.Errorf("%s: KeyMatches = %v, want %v", tc.name, tc.got, tc.ok)
		}
	}
}

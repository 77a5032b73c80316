package pki

import (
	"strings"
	"testing"
)

// TestParseTLS covers what a Secret may hold beyond the round trips in
// TestEncodingsRoundTrip.
func TestParseTLS(t *testing.T) {
	t.Parallel()
	c := newChain(t, algP384)
	rsa := newChain(t, algRSA)
	key := keyPEM(t, c.leaf.key, "EC PRIVATE KEY")

	good := []struct {
		name     string
		crt, key string
		want     []*issued
	}{
		{"leaf only", certPEM(c.leaf.cert), key, []*issued{c.leaf}},
		{"leaf and intermediate", certPEM(c.leaf.cert, c.inter.cert), key, []*issued{c.leaf, c.inter}},
		{"full chain", certPEM(c.leaf.cert, c.inter.cert, c.root.cert), key, []*issued{c.leaf, c.inter, c.root}},
		{"issuers out of order after the leaf", certPEM(c.leaf.cert, c.root.cert, c.inter.cert), key, []*issued{c.leaf, c.inter, c.root}},
		{"EC PARAMETERS ahead of the key", certPEM(c.leaf.cert),
			"-----BEGIN EC PARAMETERS-----\nBgUrgQQAIg==\n-----END EC PARAMETERS-----\n" + key, []*issued{c.leaf}},
		{"PKCS#8 key", certPEM(c.leaf.cert), keyPEM(t, c.leaf.key, "PRIVATE KEY"), []*issued{c.leaf}},
		{"PKCS#1 key", certPEM(rsa.leaf.cert), keyPEM(t, rsa.leaf.key, "RSA PRIVATE KEY"), []*issued{rsa.leaf}},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			b, err := ParseTLS([]byte(tc.crt), []byte(tc.key))
			if err != nil {
				t.Fatalf("ParseTLS: %v", err)
			}
			sameCerts(t, "chain", b.Chain(), certs(tc.want...))
		})
	}

	bad := []struct {
		name     string
		crt, key string
		want     error
		msg      string
	}{
		{"leaf not first", certPEM(c.inter.cert, c.leaf.cert), key, ErrKeyMismatch, "must start with the leaf"},
		{"key of another certificate", certPEM(rsa.leaf.cert), key, ErrKeyMismatch, "ECDSA P-384"},
		{"empty tls.key", certPEM(c.leaf.cert), "", ErrNoPrivateKey, "tls.key"},
		{"tls.key with parameters only", certPEM(c.leaf.cert), "-----BEGIN EC PARAMETERS-----\nBgUrgQQAIg==\n-----END EC PARAMETERS-----\n", ErrNoPrivateKey, "tls.key"},
		{"empty tls.crt", "", key, ErrMalformed, "tls.crt"},
		{"key in tls.crt", key + certPEM(c.leaf.cert), key, ErrMalformed, "tls.crt"},
		{"certificate in tls.key", certPEM(c.leaf.cert), key + certPEM(c.leaf.cert), ErrMalformed, "tls.key"},
		{"two keys", certPEM(c.leaf.cert), key + keyPEM(t, rsa.leaf.key, "PRIVATE KEY"), ErrMalformed, "2 private keys"},
		{"stray certificate", certPEM(c.leaf.cert, c.inter.cert, rsa.root.cert), key, ErrChainBroken, "Test Root RSA-2048"},
		{"tampered intermediate", certPEM(c.leaf.cert, tamper(t, c.inter.cert), c.root.cert), key, ErrChainBroken, "does not verify"},
		{"garbage key", certPEM(c.leaf.cert), "not a key", ErrMalformed, "tls.key"},
		{"truncated key", certPEM(c.leaf.cert), key[:len(key)-40], ErrMalformed, "truncated"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			b, err := ParseTLS([]byte(tc.crt), []byte(tc.key))
			if err == nil {
				t.Fatalf("ParseTLS succeeded with leaf %s", describe(b.Leaf))
			}
			checkClass(t, err, tc.want)
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("message %q does not mention %q", err, tc.msg)
			}
			assertNoLeak(t, err, tc.crt, tc.key)
		})
	}
}

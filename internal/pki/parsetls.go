package pki

import (
	"bytes"
)

// ParseTLS parses what a kubernetes.io/tls Secret holds — tls.crt, a PEM chain
// that starts with the leaf, and tls.key, one PEM private key in PKCS#1,
// PKCS#8 or SEC 1 — and runs the same checks as Decode. The controller uses it
// to ask whether a Secret is still valid and to re-encode it.
func ParseTLS(certPEM, keyPEM []byte) (*Bundle, error) {
	if len(certPEM) > maxValueBytes || len(keyPEM) > maxValueBytes {
		return nil, errorf(ErrMalformed, "tls.crt (%d bytes) or tls.key (%d bytes) is larger than %d bytes", len(certPEM), len(keyPEM), maxValueBytes)
	}
	if len(bytes.TrimSpace(keyPEM)) == 0 {
		return nil, errorf(ErrNoPrivateKey, "tls.key is empty")
	}
	crt, err := parsePEM(certPEM, "tls.crt", allowCerts)
	if err != nil {
		return nil, err
	}
	key, err := parsePEM(keyPEM, "tls.key", allowKeys)
	if err != nil {
		return nil, err
	}
	switch len(key.keys) {
	case 0:
		return nil, errorf(ErrNoPrivateKey, "tls.key holds no private key")
	case 1:
	default:
		return nil, errorf(ErrMalformed, "tls.key holds %d private keys; expected exactly one", len(key.keys))
	}
	b, err := assemble(key.keys[0], crt.certs)
	if err != nil {
		return nil, err
	}
	// TLS servers present tls.crt as is, so the leaf has to come first
	// (the same rule as crypto/tls.X509KeyPair).
	if !bytes.Equal(crt.certs[0].Raw, b.Leaf.Raw) {
		return nil, errorf(ErrKeyMismatch, "tls.key matches %s, but tls.crt starts with %s; tls.crt must start with the leaf",
			describe(b.Leaf), describe(crt.certs[0]))
	}
	return b, nil
}

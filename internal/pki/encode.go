package pki

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"software.sslmate.com/src/go-pkcs12"
)

// CertificatesPEM returns tls.crt: the certificates mode selects, leaf first,
// then issuing order. An empty or unknown mode means ChainLeafAndIntermediates.
func (b *Bundle) CertificatesPEM(mode ChainMode) []byte {
	return certsPEM(b.chain(mode))
}

// CAPEM returns ca.crt: the root if known, else the last intermediate, else
// the leaf itself (a self-signed leaf is its own root).
func (b *Bundle) CAPEM() []byte {
	if t := b.top(); t != nil {
		return certsPEM([]*x509.Certificate{t})
	}
	return nil
}

// PrivateKeyPEM returns tls.key in the requested encoding; empty means KeyPKCS8.
func (b *Bundle) PrivateKeyPEM(enc KeyEncoding) ([]byte, error) {
	if b == nil || b.Key == nil {
		return nil, errorf(ErrNoPrivateKey, "the bundle has no private key")
	}
	typ, der, err := marshalKey(b.Key, enc)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), nil
}

// CombinedPEM returns tls-combined.pem: the private key, then the certificates
// as CertificatesPEM(mode) orders them.
func (b *Bundle) CombinedPEM(mode ChainMode, enc KeyEncoding) ([]byte, error) {
	key, err := b.PrivateKeyPEM(enc)
	if err != nil {
		return nil, err
	}
	return append(key, b.CertificatesPEM(mode)...), nil
}

// LeafDER returns tls.der: the leaf certificate in DER (a copy).
func (b *Bundle) LeafDER() []byte {
	if b == nil || b.Leaf == nil {
		return nil
	}
	return bytes.Clone(b.Leaf.Raw)
}

// PrivateKeyDER returns key.der: the private key as PKCS#8 DER.
func (b *Bundle) PrivateKeyDER() ([]byte, error) {
	if b == nil || b.Key == nil {
		return nil, errorf(ErrNoPrivateKey, "the bundle has no private key")
	}
	return x509.MarshalPKCS8PrivateKey(b.Key)
}

// PKCS12 returns keystore.p12: the key, the leaf and the rest of the chain
// that mode selects, encrypted with password using go-pkcs12's Modern encoder
// (PBES2, AES-256-CBC, HMAC-SHA-256; readable by OpenSSL 1.1.1+ and Java 12+).
func (b *Bundle) PKCS12(password string, mode ChainMode) ([]byte, error) {
	if b == nil || b.Leaf == nil || b.Key == nil {
		return nil, errorf(ErrMalformed, "the bundle has no leaf or no private key")
	}
	chain := b.chain(mode)
	p12, err := pkcs12.Modern.Encode(b.Key, chain[0], chain[1:], password)
	if err != nil {
		return nil, fmt.Errorf("encoding PKCS#12 for %s: %w", describe(b.Leaf), err)
	}
	return p12, nil
}

// certsPEM concatenates certificates as CERTIFICATE blocks.
func certsPEM(certs []*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		// Writing to a bytes.Buffer cannot fail.
		_ = pem.Encode(&buf, &pem.Block{Type: pemCertificate, Bytes: c.Raw})
	}
	return buf.Bytes()
}

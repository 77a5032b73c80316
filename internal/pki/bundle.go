package pki

import (
	"crypto"
	"crypto/x509"
)

// Bundle is a decoded certificate with its private key and its ordered chain.
// Decode and ParseTLS only return bundles that pass Verify.
type Bundle struct {
	// Leaf is the certificate whose public key matches Key.
	Leaf *x509.Certificate
	// Intermediates are in issuing order: Intermediates[0] issued Leaf,
	// Intermediates[1] issued Intermediates[0], and so on. Never self-signed.
	Intermediates []*x509.Certificate
	// Root is the self-signed top of the chain when the source had it, else nil.
	// A self-signed leaf is its own root and leaves Root nil.
	Root *x509.Certificate
	// Key is an *rsa.PrivateKey or an *ecdsa.PrivateKey on P-256, P-384 or P-521.
	Key crypto.Signer
}

// ChainMode mirrors spec.chain: which certificates go into tls.crt and keystore.p12.
type ChainMode string

const (
	// ChainLeafAndIntermediates is the default: the leaf, then the
	// intermediates, without a self-signed root.
	ChainLeafAndIntermediates ChainMode = "LeafAndIntermediates"
	// ChainFull is the leaf, the intermediates and the root when it is known.
	ChainFull ChainMode = "Full"
	// ChainLeafOnly is the leaf alone.
	ChainLeafOnly ChainMode = "LeafOnly"
)

// Valid reports whether m is one of the known modes or empty (the default).
// The encoders treat any other value as the default.
func (m ChainMode) Valid() bool {
	switch m {
	case "", ChainLeafAndIntermediates, ChainFull, ChainLeafOnly:
		return true
	}
	return false
}

// KeyEncoding mirrors spec.privateKeyEncoding.
type KeyEncoding string

const (
	// KeyPKCS8 is the default: "PRIVATE KEY" for every key type.
	KeyPKCS8 KeyEncoding = "PKCS8"
	// KeyPKCS1 is the traditional form: "RSA PRIVATE KEY" (PKCS#1) for RSA,
	// "EC PRIVATE KEY" (SEC 1) for ECDSA.
	KeyPKCS1 KeyEncoding = "PKCS1"
)

// Valid reports whether e is one of the known encodings or empty (the default).
func (e KeyEncoding) Valid() bool {
	switch e {
	case "", KeyPKCS8, KeyPKCS1:
		return true
	}
	return false
}

// Chain returns the leaf, the intermediates in issuing order, and the root if known.
func (b *Bundle) Chain() []*x509.Certificate {
	return b.chain(ChainFull)
}

// chain returns the certificates that mode selects, leaf first.
func (b *Bundle) chain(mode ChainMode) []*x509.Certificate {
	if b == nil || b.Leaf == nil {
		return nil
	}
	out := make([]*x509.Certificate, 0, 2+len(b.Intermediates))
	out = append(out, b.Leaf)
	if mode == ChainLeafOnly {
		return out
	}
	out = append(out, b.Intermediates...)
	if mode == ChainFull && b.Root != nil {
		out = append(out, b.Root)
	}
	return out
}

// top is the certificate a client must trust for this chain: the root when
// known, else the last intermediate, else the (self-signed) leaf.
func (b *Bundle) top() *x509.Certificate {
	switch {
	case b == nil:
		return nil
	case b.Root != nil:
		return b.Root
	case len(b.Intermediates) > 0:
		return b.Intermediates[len(b.Intermediates)-1]
	default:
		return b.Leaf
	}
}

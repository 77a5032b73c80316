package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
)

// PEM block types for private keys.
const (
	pemPKCS8 = "PRIVATE KEY"
	pemPKCS1 = "RSA PRIVATE KEY"
	pemSEC1  = "EC PRIVATE KEY"
)

// KeyMatches reports whether key is the private half of cert's public key.
func KeyMatches(cert *x509.Certificate, key crypto.Signer) bool {
	if cert == nil || key == nil {
		return false
	}
	// rsa.PublicKey and ecdsa.PublicKey both implement Equal, which compares
	// type, curve and value; any other type is not supported here anyway.
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(key.Public())
}

// supportedKey narrows a parsed private key to the types Key Vault issues and
// TLS consumers accept: RSA, and ECDSA on P-256, P-384 or P-521.
func supportedKey(k any) (crypto.Signer, error) {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return k, nil
		}
		return nil, errorf(ErrMalformed, "unsupported ECDSA curve %s (want P-256, P-384 or P-521)", k.Curve.Params().Name)
	case nil:
		return nil, errorf(ErrNoPrivateKey, "no private key")
	default:
		// %T names the type only, never the value.
		return nil, errorf(ErrMalformed, "unsupported private key type %T (want RSA or ECDSA)", k)
	}
}

// describeKey names a key's algorithm and size, e.g. "RSA 2048" or "ECDSA P-256".
func describeKey(k crypto.Signer) string {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case *ecdsa.PrivateKey:
		return "ECDSA " + k.Curve.Params().Name
	default:
		return fmt.Sprintf("%T", k)
	}
}

// parseKeyBlock parses the DER of a private key PEM block by its type.
// Library errors are wrapped as they are: they name the problem, not the bytes.
func parseKeyBlock(blockType string, der []byte) (crypto.Signer, error) {
	var (
		k   any
		err error
	)
	switch blockType {
	case pemPKCS8:
		k, err = x509.ParsePKCS8PrivateKey(der)
	case pemPKCS1:
		k, err = x509.ParsePKCS1PrivateKey(der)
	case pemSEC1:
		k, err = x509.ParseECPrivateKey(der)
	default:
		return nil, errorf(ErrMalformed, "%q is not a private key block type", blockType)
	}
	if err != nil {
		return nil, errorf(ErrMalformed, "cannot parse %s: %w", blockType, err)
	}
	return supportedKey(k)
}

// marshalKey returns the PEM block type and DER of key in the requested encoding.
func marshalKey(key crypto.Signer, enc KeyEncoding) (blockType string, der []byte, err error) {
	switch enc {
	case KeyPKCS8, "":
		der, err = x509.MarshalPKCS8PrivateKey(key)
		return pemPKCS8, der, err
	case KeyPKCS1:
		switch k := key.(type) {
		case *rsa.PrivateKey:
			return pemPKCS1, x509.MarshalPKCS1PrivateKey(k), nil
		case *ecdsa.PrivateKey:
			der, err = x509.MarshalECPrivateKey(k)
			return pemSEC1, der, err
		}
		return "", nil, fmt.Errorf("cannot encode a %T as %s", key, enc)
	default:
		return "", nil, fmt.Errorf("unknown private key encoding %q (want %q or %q)", string(enc), KeyPKCS8, KeyPKCS1)
	}
}

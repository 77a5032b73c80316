// Package issuer holds the certificate machinery of the fake Key Vault: key
// generation, test certificate authorities, leaf issuance from a policy-like
// template, CSRs, subject strings and the PFX/PEM encodings the real service
// puts in a certificate-backed secret. It has no HTTP knowledge.
package issuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"strings"
)

// KeySpec describes a key the way a Key Vault policy's key_props does.
type KeySpec struct {
	// Type is "RSA", "RSA-HSM", "EC" or "EC-HSM" (HSM variants behave like software keys here).
	Type string
	// Size is the RSA modulus size in bits (2048 when 0).
	Size int
	// Curve is the EC curve: "P-256" (default), "P-384", "P-521". "P-256K" is not supported.
	Curve string
}

// IsEC reports whether the spec describes an elliptic-curve key.
func (k KeySpec) IsEC() bool { return strings.HasPrefix(strings.ToUpper(k.Type), "EC") }

// Normalize fills in defaults: RSA 2048, or P-256 for EC.
func (k KeySpec) Normalize() KeySpec {
	if k.Type == "" {
		k.Type = "RSA"
	}
	if k.IsEC() {
		if k.Curve == "" {
			k.Curve = "P-256"
		}
		k.Size = CurveBits(k.Curve)
	} else if k.Size == 0 {
		k.Size = 2048
	}
	return k
}

// Validate reports a problem with the spec in the words of the service where known.
func (k KeySpec) Validate() error {
	switch strings.ToUpper(k.Type) {
	case "RSA", "RSA-HSM":
		switch k.Size {
		case 2048, 3072, 4096:
		default:
			return fmt.Errorf("invalid key size %d for key type %s", k.Size, k.Type)
		}
	case "EC", "EC-HSM":
		if curve(k.Curve) == nil {
			return fmt.Errorf("invalid curve name %q", k.Curve)
		}
	default:
		return fmt.Errorf("invalid key type %q", k.Type)
	}
	return nil
}

// CurveBits returns the field size of a named curve (0 when unknown).
func CurveBits(name string) int {
	if c := curve(name); c != nil {
		return c.Params().BitSize
	}
	return 0
}

func curve(name string) elliptic.Curve {
	switch strings.ToUpper(name) {
	case "P-256":
		return elliptic.P256()
	case "P-384":
		return elliptic.P384()
	case "P-521":
		return elliptic.P521()
	}
	return nil
}

// NewKey generates a fresh private key for spec (after Normalize).
func NewKey(spec KeySpec) (crypto.Signer, error) {
	spec = spec.Normalize()
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if spec.IsEC() {
		return ecdsa.GenerateKey(curve(spec.Curve), rand.Reader)
	}
	return rsa.GenerateKey(rand.Reader, spec.Size)
}

// SpecOf describes an existing key.
func SpecOf(key crypto.PublicKey) KeySpec {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return KeySpec{Type: "RSA", Size: k.N.BitLen()}
	case *ecdsa.PublicKey:
		return KeySpec{Type: "EC", Curve: k.Curve.Params().Name, Size: k.Curve.Params().BitSize}
	}
	return KeySpec{Type: "unknown"}
}

// PublicKeysEqual reports whether two public keys are the same key.
func PublicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if e, ok := a.(equaler); ok {
		return e.Equal(b)
	}
	return false
}

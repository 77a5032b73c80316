package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// The sentinels classify every error this package returns; test them with
// errors.Is. The controller maps ErrNoPrivateKey to the KeyNotExportable
// reason and the other three to InvalidCertificate.
var (
	// ErrNoPrivateKey means the material holds certificates but no private key,
	// which is what Key Vault serves for a certificate whose key is not exportable.
	ErrNoPrivateKey = errors.New("missing private key")
	// ErrKeyMismatch means a private key is present but does not belong to the
	// certificate that has to be the leaf.
	ErrKeyMismatch = errors.New("private key does not match the certificate")
	// ErrChainBroken means a certificate is not on the leaf's issuer path, a
	// signature does not verify, or the chain is too long or ambiguous.
	ErrChainBroken = errors.New("certificate chain is broken")
	// ErrMalformed means the input could not be read at all: bad base64, bad
	// PFX, bad PEM, an unsupported key type or curve, or no certificate. It
	// also covers a PFX refused by CheckPKCS12Cost as too costly to decode.
	ErrMalformed = errors.New("malformed certificate material")
)

// errorf formats a message and wraps kind (and any error arguments given with
// %w) so callers can classify it. Arguments must never be key material or
// input text: only descriptions made by describe, counts, types and library
// errors that do not echo their input.
func errorf(kind error, format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, kind)...)
}

// describe names a certificate for humans: subject and serial are what a
// platform engineer can look up in Key Vault or in their CA.
func describe(c *x509.Certificate) string {
	if c == nil {
		return "<nil certificate>"
	}
	subject := c.Subject.String()
	if subject == "" {
		subject = "<empty subject>"
	}
	serial := "<none>"
	if c.SerialNumber != nil {
		serial = strings.ToUpper(c.SerialNumber.Text(16))
	}
	return fmt.Sprintf("%q (serial %s)", subject, serial)
}

// describeAll lists certificates for a message.
func describeAll(certs []*x509.Certificate) string {
	names := make([]string, len(certs))
	for i, c := range certs {
		names[i] = describe(c)
	}
	return strings.Join(names, ", ")
}

// issuerName is the issuer DN of c as text, for "X is missing" hints.
func issuerName(c *x509.Certificate) string {
	if s := c.Issuer.String(); s != "" {
		return fmt.Sprintf("%q", s)
	}
	return "<empty issuer>"
}

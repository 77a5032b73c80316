package pki

import (
	"crypto/sha1"
	"crypto/x509"
	"encoding/hex"
	"strings"
)

// Thumbprint returns the SHA-1 of cert's DER as upper-case hex without
// separators: the form of status.thumbprint, and Key Vault's x5t decoded.
// SHA-1 here is an identifier, not a security check.
func Thumbprint(cert *x509.Certificate) string {
	if cert == nil {
		return ""
	}
	return ThumbprintDER(cert.Raw)
}

// ThumbprintDER is Thumbprint of a DER certificate that need not be parsed.
func ThumbprintDER(der []byte) string {
	sum := sha1.Sum(der)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

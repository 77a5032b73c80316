package pki

import (
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"software.sslmate.com/src/go-pkcs12"
)

// Content types of Key Vault certificate-backed secrets.
const (
	// ContentTypePKCS12 marks a value that is standard base64 of a PFX with an empty password.
	ContentTypePKCS12 = "application/x-pkcs12"
	// ContentTypePEM marks a value that is PEM text with the key and the certificates.
	ContentTypePEM = "application/x-pem-file"
)

// maxValueBytes bounds the input; Key Vault secret values are at most 25 KiB.
const maxValueBytes = 1 << 20

// Decode parses a Key Vault certificate-backed secret value.
//
// contentType ContentTypePKCS12: value is standard base64 of a PFX with an
// empty password. ContentTypePEM: value is PEM text whose blocks may come in
// any order; keys may be "PRIVATE KEY" (PKCS#8), "RSA PRIVATE KEY" (PKCS#1) or
// "EC PRIVATE KEY" (SEC 1); "EC PARAMETERS" blocks are ignored. An empty
// contentType is read as PEM when the value holds PEM armour, else as PKCS#12.
//
// The leaf is the certificate whose public key matches the private key; the
// other certificates are ordered by issuer links whatever order they arrive
// in (issuer DN equal to subject DN, and AuthorityKeyId equal to SubjectKeyId
// when both are present), each link's signature checked with
// CheckSignatureFrom. A self-signed top becomes Root; a self-signed leaf is
// its own root and leaves Root nil. A certificate off the leaf's issuer path
// fails with ErrChainBroken; exact duplicates are dropped.
//
// Errors wrap ErrNoPrivateKey, ErrKeyMismatch, ErrChainBroken or ErrMalformed.
func Decode(contentType, value string) (*Bundle, error) {
	if len(value) > maxValueBytes {
		return nil, errorf(ErrMalformed, "the value is %d bytes; at most %d are supported", len(value), maxValueBytes)
	}
	if strings.TrimSpace(value) == "" {
		return nil, errorf(ErrMalformed, "the value is empty")
	}
	switch ct := normalizeContentType(contentType); ct {
	case ContentTypePKCS12:
		return decodePFX(value)
	case ContentTypePEM:
		return decodePEM(value)
	case "":
		if strings.Contains(value, pemBegin) {
			return decodePEM(value)
		}
		return decodePFX(value)
	default:
		return nil, errorf(ErrMalformed, "unsupported content type %.64q (want %q or %q)", ct, ContentTypePKCS12, ContentTypePEM)
	}
}

// normalizeContentType drops parameters and case: "Application/X-PKCS12; x=y"
// is still PKCS#12.
func normalizeContentType(ct string) string {
	ct, _, _ = strings.Cut(ct, ";")
	return strings.ToLower(strings.TrimSpace(ct))
}

// decodePFX reads base64 of a PFX protected by the empty password.
func decodePFX(value string) (*Bundle, error) {
	der, err := decodeBase64(value)
	if err != nil {
		// CorruptInputError carries an offset, not the data.
		return nil, errorf(ErrMalformed, "the PKCS#12 value is not valid base64: %v", err)
	}
	// go-pkcs12 derives keys with whatever iteration count the file names;
	// bound them first so one value cannot stall a worker.
	if err := CheckPKCS12Cost(der); err != nil {
		return nil, fmt.Errorf("the value was refused before decoding: %w", err)
	}
	key, first, rest, err := pkcs12.DecodeChain(der, "")
	if err != nil {
		return nil, classifyPFXError(err)
	}
	signer, err := supportedKey(key)
	if err != nil {
		return nil, err
	}
	return assemble(signer, append([]*x509.Certificate{first}, rest...))
}

// DecodeClientPFX reads a password-less PKCS#12 client certificate (a connection's clientCertificateRef): the
// certificates, leaf first as the file lists them, and the private key. It runs the same bounded decoder as Key
// Vault values (CheckPKCS12Cost, then go-pkcs12 whose key derivations refuse absurd iteration counts), so a
// tenant's file cannot stall the controller. The chain is not judged: Entra ID does that.
func DecodeClientPFX(der []byte) ([]*x509.Certificate, crypto.PrivateKey, error) {
	if err := CheckPKCS12Cost(der); err != nil {
		return nil, nil, fmt.Errorf("the client certificate was refused before decoding: %w", err)
	}
	key, first, rest, err := pkcs12.DecodeChain(der, "")
	if err != nil {
		return nil, nil, classifyPFXError(err)
	}
	return append([]*x509.Certificate{first}, rest...), key, nil
}

// pfxNoKey is go-pkcs12's message for a PFX with certificates but no key bag;
// it has no sentinel, and the version is pinned in go.mod (a test guards it).
const pfxNoKey = "pkcs12: private key missing"

// classifyPFXError maps go-pkcs12 errors to sentinels with advice.
func classifyPFXError(err error) error {
	switch {
	case err.Error() == pfxNoKey:
		return errorf(ErrNoPrivateKey, "the PKCS#12 value holds certificates but no private key (Key Vault leaves the key out when the certificate policy marks it non-exportable)")
	case errors.Is(err, pkcs12.ErrIncorrectPassword):
		return errorf(ErrMalformed, "the PKCS#12 value is protected by a password; Key Vault certificate secrets use an empty one: %w", err)
	default:
		return errorf(ErrMalformed, "the value is not a readable PKCS#12 (PFX) file: %w", err)
	}
}

// decodeBase64 accepts standard base64 with or without padding and ignores
// line breaks and spaces, which some tools insert.
func decodeBase64(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, s)
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}

package pki

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
)

const (
	pemBegin       = "-----BEGIN "
	pemCertificate = "CERTIFICATE"
	pemECParams    = "EC PARAMETERS"
)

// pemAllow says which block kinds a PEM source may hold.
type pemAllow int

const (
	allowCerts pemAllow = 1 << iota
	allowKeys
)

// pemContents is what a PEM source held, in input order.
type pemContents struct {
	certs []*x509.Certificate
	keys  []crypto.Signer
}

// parsePEM reads every PEM block in data by its type, never by its position.
// src names the source in messages ("the PEM value", "tls.crt").
func parsePEM(data []byte, src string, allow pemAllow) (pemContents, error) {
	var out pemContents
	n := 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		n++
		if err := out.add(block, n, src, allow); err != nil {
			return pemContents{}, err
		}
	}
	// pem.Decode silently skips armour it cannot read; a truncated key or
	// certificate must not vanish unnoticed.
	if begun := bytes.Count(data, []byte(pemBegin)); begun != n {
		return pemContents{}, errorf(ErrMalformed, "%s has %d PEM BEGIN line(s) but only %d readable block(s); a block is truncated or corrupted", src, begun, n)
	}
	if n == 0 {
		return pemContents{}, errorf(ErrMalformed, "%s holds no PEM block", src)
	}
	return out, nil
}

// add parses one block into c. n is the block's 1-based position, for messages.
func (c *pemContents) add(block *pem.Block, n int, src string, allow pemAllow) error {
	switch block.Type {
	case pemCertificate:
		if allow&allowCerts == 0 {
			return errorf(ErrMalformed, "%s: block #%d is a certificate; it must hold only a private key", src, n)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return errorf(ErrMalformed, "%s: block #%d (CERTIFICATE) is not a valid certificate: %w", src, n, err)
		}
		c.certs = append(c.certs, cert)
	case pemPKCS8, pemPKCS1, pemSEC1:
		if allow&allowKeys == 0 {
			return errorf(ErrMalformed, "%s: block #%d is a private key (%s); it must hold only certificates", src, n, block.Type)
		}
		// Legacy OpenSSL encryption is announced in headers, not the type.
		if strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") {
			return errorf(ErrMalformed, "%s: block #%d (%s) is encrypted; only unencrypted keys are supported", src, n, block.Type)
		}
		key, err := parseKeyBlock(block.Type, block.Bytes)
		if err != nil {
			return fmt.Errorf("%s: block #%d: %w", src, n, err) // already classified
		}
		c.keys = append(c.keys, key)
	case pemECParams:
		// OpenSSL writes the curve ahead of SEC 1 keys; the key names it too.
	case "ENCRYPTED PRIVATE KEY":
		return errorf(ErrMalformed, "%s: block #%d is an encrypted PKCS#8 key; only unencrypted keys are supported", src, n)
	default:
		return errorf(ErrMalformed, "%s: block #%d has unsupported type %.40q", src, n, block.Type)
	}
	return nil
}

// decodePEM reads a Key Vault PEM value: one private key and its certificates.
func decodePEM(value string) (*Bundle, error) {
	const src = "the PEM value"
	c, err := parsePEM([]byte(value), src, allowCerts|allowKeys)
	if err != nil {
		return nil, err
	}
	key, err := c.onlyKey(src)
	if err != nil {
		return nil, err
	}
	return assemble(key, c.certs)
}

// onlyKey checks that c holds certificates and exactly one key, and returns it.
func (c *pemContents) onlyKey(src string) (crypto.Signer, error) {
	switch {
	case len(c.certs) == 0:
		return nil, errorf(ErrMalformed, "%s holds no certificate", src)
	case len(c.keys) == 0:
		return nil, errorf(ErrNoPrivateKey, "%s holds %d certificate(s) (%s) but no private key (Key Vault leaves the key out when the certificate policy marks it non-exportable)",
			src, len(c.certs), describeAll(c.certs))
	case len(c.keys) > 1:
		return nil, errorf(ErrMalformed, "%s holds %d private keys; expected exactly one", src, len(c.keys))
	}
	return c.keys[0], nil
}

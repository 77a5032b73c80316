package pki

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"fmt"
)

// maxChainLength bounds the distinct certificates in one bundle (leaf
// included). Real chains have 2 to 4; the bound keeps hostile input cheap.
const maxChainLength = 10

// assemble finds the leaf for key among certs, orders the rest by issuer
// links, and rejects anything that is not on the leaf's issuer path. Input
// order does not matter; exact duplicates are dropped.
func assemble(key crypto.Signer, certs []*x509.Certificate) (*Bundle, error) {
	certs = dedupe(certs)
	if len(certs) == 0 {
		return nil, errorf(ErrMalformed, "no certificate")
	}
	if len(certs) > maxChainLength {
		return nil, errorf(ErrChainBroken, "the bundle holds %d distinct certificates; at most %d are supported", len(certs), maxChainLength)
	}
	leaf, err := findLeaf(key, certs)
	if err != nil {
		return nil, err
	}
	rest := without(certs, leaf)

	b := &Bundle{Leaf: leaf, Key: key}
	for cur := leaf; ; {
		if isSelfIssued(cur) {
			if err := checkSelfSigned(cur); err != nil {
				return nil, err
			}
			if cur != leaf {
				b.Root = cur
			}
			break
		}
		parent, err := findIssuer(cur, rest)
		if err != nil {
			return nil, err
		}
		if parent == nil {
			break // the source stopped below the root: allowed
		}
		rest = without(rest, parent)
		if !isSelfIssued(parent) {
			b.Intermediates = append(b.Intermediates, parent)
		}
		cur = parent
	}

	if len(rest) > 0 {
		top := b.top()
		hint := ""
		if b.Root == nil && !isSelfIssued(top) {
			hint = fmt.Sprintf("; the chain stops at %s, whose issuer %s is not in the bundle", describe(top), issuerName(top))
		}
		return nil, errorf(ErrChainBroken, "%d certificate(s) are not on the issuer path of the leaf %s: %s%s",
			len(rest), describe(leaf), describeAll(rest), hint)
	}
	return b, nil
}

// findLeaf returns the one certificate whose public key is key's.
func findLeaf(key crypto.Signer, certs []*x509.Certificate) (*x509.Certificate, error) {
	var matches []*x509.Certificate
	for _, c := range certs {
		if KeyMatches(c, key) {
			matches = append(matches, c)
		}
	}
	switch len(matches) {
	case 1:
		return matches[0], nil
	case 0:
		return nil, errorf(ErrKeyMismatch, "the %s private key matches none of the %d certificate(s): %s",
			describeKey(key), len(certs), describeAll(certs))
	default:
		return nil, errorf(ErrChainBroken, "the private key matches %d certificates (%s); cannot tell which one is the leaf",
			len(matches), describeAll(matches))
	}
}

// findIssuer returns the certificate in candidates that issued child, nil if
// none claims to, or an error if some claim to but no signature verifies.
//
// When several verify (the same CA key certified twice, e.g. self-signed and
// cross-signed), a non-self-issued one is preferred: it keeps the chain
// growing, and the self-signed twin can still be reached as the root above it.
func findIssuer(child *x509.Certificate, candidates []*x509.Certificate) (*x509.Certificate, error) {
	var (
		selfIssued *x509.Certificate
		claimed    error
	)
	for _, p := range candidates {
		if !namesIssuer(child, p) {
			continue
		}
		if err := checkIssued(child, p); err != nil {
			if claimed == nil {
				claimed = err
			}
			continue
		}
		if !isSelfIssued(p) {
			return p, nil
		}
		if selfIssued == nil {
			selfIssued = p
		}
	}
	if selfIssued != nil {
		return selfIssued, nil
	}
	return nil, claimed
}

// namesIssuer reports whether child points at p as its issuer: the issuer
// DN must equal p's subject DN byte for byte (as Go's own verifier requires),
// and the key identifiers must agree when both carry one, which tells apart
// a CA's successive keys under one name.
func namesIssuer(child, p *x509.Certificate) bool {
	return bytes.Equal(child.RawIssuer, p.RawSubject) && keyIDsAgree(child.AuthorityKeyId, p.SubjectKeyId)
}

// keyIDsAgree is false only when both identifiers are present and differ.
func keyIDsAgree(authorityKeyID, subjectKeyID []byte) bool {
	return len(authorityKeyID) == 0 || len(subjectKeyID) == 0 || bytes.Equal(authorityKeyID, subjectKeyID)
}

// checkIssued verifies that child names parent as its issuer and that
// parent's key signed it. CheckSignatureFrom checks only the key (and that
// parent is a CA), so the name link is checked here.
func checkIssued(child, parent *x509.Certificate) error {
	if !namesIssuer(child, parent) {
		return errorf(ErrChainBroken, "%s names issuer %s, not %s", describe(child), issuerName(child), describe(parent))
	}
	if err := child.CheckSignatureFrom(parent); err != nil {
		return errorf(ErrChainBroken, "the signature on %s does not verify with the key of %s, which it names as issuer: %v",
			describe(child), describe(parent), err)
	}
	return nil
}

// isSelfIssued reports whether c names itself as issuer (a root, or a
// self-signed leaf).
func isSelfIssued(c *x509.Certificate) bool {
	return namesIssuer(c, c)
}

// checkSelfSigned verifies a self-issued certificate's signature with its own
// key. CheckSignature, unlike CheckSignatureFrom, does not require a CA (a
// self-signed leaf is not one) and still accepts SHA-1, which old roots use.
func checkSelfSigned(c *x509.Certificate) error {
	if err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
		return errorf(ErrChainBroken, "the self-signed certificate %s has a signature that does not verify with its own key: %v",
			describe(c), err)
	}
	return nil
}

// dedupe drops exact copies, keeping first occurrences in order.
func dedupe(certs []*x509.Certificate) []*x509.Certificate {
	seen := make(map[string]bool, len(certs))
	out := make([]*x509.Certificate, 0, len(certs))
	for _, c := range certs {
		if c == nil || seen[string(c.Raw)] {
			continue
		}
		seen[string(c.Raw)] = true
		out = append(out, c)
	}
	return out
}

// without returns certs minus c, as a new slice.
func without(certs []*x509.Certificate, c *x509.Certificate) []*x509.Certificate {
	out := make([]*x509.Certificate, 0, len(certs))
	for _, x := range certs {
		if x != c {
			out = append(out, x)
		}
	}
	return out
}

package pki

import "time"

// Verify re-checks a bundle before it is written: the key is supported and
// matches the leaf, every intermediate issued the certificate below it, the
// root (if any) is self-signed and issued the last intermediate, and a
// self-signed leaf stands alone.
//
// Validity dates are not judged: an expired or not-yet-valid certificate is
// still well-formed material, and the controller reports expiry separately.
// now is accepted so callers need not change if a time-dependent check is
// ever added; today it is unused.
func (b *Bundle) Verify(now time.Time) error {
	if b == nil || b.Leaf == nil {
		return errorf(ErrMalformed, "the bundle has no leaf certificate")
	}
	if b.Key == nil {
		return errorf(ErrNoPrivateKey, "the bundle for %s has no private key", describe(b.Leaf))
	}
	if _, err := supportedKey(b.Key); err != nil {
		return err
	}
	if !KeyMatches(b.Leaf, b.Key) {
		return errorf(ErrKeyMismatch, "the %s private key does not match the leaf %s", describeKey(b.Key), describe(b.Leaf))
	}
	if n := len(b.Chain()); n > maxChainLength {
		return errorf(ErrChainBroken, "the chain holds %d certificates; at most %d are supported", n, maxChainLength)
	}

	if isSelfIssued(b.Leaf) {
		if len(b.Intermediates) > 0 || b.Root != nil {
			return errorf(ErrChainBroken, "the leaf %s is self-signed but the bundle also holds issuers", describe(b.Leaf))
		}
		return checkSelfSigned(b.Leaf)
	}

	child := b.Leaf
	for i, ic := range b.Intermediates {
		if ic == nil {
			return errorf(ErrMalformed, "intermediate #%d is nil", i)
		}
		if isSelfIssued(ic) {
			return errorf(ErrChainBroken, "intermediate #%d %s is self-signed; only the root may be", i, describe(ic))
		}
		if err := checkIssued(child, ic); err != nil {
			return err
		}
		child = ic
	}
	if b.Root != nil {
		if !isSelfIssued(b.Root) {
			return errorf(ErrChainBroken, "the root %s is not self-signed", describe(b.Root))
		}
		if err := checkSelfSigned(b.Root); err != nil {
			return err
		}
		if err := checkIssued(child, b.Root); err != nil {
			return err
		}
	}
	return nil
}

package decide

import (
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/keyvault"
)

const (
	// MaxIssuanceBackoff caps the wait between retries of a failed issuance.
	MaxIssuanceBackoff = 30 * time.Minute
	// MaxRenewalGrace is how long after the renewal time vaultcert waits for Key Vault's own AutoRenew before it
	// calls the renewal overdue.
	MaxRenewalGrace = 24 * time.Hour
)

// BackoffDelay is base * 2^(failures-1), capped.
func BackoffDelay(base time.Duration, failures int) time.Duration {
	d := base
	for i := 1; i < failures && d < MaxIssuanceBackoff; i++ {
		d *= 2
	}
	return min(d, MaxIssuanceBackoff)
}

// FailedOperation folds a failed certificate operation into the issuance status: a request ID not seen before
// counts one more failure and moves the retry time by the backoff; the same one seen again changes nothing.
// isNew reports a failure not seen before (one event per failure). The status lives in the object, so a
// restarted controller keeps the count and the retry time.
func FailedOperation(st *vaultcertv1.IssuanceStatus, requestID string, now time.Time, base time.Duration) (next vaultcertv1.IssuanceStatus, isNew bool) {
	if st != nil {
		next = *st
	}
	if st != nil && st.FailedOperation == requestID && st.RetryAt != nil {
		return next, false
	}
	next.FailedOperation = requestID
	next.Failures++
	next.RetryAt = &metav1.Time{Time: now.Add(BackoffDelay(base, int(next.Failures))).Truncate(time.Second)}
	return next, true
}

// IssuanceLimited reports whether vc reached the daily limit of new versions at its current generation: then
// vaultcert requests none by itself until the spec or the renew annotation changes.
func IssuanceLimited(vc *vaultcertv1.VaultCertificate) bool {
	st := vc.Status.Issuance
	return st != nil && st.LimitedAtGeneration != 0 && st.LimitedAtGeneration == vc.Generation
}

// IssuancePolicy maps spec.issuance to the Key Vault policy, with the CRD's defaults applied (an object
// created before a default existed may lack it). Exportable is always true: vaultcert must read the key.
func IssuancePolicy(is *vaultcertv1.Issuance) keyvault.Policy {
	p := keyvault.Policy{
		IssuerName:        is.IssuerName,
		Subject:           is.Subject,
		DNSNames:          is.DNSNames,
		IPAddresses:       is.IPAddresses,
		Emails:            is.Emails,
		KeyType:           string(is.KeyType),
		KeySize:           is.KeySize,
		Curve:             is.Curve,
		ReuseKey:          is.ReuseKey,
		Exportable:        true,
		ValidityMonths:    is.ValidityMonths,
		ContentType:       keyvault.ContentTypePKCS12,
		ExtendedKeyUsages: is.ExtendedKeyUsages,
		KeyUsages:         is.KeyUsages,
	}
	if p.IssuerName == "" {
		p.IssuerName = keyvault.IssuerSelf
	}
	if p.KeyType == "" {
		p.KeyType = "RSA"
	}
	if p.ValidityMonths == 0 {
		p.ValidityMonths = 12
	}
	if is.ContentType == "PEM" {
		p.ContentType = keyvault.ContentTypePEM
	}
	if r := is.Renewal; r != nil {
		t := keyvault.LifetimeTrigger{}
		if r.DaysBeforeExpiry != nil {
			t.DaysBeforeExpiry = *r.DaysBeforeExpiry
		} else if r.LifetimePercentage != nil {
			t.LifetimePercentage = *r.LifetimePercentage
		}
		if !t.IsZero() {
			p.AutoRenew = &t
		}
	}
	return p
}

// PolicyDiff compares the wanted policy with Key Vault's. It returns the spec fields that differ, and whether
// any of them shapes the certificate itself (issuer, subject, SANs, key type, size or curve, exportability), so
// that a new version is needed. Fields the spec leaves to Key Vault's defaults are not compared.
func PolicyDiff(want keyvault.Policy, have *keyvault.Policy) (changed []string, reissue bool) {
	if have == nil {
		return nil, false
	}
	shape := func(field string, differs bool) {
		if differs {
			changed, reissue = append(changed, field), true
		}
	}
	soft := func(field string, differs bool) {
		if differs {
			changed = append(changed, field)
		}
	}
	shape("issuerName", !strings.EqualFold(want.IssuerName, have.IssuerName))
	shape("subject", normalizeDN(want.Subject) != normalizeDN(have.Subject))
	shape("dnsNames", !sameSet(want.DNSNames, have.DNSNames, true))
	shape("ipAddresses", !sameSet(want.IPAddresses, have.IPAddresses, false))
	shape("emails", !sameSet(want.Emails, have.Emails, true))
	shape("keyType", !strings.EqualFold(want.KeyType, have.KeyType))
	shape("keySize", want.KeySize != 0 && want.KeySize != have.KeySize)
	shape("curve", want.Curve != "" && !strings.EqualFold(want.Curve, have.Curve))
	shape("exportable", !have.Exportable)
	soft("reuseKey", want.ReuseKey != have.ReuseKey)
	soft("validityMonths", want.ValidityMonths != 0 && want.ValidityMonths != have.ValidityMonths)
	soft("contentType", want.ContentType != "" && !strings.EqualFold(want.ContentType, have.ContentType))
	soft("extendedKeyUsages", len(want.ExtendedKeyUsages) > 0 && !sameSet(want.ExtendedKeyUsages, have.ExtendedKeyUsages, false))
	soft("keyUsages", len(want.KeyUsages) > 0 && !sameSet(want.KeyUsages, have.KeyUsages, true))
	soft("renewal", want.AutoRenew != nil && (have.AutoRenew == nil || *want.AutoRenew != *have.AutoRenew))
	return changed, reissue
}

// normalizeDN makes "CN=a, O=b" and "cn=a,O=b" compare equal: attribute names upper-cased, spaces around
// separators dropped, order kept.
func normalizeDN(dn string) string {
	parts := strings.Split(dn, ",")
	for i, p := range parts {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok {
			parts[i] = strings.ToUpper(strings.TrimSpace(k)) + "=" + strings.TrimSpace(v)
		} else {
			parts[i] = strings.TrimSpace(p)
		}
	}
	return strings.Join(parts, ",")
}

// sameSet compares two lists as sets, optionally case-insensitively.
func sameSet(a, b []string, fold bool) bool {
	norm := func(in []string) []string {
		out := make([]string, 0, len(in))
		for _, s := range in {
			if fold {
				s = strings.ToLower(s)
			}
			out = append(out, s)
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(norm(a), norm(b))
}

// IssuerCanRenew reports whether vaultcert can ask Key Vault for a new version without a human: Self and
// named issuers can, Unknown needs a CSR signed and merged.
func IssuerCanRenew(issuerName string) bool {
	return !strings.EqualFold(issuerName, keyvault.IssuerUnknown)
}

// RenewalOverdue reports whether the certificate is past its renewal time by more than the grace Key Vault's
// own AutoRenew is given (a day, or half the time left between renewal and expiry when that is shorter).
//
// A certificate whose validity is empty or inverted is never overdue (a new version would be judged the same
// way, so asking for one could loop). A trigger that fires at issuance (days before expiry beyond the lifetime)
// says nothing about when a version is due: two thirds of the lifetime are used instead.
func RenewalOverdue(now time.Time, cert *keyvault.Certificate) (time.Time, bool) {
	if cert == nil || cert.NotBefore.IsZero() || cert.Expires.IsZero() || !cert.Expires.After(cert.NotBefore) {
		return time.Time{}, false
	}
	renewal := CertificateRenewalTime(cert, cert.NotBefore, cert.Expires)
	if !renewal.After(cert.NotBefore) {
		renewal = RenewalTime(cert.NotBefore, cert.Expires, 0, 0)
	}
	grace := min(MaxRenewalGrace, cert.Expires.Sub(renewal)/2)
	return renewal, now.After(renewal.Add(grace))
}

// CertificateRenewalTime is RenewalTime fed with the policy's AutoRenew trigger, when there is one.
func CertificateRenewalTime(cert *keyvault.Certificate, notBefore, notAfter time.Time) time.Time {
	var pct, days int32
	if cert != nil && cert.Policy != nil && cert.Policy.AutoRenew != nil {
		pct, days = cert.Policy.AutoRenew.LifetimePercentage, cert.Policy.AutoRenew.DaysBeforeExpiry
	}
	return RenewalTime(notBefore, notAfter, pct, days)
}

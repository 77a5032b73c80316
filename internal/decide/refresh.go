package decide

import (
	"math/rand/v2"
	"time"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
)

const (
	// DefaultRefreshInterval applies when spec.refreshInterval is unset (the CRD defaults it too).
	DefaultRefreshInterval = time.Hour
	// MinRefreshInterval guards against a spec that bypassed validation.
	MinRefreshInterval = time.Minute
	// RefreshJitter spreads refreshes of many certificates over up to this share of the interval, so that
	// certificates created together do not hit Key Vault together forever after.
	RefreshJitter = 0.1
)

// RefreshInterval is the spec's interval, defaulted and floored.
func RefreshInterval(vc *vaultcertv1.VaultCertificate) time.Duration {
	d := DefaultRefreshInterval
	if vc.Spec.RefreshInterval != nil {
		d = vc.Spec.RefreshInterval.Duration
	}
	return max(d, MinRefreshInterval)
}

// Jitter adds up to frac of d, never subtracts: a refresh may come late, never early.
func Jitter(d time.Duration, frac float64) time.Duration {
	if d <= 0 {
		return 0
	}
	return d + time.Duration(rand.Float64()*frac*float64(d))
}

// RenewalTime is when the certificate is expected to be renewed: two thirds into its lifetime (cert-manager's
// default), unless Key Vault's lifetime action says otherwise. The result always lies within
// [notBefore, notAfter] (notAfter when the validity is empty or inverted), and nothing overflows: a lifetime
// in nanoseconds times a percentage exceeds int64 from about 44 months at 80 %, and Key Vault accepts
// validities up to 1200 months.
func RenewalTime(notBefore, notAfter time.Time, lifetimePercentage, daysBeforeExpiry int32) time.Time {
	if !notAfter.After(notBefore) {
		return notAfter
	}
	lifetime := notAfter.Sub(notBefore) // saturates rather than wraps for absurd dates
	var at time.Time
	switch {
	case daysBeforeExpiry > 0:
		if int64(daysBeforeExpiry) > int64(lifetime/(24*time.Hour)) {
			return notBefore // more days than the lifetime: due from the start
		}
		at = notAfter.Add(-time.Duration(daysBeforeExpiry) * 24 * time.Hour)
	case lifetimePercentage > 0:
		at = notBefore.Add(share(lifetime, int64(min(lifetimePercentage, 100)), 100))
	default:
		at = notBefore.Add(share(lifetime, 2, 3))
	}
	if at.Before(notBefore) {
		return notBefore
	}
	if at.After(notAfter) {
		return notAfter
	}
	return at
}

// share is d*num/den rounded down, for 0 <= num <= den, without the overflow of d*num.
func share(d time.Duration, num, den int64) time.Duration {
	n, q := time.Duration(num), time.Duration(den)
	return d/q*n + d%q*n/q
}

// NextCheck is when Key Vault should next be asked: the refresh interval, or the renewal time when that comes
// sooner (a renewed version should reach the Secret promptly). A renewal time already past does not shorten
// the interval, or a certificate Key Vault does not renew would be polled in a hot loop.
func NextCheck(now time.Time, interval time.Duration, renewal time.Time) time.Duration {
	next := interval
	if until := renewal.Sub(now); until > 0 && until < next {
		next = until
	}
	return next
}

// MinFixRetry is the first retry of a failure that needs a human fix.
const MinFixRetry = 5 * time.Second

// RetryDelay is how long to wait before retrying a failure that needs a human fix elsewhere (not found, access
// denied, disabled...), given how long it has lasted: about as long again, from MinFixRetry up to terminal. A fix
// made a minute into a failure is picked up within about a minute; a failure lasting hours costs one call per
// terminal delay. failingFor comes from the Ready condition's lastTransitionTime, so a restart or another
// replica computes the same delay.
func RetryDelay(failingFor, terminal time.Duration) time.Duration {
	return max(min(max(failingFor, MinFixRetry), terminal), 0)
}

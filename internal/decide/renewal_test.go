package decide

import (
	"math/big"
	"testing"
	"time"

	"github.com/vaultcert/vaultcert/internal/keyvault"
)

// exactShare is notBefore + lifetime*pct/100 (rounded down) computed without any overflow.
func exactShare(notBefore time.Time, lifetime time.Duration, pct int64) time.Time {
	v := new(big.Int).Mul(big.NewInt(int64(lifetime)), big.NewInt(pct))
	v.Quo(v, big.NewInt(100))
	return notBefore.Add(time.Duration(v.Int64()))
}

// TestRenewalTimeLongValidities: Key Vault accepts validity_months up to 1200 and lifetime percentages 1..99.
// Every combination must give the exact share of the lifetime, inside the validity; before the fix the
// product overflowed from about 44 months at 80 %, and the renewal time landed before notBefore, so every
// new version looked overdue.
func TestRenewalTimeLongValidities(t *testing.T) {
	nb := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, months := range []int{1, 12, 24, 43, 44, 45, 48, 60, 87, 88, 120, 240, 600, 1199, 1200} {
		na := nb.AddDate(0, months, 0)
		life := na.Sub(nb)
		for pct := int32(1); pct <= 99; pct++ {
			got := RenewalTime(nb, na, pct, 0)
			if want := exactShare(nb, life, int64(pct)); !got.Equal(want) {
				t.Fatalf("%d months at %d %%: renewal %v, want %v", months, pct, got, want)
			}
			if got.Before(nb) || got.After(na) {
				t.Fatalf("%d months at %d %%: renewal %v outside the validity %v..%v", months, pct, got, nb, na)
			}
			// A version fresh from Key Vault is never overdue, whatever its lifetime.
			cert := &keyvault.Certificate{NotBefore: nb, Expires: na,
				Policy: &keyvault.Policy{AutoRenew: &keyvault.LifetimeTrigger{LifetimePercentage: pct}}}
			if _, overdue := RenewalOverdue(nb.Add(time.Hour), cert); overdue {
				t.Fatalf("%d months at %d %%: a version issued an hour ago is overdue", months, pct)
			}
		}
		// The default (no lifetime action) is two thirds.
		if got, want := RenewalTime(nb, na, 0, 0), nb.Add(life/3*2+life%3*2/3); !got.Equal(want) {
			t.Errorf("%d months, default: %v, want %v", months, got, want)
		}
	}
}

func TestRenewalTimeEdges(t *testing.T) {
	nb := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	na := nb.Add(90 * 24 * time.Hour)
	tests := []struct {
		name      string
		nb, na    time.Time
		pct, days int32
		want      time.Time
	}{
		{"days before expiry", nb, na, 0, 30, na.Add(-30 * 24 * time.Hour)},
		{"days equal to the lifetime", nb, na, 0, 90, nb},
		{"days beyond the lifetime", nb, na, 0, 91, nb},
		{"days far beyond any duration", nb, na, 0, 2_000_000_000, nb},
		{"days on a 100-year certificate", nb, nb.AddDate(0, 1200, 0), 0, 36000, nb.AddDate(0, 1200, 0).Add(-36000 * 24 * time.Hour)},
		{"notBefore after notAfter", na, nb, 80, 0, nb},
		{"notBefore after notAfter, days", na, nb, 0, 10, nb},
		{"empty validity", nb, nb, 50, 0, nb},
		{"percentage above 100 stays inside", nb, na, 250, 0, na},
		{"dates beyond time.Duration", time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), 99, 0,
			exactShare(time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), time.Duration(1<<63-1), 99)},
	}
	for _, tt := range tests {
		got := RenewalTime(tt.nb, tt.na, tt.pct, tt.days)
		if !got.Equal(tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestRenewalOverdueNeverLoops(t *testing.T) {
	nb := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	na := nb.Add(90 * 24 * time.Hour)
	// Inverted validity: a new version would be judged the same way, so it is never overdue.
	if _, overdue := RenewalOverdue(nb.Add(365*24*time.Hour), &keyvault.Certificate{NotBefore: na, Expires: nb}); overdue {
		t.Error("a certificate with notBefore after notAfter must not be overdue")
	}
	// A trigger that fires at issuance (days beyond the lifetime) must not make a fresh version overdue.
	cert := &keyvault.Certificate{NotBefore: nb, Expires: na,
		Policy: &keyvault.Policy{AutoRenew: &keyvault.LifetimeTrigger{DaysBeforeExpiry: 400}}}
	if _, overdue := RenewalOverdue(nb.Add(2*24*time.Hour), cert); overdue {
		t.Error("days_before_expiry beyond the lifetime made a two-day-old version overdue")
	}
	if renewal, overdue := RenewalOverdue(nb.Add(80*24*time.Hour), cert); !overdue || !renewal.Equal(nb.Add(60*24*time.Hour)) {
		t.Errorf("past two thirds it is overdue (renewal %v, overdue %v)", renewal, overdue)
	}
}

package fakevault

import (
	"math/big"
	"testing"
	"time"
)

func autoRenewPolicy(pct, days *int) *wirePolicy {
	return &wirePolicy{LifetimeActions: []wireLifetimeAction{{
		Trigger: wireTrigger{LifetimePercentage: pct, DaysBeforeExpiry: days}, Action: wireAction{ActionType: "AutoRenew"}}}}
}

// TestRenewalTimeNeverOverflows: every validity the service accepts (1..1200 months) with every percentage
// (1..99) fires at the exact share of the lifetime, inside the validity. Before the fix the product
// overflowed from about 44 months at 80 %, and AutoRenew never fired (or fired years early).
func TestRenewalTimeNeverOverflows(t *testing.T) {
	nbf := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, months := range []int{1, 12, 44, 45, 48, 60, 88, 120, 600, 1200} {
		exp := nbf.AddDate(0, months, 0)
		life := exp.Sub(nbf)
		for pct := 1; pct <= 99; pct++ {
			got, ok := renewalTime(autoRenewPolicy(&pct, nil), nbf, exp)
			v := new(big.Int).Mul(big.NewInt(int64(life)), big.NewInt(int64(pct)))
			want := nbf.Add(time.Duration(v.Quo(v, big.NewInt(100)).Int64()))
			if !ok || !got.Equal(want) {
				t.Fatalf("%d months at %d %%: %v, want %v", months, pct, got, want)
			}
		}
	}
	exp := nbf.Add(30 * 24 * time.Hour)
	for _, tt := range []struct {
		name     string
		nbf, exp time.Time
		days     int
		want     time.Time
	}{
		{"days within the lifetime", nbf, exp, 10, exp.Add(-10 * 24 * time.Hour)},
		{"days beyond the lifetime", nbf, exp, 45, nbf},
		{"days beyond any duration", nbf, exp, 1 << 40, nbf},
		{"notBefore after notAfter", exp, nbf, 10, nbf},
	} {
		days := tt.days
		if got, _ := renewalTime(autoRenewPolicy(nil, &days), tt.nbf, tt.exp); !got.Equal(tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

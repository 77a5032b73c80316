package decide

import (
	"reflect"
	"testing"
	"time"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/keyvault"
)

func int32p(v int32) *int32 { return &v }

func TestIssuancePolicyMapsSpec(t *testing.T) {
	got := IssuancePolicy(&vaultcertv1.Issuance{
		DNSNames: []string{"a.example.com"}, ContentType: "PEM", KeyType: "EC", Curve: "P-256",
		Renewal: &vaultcertv1.Renewal{DaysBeforeExpiry: int32p(30)},
	})
	want := keyvault.Policy{
		IssuerName: "Self", DNSNames: []string{"a.example.com"}, KeyType: "EC", Curve: "P-256", Exportable: true,
		ValidityMonths: 12, ContentType: keyvault.ContentTypePEM, AutoRenew: &keyvault.LifetimeTrigger{DaysBeforeExpiry: 30},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("issuancePolicy:\n got %+v\nwant %+v", got, want)
	}
	if p := IssuancePolicy(&vaultcertv1.Issuance{Subject: "CN=x"}); p.ContentType != keyvault.ContentTypePKCS12 || p.KeyType != "RSA" || p.AutoRenew != nil {
		t.Errorf("defaults: %+v", p)
	}
}

func TestPolicyDiff(t *testing.T) {
	have := &keyvault.Policy{
		IssuerName: "Self", Subject: "CN=app.example.com, O=Example", DNSNames: []string{"b.example.com", "A.example.com"},
		KeyType: "RSA", KeySize: 2048, Exportable: true, ValidityMonths: 12, ContentType: keyvault.ContentTypePKCS12,
		ExtendedKeyUsages: []string{"1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"}, KeyUsages: []string{"digitalSignature", "keyEncipherment"},
		AutoRenew: &keyvault.LifetimeTrigger{LifetimePercentage: 80},
	}
	base := keyvault.Policy{
		IssuerName: "self", Subject: "cn=app.example.com,O=Example", DNSNames: []string{"a.example.com", "b.example.com"},
		KeyType: "RSA", Exportable: true, ValidityMonths: 12, ContentType: keyvault.ContentTypePKCS12,
	}
	tests := []struct {
		name        string
		edit        func(*keyvault.Policy)
		wantChanged []string
		wantReissue bool
	}{
		{"equal modulo case, order and defaults", func(*keyvault.Policy) {}, nil, false},
		{"validity only patches", func(p *keyvault.Policy) { p.ValidityMonths = 6 }, []string{"validityMonths"}, false},
		{"renewal only patches", func(p *keyvault.Policy) { p.AutoRenew = &keyvault.LifetimeTrigger{DaysBeforeExpiry: 10} }, []string{"renewal"}, false},
		{"EKUs only patch", func(p *keyvault.Policy) { p.ExtendedKeyUsages = []string{"1.3.6.1.5.5.7.3.1"} }, []string{"extendedKeyUsages"}, false},
		{"new SAN reissues", func(p *keyvault.Policy) { p.DNSNames = append(p.DNSNames, "c.example.com") }, []string{"dnsNames"}, true},
		{"subject reissues", func(p *keyvault.Policy) { p.Subject = "CN=other" }, []string{"subject"}, true},
		{"key size reissues", func(p *keyvault.Policy) { p.KeySize = 4096 }, []string{"keySize"}, true},
		{"key type reissues", func(p *keyvault.Policy) { p.KeyType, p.Curve = "EC", "P-256" }, []string{"keyType", "curve"}, true},
		{"issuer reissues", func(p *keyvault.Policy) { p.IssuerName = "DigiCert" }, []string{"issuerName"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := base
			want.DNSNames = append([]string(nil), base.DNSNames...)
			tt.edit(&want)
			changed, reissue := PolicyDiff(want, have)
			if !reflect.DeepEqual(changed, tt.wantChanged) || reissue != tt.wantReissue {
				t.Errorf("policyDiff = %v, %v; want %v, %v", changed, reissue, tt.wantChanged, tt.wantReissue)
			}
		})
	}
	notExportable := *have
	notExportable.Exportable = false
	if _, reissue := PolicyDiff(base, &notExportable); !reissue {
		t.Error("a non-exportable key needs a new version")
	}
}

func TestBackoffDelay(t *testing.T) {
	if got := BackoffDelay(10*time.Second, 1); got != 10*time.Second {
		t.Errorf("first delay %v", got)
	}
	if got := BackoffDelay(10*time.Second, 4); got != 80*time.Second {
		t.Errorf("fourth delay %v", got)
	}
	if got := BackoffDelay(10*time.Second, 50); got != MaxIssuanceBackoff {
		t.Errorf("capped delay %v", got)
	}
}

// TestFailedOperation: one failed operation counts once however often it is read, the next one doubles the
// backoff, and the count survives in the status (a restart keeps the pace).
func TestFailedOperation(t *testing.T) {
	now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	st, isNew := FailedOperation(nil, "op1", now, 10*time.Second)
	if !isNew || st.Failures != 1 || !st.RetryAt.Time.Equal(now.Add(10*time.Second)) {
		t.Fatalf("first failure: %+v new=%v", st, isNew)
	}
	again, isNew := FailedOperation(&st, "op1", now.Add(5*time.Second), 10*time.Second)
	if isNew || again.Failures != 1 || !again.RetryAt.Equal(st.RetryAt) {
		t.Errorf("the same operation read again must change nothing: %+v new=%v", again, isNew)
	}
	second, isNew := FailedOperation(&again, "op2", now.Add(time.Minute), 10*time.Second)
	if !isNew || second.Failures != 2 || !second.RetryAt.Time.Equal(now.Add(time.Minute+20*time.Second)) {
		t.Errorf("a second failure doubles the delay: %+v", second)
	}
	if st.Failures != 1 {
		t.Error("FailedOperation must not modify its input")
	}
}

func TestIssuanceLimited(t *testing.T) {
	vc := &vaultcertv1.VaultCertificate{}
	vc.Generation = 3
	if IssuanceLimited(vc) {
		t.Error("no issuance status: not limited")
	}
	vc.Status.Issuance = &vaultcertv1.IssuanceStatus{LimitedAtGeneration: 3}
	if !IssuanceLimited(vc) {
		t.Error("limited at the current generation")
	}
	vc.Generation = 4
	if IssuanceLimited(vc) {
		t.Error("a spec change (new generation) lifts the limit")
	}
}

func TestRenewalOverdue(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cert := &keyvault.Certificate{NotBefore: nb, Expires: nb.Add(300 * 24 * time.Hour),
		Policy: &keyvault.Policy{AutoRenew: &keyvault.LifetimeTrigger{LifetimePercentage: 80}}}
	renewal := nb.Add(240 * 24 * time.Hour)
	if got, overdue := RenewalOverdue(renewal.Add(time.Hour), cert); overdue || !got.Equal(renewal) {
		t.Errorf("an hour after the renewal time Key Vault still has its grace: %v %v", got, overdue)
	}
	if _, overdue := RenewalOverdue(renewal.Add(25*time.Hour), cert); !overdue {
		t.Error("a day past the renewal time with no new version is overdue")
	}
	if _, overdue := RenewalOverdue(nb.Add(time.Hour), &keyvault.Certificate{}); overdue {
		t.Error("a certificate without validity is never overdue")
	}
	if !IssuerCanRenew("Self") || !IssuerCanRenew("DigiCert") || IssuerCanRenew("unknown") {
		t.Error("issuerCanRenew")
	}
}

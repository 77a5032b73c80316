package controllers

import (
	"reflect"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/keyvault"
)

func int32p(v int32) *int32 { return &v }

func TestIssuancePolicyMapsSpec(t *testing.T) {
	got := issuancePolicy(&vaultcertv1.Issuance{
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
	if p := issuancePolicy(&vaultcertv1.Issuance{Subject: "CN=x"}); p.ContentType != keyvault.ContentTypePKCS12 || p.KeyType != "RSA" || p.AutoRenew != nil {
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
			changed, reissue := policyDiff(want, have)
			if !reflect.DeepEqual(changed, tt.wantChanged) || reissue != tt.wantReissue {
				t.Errorf("policyDiff = %v, %v; want %v, %v", changed, reissue, tt.wantChanged, tt.wantReissue)
			}
		})
	}
	notExportable := *have
	notExportable.Exportable = false
	if _, reissue := policyDiff(base, &notExportable); !reissue {
		t.Error("a non-exportable key needs a new version")
	}
}

func TestBackoffDelayAndTracker(t *testing.T) {
	if got := backoffDelay(10*time.Second, 1); got != 10*time.Second {
		t.Errorf("first delay %v", got)
	}
	if got := backoffDelay(10*time.Second, 4); got != 80*time.Second {
		t.Errorf("fourth delay %v", got)
	}
	if got := backoffDelay(10*time.Second, 50); got != maxIssuanceBackoff {
		t.Errorf("capped delay %v", got)
	}
	var b issuanceBackoff
	key := types.NamespacedName{Namespace: "ns", Name: "web"}
	now := time.Unix(1000, 0)
	at, isNew := b.observe(key, "op1", now, time.Second)
	if !isNew || !at.Equal(now.Add(time.Second)) {
		t.Fatalf("first failure: %v %v", at, isNew)
	}
	if _, isNew := b.observe(key, "op1", now.Add(time.Second), time.Second); isNew {
		t.Error("the same operation is one failure")
	}
	if at, _ := b.observe(key, "op2", now, time.Second); !at.Equal(now.Add(2 * time.Second)) {
		t.Errorf("second failure should double the delay: %v", at)
	}
	b.reset(key)
	if at, _ := b.observe(key, "op3", now, time.Second); !at.Equal(now.Add(time.Second)) {
		t.Errorf("after a success the delay starts over: %v", at)
	}
}

func TestRenewalOverdue(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cert := &keyvault.Certificate{NotBefore: nb, Expires: nb.Add(300 * 24 * time.Hour),
		Policy: &keyvault.Policy{AutoRenew: &keyvault.LifetimeTrigger{LifetimePercentage: 80}}}
	renewal := nb.Add(240 * 24 * time.Hour)
	if got, overdue := renewalOverdue(renewal.Add(time.Hour), cert); overdue || !got.Equal(renewal) {
		t.Errorf("an hour after the renewal time Key Vault still has its grace: %v %v", got, overdue)
	}
	if _, overdue := renewalOverdue(renewal.Add(25*time.Hour), cert); !overdue {
		t.Error("a day past the renewal time with no new version is overdue")
	}
	if _, overdue := renewalOverdue(nb.Add(time.Hour), &keyvault.Certificate{}); overdue {
		t.Error("a certificate without validity is never overdue")
	}
	if !issuerCanRenew("Self") || !issuerCanRenew("DigiCert") || issuerCanRenew("unknown") {
		t.Error("issuerCanRenew")
	}
}

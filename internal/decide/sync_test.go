package decide

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/keyvault"
	"github.com/vaultcert/vaultcert/internal/pki"
)

// testPair makes a self-signed certificate and its key as PEM.
func testPair(t *testing.T) (*x509.Certificate, []byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "unit.example.com"},
		NotBefore: time.Unix(1_700_000_000, 0), NotAfter: time.Unix(1_800_000_000, 0), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

func TestNeedsSync(t *testing.T) {
	leaf, certPEM, keyPEM := testPair(t)
	_, otherCertPEM, _ := testPair(t)
	uid := types.UID("vc-uid")
	vc := &vaultcertv1.VaultCertificate{ObjectMeta: metav1.ObjectMeta{Name: "web", UID: uid},
		Spec: vaultcertv1.VaultCertificateSpec{SecretName: "web-tls"}}
	const hash = "spec-hash"
	kvCert := &keyvault.Certificate{Version: "v2", Thumbprint: pki.Thumbprint(leaf), CER: leaf.Raw}
	good := func() *corev1.Secret {
		yes := true
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Annotations:     map[string]string{vaultcertv1.AnnotationVersion: "v2", vaultcertv1.AnnotationSpecHash: hash},
				OwnerReferences: []metav1.OwnerReference{{UID: uid, Controller: &yes}},
			},
			Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM, "ca.crt": certPEM},
		}
	}
	tests := []struct {
		name   string
		mutate func(*corev1.Secret) *corev1.Secret
		reason SyncReason
	}{
		{"up to date: no fetch", func(s *corev1.Secret) *corev1.Secret { return s }, ""},
		{"missing", func(*corev1.Secret) *corev1.Secret { return nil }, SyncSecretMissing},
		{"new version", func(s *corev1.Secret) *corev1.Secret { s.Annotations[vaultcertv1.AnnotationVersion] = "v1"; return s }, SyncVersionChanged},
		{"spec changed", func(s *corev1.Secret) *corev1.Secret { s.Annotations[vaultcertv1.AnnotationSpecHash] = "old"; return s }, SyncSpecChanged},
		{"tls.crt edited", func(s *corev1.Secret) *corev1.Secret { s.Data["tls.crt"] = []byte("x"); return s }, SyncSecretInvalid},
		{"another certificate", func(s *corev1.Secret) *corev1.Secret { s.Data["tls.crt"] = otherCertPEM; return s }, SyncSecretInvalid},
		{"ca.crt removed", func(s *corev1.Secret) *corev1.Secret { delete(s.Data, "ca.crt"); return s }, SyncSecretInvalid},
		{"owner reference removed", func(s *corev1.Secret) *corev1.Secret { s.OwnerReferences = nil; return s }, SyncMetadataDrifted},
		{"wrong type", func(s *corev1.Secret) *corev1.Secret { s.Type = corev1.SecretTypeOpaque; return s }, SyncMetadataDrifted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reason, _, needed := NeedsSync(&SyncInput{VC: vc, Secret: tt.mutate(good()), Cert: kvCert, SpecHash: hash})
			if reason != tt.reason || needed != (tt.reason != "") {
				t.Fatalf("needsSync = (%q, %v), want %q", reason, needed, tt.reason)
			}
		})
	}
}

func TestNextCheck(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		renewal  time.Time
		interval time.Duration
		want     time.Duration
	}{
		{"renewal far away: the interval", now.Add(30 * 24 * time.Hour), time.Hour, time.Hour},
		{"renewal sooner than the interval", now.Add(10 * time.Minute), time.Hour, 10 * time.Minute},
		{"renewal passed: no hot loop", now.Add(-time.Hour), time.Hour, time.Hour},
	}
	for _, tt := range tests {
		if got := NextCheck(now, tt.interval, tt.renewal); got != tt.want {
			t.Errorf("%s: nextCheck = %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestRenewalTime(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	na := nb.Add(300 * 24 * time.Hour)
	if got, want := RenewalTime(nb, na, 0, 0), nb.Add(200*24*time.Hour); !got.Equal(want) {
		t.Errorf("default two thirds: %s, want %s", got, want)
	}
	if got, want := RenewalTime(nb, na, 80, 0), nb.Add(240*24*time.Hour); !got.Equal(want) {
		t.Errorf("lifetime percentage 80: %s, want %s", got, want)
	}
	if got, want := RenewalTime(nb, na, 0, 30), na.Add(-30*24*time.Hour); !got.Equal(want) {
		t.Errorf("30 days before expiry: %s, want %s", got, want)
	}
}

func TestJitterNeverEarly(t *testing.T) {
	for i := 0; i < 1000; i++ {
		if got := Jitter(time.Hour, RefreshJitter); got < time.Hour || got > time.Hour+6*time.Minute {
			t.Fatalf("Jitter(1h) = %s, want within [1h, 1h6m]", got)
		}
	}
}

func TestRefreshIntervalFloor(t *testing.T) {
	vc := &vaultcertv1.VaultCertificate{}
	if got := RefreshInterval(vc); got != time.Hour {
		t.Errorf("default = %s, want 1h", got)
	}
	vc.Spec.RefreshInterval = &metav1.Duration{Duration: time.Second}
	if got := RefreshInterval(vc); got != time.Minute {
		t.Errorf("a 1s interval that bypassed validation must be floored to 1m, got %s", got)
	}
}

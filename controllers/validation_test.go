package controllers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
)

// The API server itself rejects bad specs, with messages that say what is wrong (CRD schema and CEL rules).
func TestAPIRejectsInvalidSpecs(t *testing.T) {
	ns := newNamespace(t, nil)
	base := func() *vaultcertv1.VaultCertificate {
		return &vaultcertv1.VaultCertificate{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "bad-", Namespace: ns},
			Spec: vaultcertv1.VaultCertificateSpec{
				ConnectionRef: vaultcertv1.ConnectionReference{Name: "vault"}, CertificateName: "web", SecretName: "web-tls",
			},
		}
	}
	tests := []struct {
		name    string
		mutate  func(*vaultcertv1.VaultCertificate)
		message string
	}{
		{"refresh below 1m", func(vc *vaultcertv1.VaultCertificate) {
			vc.Spec.RefreshInterval = &metav1.Duration{Duration: 30_000_000_000}
		}, "refreshInterval must be at least 1m"},
		{"refresh above 24h", func(vc *vaultcertv1.VaultCertificate) {
			vc.Spec.RefreshInterval = &metav1.Duration{Duration: 25 * time.Hour}
		}, "refreshInterval must be at most 24h"},
		{"certificate name with a dot", func(vc *vaultcertv1.VaultCertificate) { vc.Spec.CertificateName = "web.example" }, "certificateName"},
		{"unknown chain mode", func(vc *vaultcertv1.VaultCertificate) { vc.Spec.Chain = "RootOnly" }, "chain"},
		{"PKCS12 without password", func(vc *vaultcertv1.VaultCertificate) {
			vc.Spec.AdditionalOutputFormats = []vaultcertv1.AdditionalOutputFormat{{Type: vaultcertv1.OutputPKCS12}}
		}, "passwordSecretRef is required for type PKCS12"},
		{"both renewal triggers", func(vc *vaultcertv1.VaultCertificate) {
			d, p := int32(30), int32(80)
			vc.Spec.Issuance = &vaultcertv1.Issuance{Renewal: &vaultcertv1.Renewal{DaysBeforeExpiry: &d, LifetimePercentage: &p}}
		}, "set at most one of daysBeforeExpiry and lifetimePercentage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vc := base()
			tt.mutate(vc)
			err := k8s.Create(context.Background(), vc)
			if err == nil || !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("want rejection mentioning %q, got %v", tt.message, err)
			}
		})
	}

	// Defaults are filled in by the API server.
	vc := base()
	if err := k8s.Create(context.Background(), vc); err != nil {
		t.Fatal(err)
	}
	if vc.Spec.RefreshInterval == nil || vc.Spec.RefreshInterval.Duration.String() != "1h0m0s" || vc.Spec.Chain != vaultcertv1.ChainLeafAndIntermediates ||
		vc.Spec.PrivateKeyEncoding != vaultcertv1.PrivateKeyPKCS8 || vc.Spec.DeletionPolicy != vaultcertv1.DeletionPolicyDelete ||
		vc.Spec.ConnectionRef.Kind != vaultcertv1.VaultConnectionKind {
		t.Errorf("defaults not applied: %+v", vc.Spec)
	}
}

func TestAPIRejectsInvalidConnections(t *testing.T) {
	ns := newNamespace(t, nil)
	sp := &vaultcertv1.ServicePrincipalAuth{TenantID: "t", ClientID: "c",
		ClientSecretRef: &vaultcertv1.SecretKeyReference{Name: "s", Key: "k"}}
	tests := []struct {
		name    string
		spec    vaultcertv1.ConnectionSpec
		message string
	}{
		{"plain http", vaultcertv1.ConnectionSpec{VaultURL: "http://kv.example.com/", Auth: &vaultcertv1.ConnectionAuth{ServicePrincipal: sp}}, "vaultURL"},
		{"no auth on a namespaced connection", vaultcertv1.ConnectionSpec{VaultURL: "https://kv.vault.azure.net/"}, "only a ClusterVaultConnection may use the controller's own identity"},
		{"two auth methods", vaultcertv1.ConnectionSpec{VaultURL: "https://kv.vault.azure.net/", Auth: &vaultcertv1.ConnectionAuth{
			ServicePrincipal: sp, ManagedIdentity: &vaultcertv1.ManagedIdentityAuth{}}}, "set at most one of"},
		{"secret in another namespace", vaultcertv1.ConnectionSpec{VaultURL: "https://kv.vault.azure.net/", Auth: &vaultcertv1.ConnectionAuth{
			ServicePrincipal: &vaultcertv1.ServicePrincipalAuth{TenantID: "t", ClientID: "c",
				ClientSecretRef: &vaultcertv1.SecretKeyReference{Name: "s", Namespace: "kube-system", Key: "k"}}}}, "namespace is not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := &vaultcertv1.VaultConnection{ObjectMeta: metav1.ObjectMeta{GenerateName: "bad-", Namespace: ns}, Spec: tt.spec}
			err := k8s.Create(context.Background(), conn)
			if err == nil || !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("want rejection mentioning %q, got %v", tt.message, err)
			}
		})
	}
}

package decide

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
)

// TestKeyVaultDue: an up-to-date certificate asks Key Vault nothing, whoever decides (no process memory is
// involved); each input that should make it look again does.
func TestKeyVaultDue(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	base := func() DueInput {
		vc := &vaultcertv1.VaultCertificate{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Generation: 3, Annotations: map[string]string{vaultcertv1.AnnotationRefresh: "r1"}},
			Spec:       vaultcertv1.VaultCertificateSpec{CertificateName: "shop", SecretName: "web-tls"},
			Status: vaultcertv1.VaultCertificateStatus{
				Conditions: []metav1.Condition{{Type: vaultcertv1.ConditionReady, Status: metav1.ConditionTrue,
					Reason: vaultcertv1.ReasonSynced, ObservedGeneration: 3}},
				Version: "v2", SecretName: "web-tls", LastRefreshRequest: "r1", ConnectionRevision: "rev",
				NextRefreshTime: &metav1.Time{Time: now.Add(time.Hour)},
			},
		}
		secret := &metav1.ObjectMeta{Annotations: map[string]string{vaultcertv1.AnnotationVersion: "v2",
			vaultcertv1.AnnotationSpecHash: "hash", vaultcertv1.AnnotationVaultURL: "https://kv.vault.azure.net/",
			vaultcertv1.AnnotationCertificateName: "shop"}}
		return DueInput{VC: vc, Secret: secret, SpecHash: "hash", VaultURL: "https://kv.vault.azure.net/", ConnectionRevision: "rev", Now: now}
	}
	for _, tc := range []struct {
		name   string
		mutate func(*DueInput)
		want   DueReason
	}{
		{"up to date", func(*DueInput) {}, ""},
		{"never synced", func(in *DueInput) { in.VC.Status = vaultcertv1.VaultCertificateStatus{} }, DueNotSynced},
		{"spec changed since", func(in *DueInput) { in.VC.Generation = 4 }, DueNotSynced},
		{"last sync failed", func(in *DueInput) { in.VC.Status.Conditions[0].Status = metav1.ConditionFalse }, DueNotSynced},
		{"issuing", func(in *DueInput) {
			in.VC.Status.Conditions = append(in.VC.Status.Conditions, metav1.Condition{Type: vaultcertv1.ConditionIssuing, Status: metav1.ConditionTrue})
		}, DueIssuing},
		{"refresh asked", func(in *DueInput) { in.VC.Annotations[vaultcertv1.AnnotationRefresh] = "r2" }, DueRefreshRequested},
		{"renew asked", func(in *DueInput) {
			in.VC.Spec.Issuance = &vaultcertv1.Issuance{}
			in.VC.Annotations[vaultcertv1.AnnotationRenew] = "now"
		}, DueRenewRequested},
		{"renew already handled", func(in *DueInput) {
			in.VC.Spec.Issuance = &vaultcertv1.Issuance{}
			in.VC.Annotations[vaultcertv1.AnnotationRenew] = "now"
			in.VC.Status.LastRenewRequest = "now"
		}, ""},
		{"refresh time", func(in *DueInput) { in.Now = now.Add(time.Hour) }, DueRefreshTime},
		{"credential rotated", func(in *DueInput) { in.ConnectionRevision = "rev2" }, DueConnectionChanged},
		{"Secret gone", func(in *DueInput) { in.Secret = nil }, DueSecretChanged},
		{"Secret renamed", func(in *DueInput) { in.VC.Spec.SecretName = "other" }, DueSecretChanged},
		{"Secret from another version", func(in *DueInput) { in.Secret.Annotations[vaultcertv1.AnnotationVersion] = "v1" }, DueSecretChanged},
		{"output format changed", func(in *DueInput) { in.SpecHash = "hash2" }, DueSecretChanged},
		{"another vault", func(in *DueInput) { in.VaultURL = "https://other.vault.azure.net/" }, DueSecretChanged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := base()
			tc.mutate(&in)
			if got := KeyVaultDue(in); got != tc.want {
				t.Errorf("KeyVaultDue = %q, want %q", got, tc.want)
			}
		})
	}
}

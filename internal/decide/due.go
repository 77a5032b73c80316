package decide

import (
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
)

// DueInput is everything that decides whether Key Vault must be asked now. All of it is in the VaultCertificate,
// its Secret's metadata and the connection as resolved now, so a restarted controller or another replica decides
// the same way.
type DueInput struct {
	// VC is the VaultCertificate with the status vaultcert last wrote.
	VC *vaultcertv1.VaultCertificate
	// Secret is the metadata of its Secret; nil when there is none.
	Secret *metav1.ObjectMeta
	// SpecHash is the hash of the spec fields that shape the Secret, as computed now.
	SpecHash string
	// VaultURL and ConnectionRevision describe the connection as resolved now.
	VaultURL, ConnectionRevision string
	// Now is the clock.
	Now time.Time
}

// DueReason says why Key Vault must be asked; "" when it need not be.
type DueReason string

// The reasons KeyVaultDue gives.
const (
	DueNotSynced         DueReason = "NotSynced"         // never synced, or not for this generation, or failing
	DueIssuing           DueReason = "Issuing"           // a Key Vault operation is followed
	DueRefreshRequested  DueReason = "RefreshRequested"  // a new vaultcert.io/refresh value
	DueRenewRequested    DueReason = "RenewRequested"    // a new vaultcert.io/renew value (spec.issuance)
	DueRefreshTime       DueReason = "RefreshTime"       // status.nextRefreshTime has come
	DueConnectionChanged DueReason = "ConnectionChanged" // another vault, identity or credential
	DueSecretChanged     DueReason = "SecretChanged"     // the Secret is gone, renamed or holds something else
	DueVaultChanged      DueReason = "VaultChanged"      // the vault's listing shows another or a disabled version
)

// KeyVaultDue decides whether Key Vault must be asked now. When it need not be, the Secret's metadata still
// matches what the status says was written; its data is checked by the caller (cheaply, without Key Vault).
func KeyVaultDue(in DueInput) DueReason {
	vc, st := in.VC, &in.VC.Status
	ready := meta.FindStatusCondition(st.Conditions, vaultcertv1.ConditionReady)
	issuing := meta.FindStatusCondition(st.Conditions, vaultcertv1.ConditionIssuing)
	switch {
	case ready == nil || ready.Status != metav1.ConditionTrue || ready.ObservedGeneration != vc.Generation || st.Version == "":
		return DueNotSynced
	case issuing != nil && issuing.Status == metav1.ConditionTrue:
		return DueIssuing
	case vc.Annotations[vaultcertv1.AnnotationRefresh] != st.LastRefreshRequest:
		return DueRefreshRequested
	case vc.Spec.Issuance != nil && vc.Annotations[vaultcertv1.AnnotationRenew] != "" &&
		vc.Annotations[vaultcertv1.AnnotationRenew] != st.LastRenewRequest:
		return DueRenewRequested
	case st.NextRefreshTime == nil || !in.Now.Before(st.NextRefreshTime.Time):
		return DueRefreshTime
	case in.ConnectionRevision != st.ConnectionRevision:
		return DueConnectionChanged
	case in.Secret == nil || st.SecretName != vc.Spec.SecretName ||
		in.Secret.Annotations[vaultcertv1.AnnotationVersion] != st.Version ||
		in.Secret.Annotations[vaultcertv1.AnnotationSpecHash] != in.SpecHash ||
		in.Secret.Annotations[vaultcertv1.AnnotationVaultURL] != in.VaultURL ||
		in.Secret.Annotations[vaultcertv1.AnnotationCertificateName] != vc.Spec.CertificateName:
		return DueSecretChanged
	}
	return ""
}

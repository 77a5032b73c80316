package controllers_test

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/fakevault"
)

// TestSlowFirstSyncSaysItIsInProgress: while a first sync waits on a slow vault, the VaultCertificate already
// says Reconciling=True (Progressing), so kubectl and kstatus readers never see it without status; then it is
// Ready as usual, and Reconciling is gone.
func TestSlowFirstSyncSaysItIsInProgress(t *testing.T) {
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	cert := uniqueName("slow")
	v1, err := vault.Seed(fakevault.CertSpec{Name: cert, KeyType: "EC"})
	if err != nil {
		t.Fatal(err)
	}
	vault.InjectFault(fakevault.Fault{Operation: fakevault.OpGetSecret, Name: cert, Latency: 4 * time.Second, Times: 1})
	newCertificate(t, ns, cert)
	eventually(t, "Reconciling=True Progressing while Key Vault is slow", func() (bool, string) {
		vc := getCert(t, ns, "web")
		if ready := meta.FindStatusCondition(vc.Status.Conditions, vaultcertv1.ConditionReady); ready != nil {
			return false, "Ready already set: the vault was not slow enough to see the notice"
		}
		c := meta.FindStatusCondition(vc.Status.Conditions, vaultcertv1.ConditionReconciling)
		if c == nil {
			return false, "no status yet"
		}
		return c.Status == metav1.ConditionTrue && c.Reason == vaultcertv1.ReasonProgressing && vc.Status.ObservedGeneration == vc.Generation,
			c.Reason + ": " + c.Message
	})
	vc := waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	if vc.Status.Version != v1.Version {
		t.Fatalf("status.version %s, want %s", vc.Status.Version, v1.Version)
	}
	if c := meta.FindStatusCondition(vc.Status.Conditions, vaultcertv1.ConditionReconciling); c != nil {
		t.Fatalf("Reconciling still set after the sync: %+v", c)
	}
}

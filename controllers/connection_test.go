package controllers_test

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/controllers"
)

// waitConnectionReady waits for a VaultConnection's Ready condition to have the given status and reason.
func waitConnectionReady(t *testing.T, ns, name string, status metav1.ConditionStatus, reason string) *metav1.Condition {
	t.Helper()
	var conn vaultcertv1.VaultConnection
	return waitConnectionCondition(t, "VaultConnection "+ns+"/"+name, types.NamespacedName{Namespace: ns, Name: name},
		&conn, &conn.Status, status, reason)
}

// waitClusterConnectionReady waits for a ClusterVaultConnection's Ready condition.
func waitClusterConnectionReady(t *testing.T, name string, status metav1.ConditionStatus, reason string) *metav1.Condition {
	t.Helper()
	var conn vaultcertv1.ClusterVaultConnection
	return waitConnectionCondition(t, "ClusterVaultConnection "+name, types.NamespacedName{Name: name}, &conn, &conn.Status, status, reason)
}

// waitConnectionCondition polls a connection (read into obj, whose status is st) until Ready has the given
// status and reason for its current generation.
func waitConnectionCondition(t *testing.T, what string, key types.NamespacedName, obj client.Object, st *vaultcertv1.ConnectionStatus,
	status metav1.ConditionStatus, reason string) *metav1.Condition {
	t.Helper()
	var got *metav1.Condition
	eventually(t, what+" Ready="+string(status)+" "+reason, func() (bool, string) {
		if err := k8s.Get(context.Background(), key, obj); err != nil {
			return false, err.Error()
		}
		got = meta.FindStatusCondition(st.Conditions, vaultcertv1.ConditionReady)
		if got == nil {
			return false, "no Ready condition"
		}
		return got.Status == status && got.Reason == reason && st.ObservedGeneration == obj.GetGeneration(),
			string(got.Status) + " " + got.Reason + ": " + got.Message
	})
	return got
}

func TestConnectionReadyAsksTheVault(t *testing.T) {
	ns := newNamespace(t, nil)
	name := newConnection(t, ns)
	c := waitConnectionReady(t, ns, name, metav1.ConditionTrue, controllers.ReasonConnected)
	if !strings.Contains(c.Message, vault.URL()) {
		t.Errorf("message should name the vault: %s", c.Message)
	}
}

func TestConnectionWithMissingCredentialSecret(t *testing.T) {
	ns := newNamespace(t, nil)
	name := newConnection(t, ns)
	waitConnectionReady(t, ns, name, metav1.ConditionTrue, controllers.ReasonConnected)
	// The certificate reports the missing credential by name, without calling Key Vault.
	if err := k8s.Delete(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kv-credentials", Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	certName := uniqueName("nocred")
	newCertificate(t, ns, certName)
	vc := waitReady(t, ns, "web", metav1.ConditionFalse, vaultcertv1.ReasonConnectionNotReady)
	if c := meta.FindStatusCondition(vc.Status.Conditions, vaultcertv1.ConditionReady); !strings.Contains(c.Message, "kv-credentials") {
		t.Errorf("message should name the missing Secret: %s", c.Message)
	}
	if n := vault.CountFor("GetCertificate", certName); n != 0 {
		t.Errorf("Key Vault was called %d times without credentials", n)
	}
}

func TestMissingConnectionIsReported(t *testing.T) {
	ns := newNamespace(t, nil)
	newCertificate(t, ns, uniqueName("noconn"), func(vc *vaultcertv1.VaultCertificate) { vc.Spec.ConnectionRef.Name = "nope" })
	vc := waitReady(t, ns, "web", metav1.ConditionFalse, vaultcertv1.ReasonConnectionNotReady)
	if c := meta.FindStatusCondition(vc.Status.Conditions, vaultcertv1.ConditionReady); !strings.Contains(c.Message, `"nope"`) {
		t.Errorf("message should name the missing connection: %s", c.Message)
	}
}

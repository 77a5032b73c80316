package controllers_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/controllers"
	"github.com/vaultcert/vaultcert/internal/fakevault"
)

// The suite re-checks connections every minute (RecheckInterval) plus up to 10 % jitter, and refreshes these
// certificates hourly. Every change below must show well before the connection's first re-check, so only the
// credential watcher can explain it.
const recheckFloor = 50 * time.Second

// connectionReady returns the connection's Ready condition.
func connectionReady(t *testing.T, ns, name string) *metav1.Condition {
	t.Helper()
	var conn vaultcertv1.VaultConnection
	if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &conn); err != nil {
		t.Fatal(err)
	}
	return meta.FindStatusCondition(conn.Status.Conditions, vaultcertv1.ConditionReady)
}

// before fails the test once the connection's periodic re-check could have run.
func before(t *testing.T, deadline time.Time, what string) {
	t.Helper()
	if time.Now().After(deadline) {
		t.Fatalf("%s came only after %s, when the periodic re-check may have run: it does not prove the watch", what, deadline.Format(time.RFC3339))
	}
}

func TestRotatedClientSecretTakesEffectAtOnce(t *testing.T) {
	client := uniqueName("watched")
	vault.AddClientSecret(client, "first-secret")
	ns := newNamespace(t, nil)
	secretConnection(t, ns, client, "first-secret")
	cert := seed(t, "watched")
	hourly := func(vc *vaultcertv1.VaultCertificate) {
		vc.Spec.RefreshInterval = &metav1.Duration{Duration: time.Hour}
	}
	newCertificate(t, ns, cert, hourly)
	first := waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	waitConnectionReady(t, ns, "vault", metav1.ConditionTrue, controllers.ReasonConnected)
	// The re-check is due a minute after the connection first became Ready (the condition's time is
	// truncated to the second, so this deadline is early rather than late).
	deadline := connectionReady(t, ns, "vault").LastTransitionTime.Add(recheckFloor)

	// 1. Rotation with overlap, as an operator does it: Entra ID gets the new secret, the Secret is updated, the
	// old secret is removed. Meanwhile the certificate got a new version in Key Vault. The VaultCertificate
	// refreshes hourly and nobody annotates it, so only the watch makes it look again, with the new credential.
	vault.AddClientSecret(client, "second-secret")
	rotated, err := vault.Rotate(cert)
	if err != nil {
		t.Fatal(err)
	}
	tokensBefore := vault.Count(fakevault.OpToken)
	updateSecret(t, ns, "kv-credentials", "clientSecret", "second-secret")
	vault.RemoveClientSecret(client, "first-secret")
	waitSecretVersion(t, ns, "web-tls", rotated.Version)
	before(t, deadline, "the rotated certificate")
	if rotated.Version == first.Status.Version {
		t.Fatal("Rotate did not make a new version")
	}
	if vault.Count(fakevault.OpToken) == tokensBefore {
		t.Error("no new token was requested: the credential was not rebuilt from the rotated Secret")
	}

	// 2. A wrong value in the Secret: the connection's Ready turns False within seconds, not at its re-check.
	updateSecret(t, ns, "kv-credentials", "clientSecret", "typo-secret")
	c := waitConnectionReady(t, ns, "vault", metav1.ConditionFalse, vaultcertv1.ReasonAuthenticationFailed)
	before(t, deadline, "connection Ready=False")
	wantMessage(t, c.Message, "AADSTS7000215")
	vc := waitReady(t, ns, "web", metav1.ConditionFalse, vaultcertv1.ReasonAuthenticationFailed)
	before(t, deadline, "certificate Ready=False")
	wantMessage(t, readyMessage(vc), "AADSTS7000215")

	// 3. Fixed: Ready=True again, just as fast.
	updateSecret(t, ns, "kv-credentials", "clientSecret", "second-secret")
	waitConnectionReady(t, ns, "vault", metav1.ConditionTrue, controllers.ReasonConnected)
	before(t, deadline, "connection Ready=True again")
	waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
}

func TestDeletedAndRecreatedCredentialSecretIsNoticed(t *testing.T) {
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	waitConnectionReady(t, ns, "vault", metav1.ConditionTrue, controllers.ReasonConnected)
	deadline := connectionReady(t, ns, "vault").LastTransitionTime.Add(recheckFloor)

	// Deleted: the connection says which Secret is missing, at once.
	if err := k8s.Delete(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "kv-credentials"}}); err != nil {
		t.Fatal(err)
	}
	c := waitConnectionReady(t, ns, "vault", metav1.ConditionFalse, vaultcertv1.ReasonConnectionNotReady)
	before(t, deadline, "connection Ready=False after the Secret was deleted")
	wantMessage(t, c.Message, "kv-credentials", "not found")

	// Created again: the watch outlives the object it names.
	createSecret(t, ns, "kv-credentials", map[string]string{"clientSecret": testClientSecret})
	waitConnectionReady(t, ns, "vault", metav1.ConditionTrue, controllers.ReasonConnected)
	before(t, deadline, "connection Ready=True after the Secret was re-created")
}

func TestWorkloadIdentityServiceAccountChangeTakesEffectAtOnce(t *testing.T) {
	client := uniqueName("wi-watched")
	ns := newNamespace(t, nil)
	vault.AddFederatedCredential(client, clusterIssuer, "system:serviceaccount:"+ns+":app")
	sa := createServiceAccount(t, ns, "app", wiAnnotations(client))
	createConnection(t, ns, "vault", &vaultcertv1.ConnectionAuth{WorkloadIdentity: &vaultcertv1.WorkloadIdentityAuth{
		ServiceAccountRef: &vaultcertv1.ServiceAccountReference{Name: "app"}}})
	waitConnectionReady(t, ns, "vault", metav1.ConditionTrue, controllers.ReasonConnected)
	deadline := connectionReady(t, ns, "vault").LastTransitionTime.Add(recheckFloor)

	patchAnnotations(t, sa, wiAnnotations(fmt.Sprintf("%s-unknown", client)))
	c := waitConnectionReady(t, ns, "vault", metav1.ConditionFalse, vaultcertv1.ReasonAuthenticationFailed)
	before(t, deadline, "connection Ready=False after the annotation changed")
	wantMessage(t, c.Message, "AADSTS700016")
	patchAnnotations(t, sa, wiAnnotations(client))
	waitConnectionReady(t, ns, "vault", metav1.ConditionTrue, controllers.ReasonConnected)
	before(t, deadline, "connection Ready=True after the annotation was fixed")
}

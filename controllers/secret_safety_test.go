package controllers_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/controllers"
	"github.com/vaultcert/vaultcert/internal/fakevault"
	"github.com/vaultcert/vaultcert/internal/keyvault"
)

// TestExpiredVersionDoesNotReplaceValidSecret: a new version whose leaf has already expired is refused while the
// Secret holds a valid certificate: InvalidCertificate with the dates, and the Secret keeps the good version.
func TestExpiredVersionDoesNotReplaceValidSecret(t *testing.T) {
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	name := seed(t, "expired")
	newCertificate(t, ns, name)
	vc := waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	good := vc.Status.Version

	// A version issued 400 days ago for 365 days: expired a month ago.
	vaultClockOffset.Store(int64(-400 * 24 * time.Hour))
	bad, err := vault.Seed(fakevault.CertSpec{Name: name, KeyType: "EC"})
	vaultClockOffset.Store(0)
	if err != nil {
		t.Fatal(err)
	}
	refresh(t, ns, "web")
	vc = waitReady(t, ns, "web", metav1.ConditionFalse, vaultcertv1.ReasonInvalidCertificate)
	wantMessage(t, readyMessage(vc), bad.Version, "not valid now", bad.Leaf.NotAfter.UTC().Format(time.RFC3339), good)
	if s := getSecret(t, ns, "web-tls"); s.Annotations[vaultcertv1.AnnotationVersion] != good {
		t.Fatalf("the Secret holds %s, want the valid %s", s.Annotations[vaultcertv1.AnnotationVersion], good)
	}
}

// TestExpiredFirstSyncIsWrittenWithWarning: with nothing better held, an expired certificate is written (a
// workload may prefer it to none) and a Warning says it is not valid.
func TestExpiredFirstSyncIsWrittenWithWarning(t *testing.T) {
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	name := uniqueName("expired-first")
	vaultClockOffset.Store(int64(-400 * 24 * time.Hour))
	v, err := vault.Seed(fakevault.CertSpec{Name: name, KeyType: "EC"})
	vaultClockOffset.Store(0)
	if err != nil {
		t.Fatal(err)
	}
	newCertificate(t, ns, name)
	waitSecretVersion(t, ns, "web-tls", v.Version)
	waitEvent(t, ns, vaultcertv1.ReasonInvalidCertificate, "not valid now")
}

// TestSecretNameChangeCleansUp: changing spec.secretName writes the new Secret, then deletes the old one
// (Delete) or releases it with its data (Retain); status.secretName names the Secret actually written.
func TestSecretNameChangeCleansUp(t *testing.T) {
	for _, policy := range []vaultcertv1.DeletionPolicy{vaultcertv1.DeletionPolicyDelete, vaultcertv1.DeletionPolicyRetain} {
		t.Run(string(policy), func(t *testing.T) {
			ctx := context.Background()
			ns := newNamespace(t, nil)
			newConnection(t, ns)
			name := seed(t, "rename")
			newCertificate(t, ns, name, func(vc *vaultcertv1.VaultCertificate) { vc.Spec.DeletionPolicy = policy })
			vc := waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
			if vc.Status.SecretName != "web-tls" {
				t.Fatalf("status.secretName = %q", vc.Status.SecretName)
			}
			old := getSecret(t, ns, "web-tls")

			patch := client.MergeFrom(vc.DeepCopy())
			vc.Spec.SecretName = "web-tls-2"
			if err := k8s.Patch(ctx, vc, patch); err != nil {
				t.Fatal(err)
			}
			eventually(t, "status.secretName follows", func() (bool, string) {
				got := getCert(t, ns, "web")
				return got.Status.SecretName == "web-tls-2" && getSecret(t, ns, "web-tls-2") != nil, "status.secretName " + got.Status.SecretName
			})
			left := getSecret(t, ns, "web-tls")
			if policy == vaultcertv1.DeletionPolicyDelete {
				if left != nil {
					t.Fatal("the old Secret must be deleted with deletionPolicy Delete")
				}
				waitEvent(t, ns, vaultcertv1.EventSecretDeleted, "web-tls")
				return
			}
			if left == nil {
				t.Fatal("the old Secret must stay with deletionPolicy Retain")
			}
			if left.Labels[vaultcertv1.LabelManagedBy] != "" || left.Labels[vaultcertv1.LabelCertificate] != "" ||
				left.Annotations[vaultcertv1.AnnotationVersion] != "" || len(left.OwnerReferences) != 0 {
				t.Fatalf("the retained Secret still carries vaultcert's metadata: labels %v annotations %v owners %v",
					left.Labels, left.Annotations, left.OwnerReferences)
			}
			if string(left.Data[corev1.TLSCertKey]) != string(old.Data[corev1.TLSCertKey]) || len(left.Data[corev1.TLSPrivateKeyKey]) == 0 {
				t.Fatal("the retained Secret lost its data")
			}
			waitEvent(t, ns, vaultcertv1.EventSecretReleased, "web-tls")
		})
	}
}

// TestSecretCreatedDuringReadIsNotOverwritten: a Secret a user creates under spec.secretName while vaultcert
// reads Key Vault is never overwritten: the write only creates, and the VaultCertificate reports SecretConflict.
func TestSecretCreatedDuringReadIsNotOverwritten(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	name := seed(t, "race")
	vault.InjectFault(fakevault.Fault{Operation: fakevault.OpGetSecret, Name: name, Latency: 3 * time.Second, Times: 1})
	newCertificate(t, ns, name)
	eventually(t, "vaultcert reading the key", func() (bool, string) {
		return vault.CountFor(fakevault.OpGetSecret, name) > 0, "no GetSecret yet"
	})
	mine := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "web-tls", Namespace: ns}, StringData: map[string]string{"keep": "me"}}
	if err := k8s.Create(ctx, mine); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ns, "web", metav1.ConditionFalse, vaultcertv1.ReasonSecretConflict)
	got := getSecret(t, ns, "web-tls")
	if string(got.Data["keep"]) != "me" || len(got.Data[corev1.TLSCertKey]) != 0 || got.Labels[vaultcertv1.LabelManagedBy] != "" {
		t.Fatalf("the user's Secret was changed: labels %v, keys %d", got.Labels, len(got.Data))
	}
}

// TestRemovedOutputFormatIsReleased: keys of an output format the spec no longer asks for leave the Secret, also
// when the Secret was first created (not applied) by vaultcert.
func TestRemovedOutputFormatIsReleased(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	name := seed(t, "formats")
	newCertificate(t, ns, name, func(vc *vaultcertv1.VaultCertificate) {
		vc.Spec.AdditionalOutputFormats = []vaultcertv1.AdditionalOutputFormat{{Type: vaultcertv1.OutputDER}}
	})
	vc := waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	if s := getSecret(t, ns, "web-tls"); len(s.Data[vaultcertv1.SecretKeyDER]) == 0 {
		t.Fatal("no tls.der")
	}
	patch := client.MergeFrom(vc.DeepCopy())
	vc.Spec.AdditionalOutputFormats = nil
	if err := k8s.Patch(ctx, vc, patch); err != nil {
		t.Fatal(err)
	}
	eventually(t, "tls.der and key.der released", func() (bool, string) {
		s := getSecret(t, ns, "web-tls")
		_, der := s.Data[vaultcertv1.SecretKeyDER]
		_, key := s.Data[vaultcertv1.SecretKeyKeyDER]
		return !der && !key && len(s.Data[corev1.TLSCertKey]) > 0, "keys still there"
	})
}

// TestKStatusConditions: a certificate missing from Key Vault is Stalled (only a person can fix it), with Ready's
// reason; once it exists, Ready=True and neither Reconciling nor Stalled remains.
func TestKStatusConditions(t *testing.T) {
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	name := uniqueName("kstatus")
	newCertificate(t, ns, name)
	vc := waitReady(t, ns, "web", metav1.ConditionFalse, vaultcertv1.ReasonCertificateNotFound)
	if c := meta.FindStatusCondition(vc.Status.Conditions, vaultcertv1.ConditionStalled); c == nil ||
		c.Status != metav1.ConditionTrue || c.Reason != vaultcertv1.ReasonCertificateNotFound || c.ObservedGeneration != vc.Generation {
		t.Fatalf("Stalled = %+v, want True CertificateNotFound", c)
	}
	if _, err := vault.Seed(fakevault.CertSpec{Name: name, KeyType: "EC"}); err != nil {
		t.Fatal(err)
	}
	vc = waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	for _, typ := range []string{vaultcertv1.ConditionStalled, vaultcertv1.ConditionReconciling} {
		if c := meta.FindStatusCondition(vc.Status.Conditions, typ); c != nil {
			t.Errorf("%s still set once Ready: %+v", typ, c)
		}
	}
}

// TestRestartedControllerAsksKeyVaultNothing: whether Key Vault is asked is decided from the object, its status
// and its Secret, not from process memory: a second controller (a restart, another replica) reconciling an
// up-to-date certificate makes no Key Vault call; a refresh request makes exactly one.
func TestRestartedControllerAsksKeyVaultNothing(t *testing.T) {
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	name := seed(t, "restart")
	newCertificate(t, ns, name)
	waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	other := &controllers.VaultCertificateReconciler{
		Client: k8s, APIReader: k8s, Recorder: events.NewFakeRecorder(100),
		Factory: keyvault.NewFactory(keyvault.FactoryOptions{}), TerminalRetry: 2 * time.Second, HostPolicy: loopbackHostPolicy(),
	}
	req := ctrl.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: "web"}}
	before := vault.CountFor(fakevault.OpGetCertificate, name) + vault.CountFor(fakevault.OpGetSecret, name)
	for i := 0; i < 3; i++ {
		res, err := other.Reconcile(context.Background(), req)
		if err != nil || res.RequeueAfter < 30*time.Minute {
			t.Fatalf("reconcile %d: %v, requeue after %v (want the next refresh, about an hour)", i, err, res.RequeueAfter)
		}
	}
	if n := vault.CountFor(fakevault.OpGetCertificate, name) + vault.CountFor(fakevault.OpGetSecret, name); n != before {
		t.Fatalf("a controller without memory asked Key Vault %d times about an up-to-date certificate", n-before)
	}
	refresh(t, ns, "web")
	if _, err := other.Reconcile(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if n := vault.CountFor(fakevault.OpGetCertificate, name); n == 0 {
		t.Fatal("a refresh request did not ask Key Vault")
	}
}

package controllers_test

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/fakevault"
)

// syncedCertificate seeds a certificate, creates its VaultCertificate and waits for the first sync.
func syncedCertificate(t *testing.T, spec fakevault.CertSpec, mutate ...func(*vaultcertv1.VaultCertificate)) (ns string, v fakevault.Version) {
	t.Helper()
	ns = newNamespace(t, nil)
	newConnection(t, ns)
	v, err := vault.Seed(spec)
	if err != nil {
		t.Fatal(err)
	}
	newCertificate(t, ns, spec.Name, mutate...)
	waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	waitSecretVersion(t, ns, "web-tls", v.Version)
	return ns, v
}

func TestRotationReachesSecret(t *testing.T) {
	name := uniqueName("rotate")
	ns, v1 := syncedCertificate(t, fakevault.CertSpec{Name: name, ChainDepth: 2, DNSNames: []string{"rot.example.com"}})
	v2, err := vault.Rotate(name)
	if err != nil {
		t.Fatal(err)
	}
	refresh(t, ns, "web")
	s := waitSecretVersion(t, ns, "web-tls", v2.Version)
	assertServes(t, s, "rot.example.com")
	if s.Annotations[vaultcertv1.AnnotationThumbprint] == v1.Thumbprint {
		t.Fatal("thumbprint did not change with the version")
	}
	got := waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	if got.Status.Version != v2.Version || got.Status.Thumbprint != v2.Thumbprint {
		t.Errorf("status still on the old version: %s", got.Status.Version)
	}
}

func TestPinnedVersionStays(t *testing.T) {
	name := uniqueName("pin")
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	v1, err := vault.Seed(fakevault.CertSpec{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vault.Rotate(name); err != nil {
		t.Fatal(err)
	}
	newCertificate(t, ns, name, func(vc *vaultcertv1.VaultCertificate) { vc.Spec.Version = v1.Version })
	got := waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	if got.Status.Version != v1.Version {
		t.Fatalf("pinned %s, status says %s", v1.Version, got.Status.Version)
	}
	waitSecretVersion(t, ns, "web-tls", v1.Version)
}

func TestNotFoundThenCreated(t *testing.T) {
	name := uniqueName("late")
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	newCertificate(t, ns, name)
	got := waitReady(t, ns, "web", metav1.ConditionFalse, vaultcertv1.ReasonCertificateNotFound)
	if c := meta.FindStatusCondition(got.Status.Conditions, vaultcertv1.ConditionReady); !strings.Contains(c.Message, name) {
		t.Errorf("message should name the certificate: %s", c.Message)
	}
	if getSecret(t, ns, "web-tls") != nil {
		t.Fatal("no Secret may be written for a missing certificate")
	}
	v, err := vault.Seed(fakevault.CertSpec{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	// No poke: the terminal retry picks it up by itself.
	waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	waitSecretVersion(t, ns, "web-tls", v.Version)
}

func TestNonExportableKey(t *testing.T) {
	name := uniqueName("noexport")
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	if _, err := vault.Seed(fakevault.CertSpec{Name: name, NotExportable: true}); err != nil {
		t.Fatal(err)
	}
	newCertificate(t, ns, name)
	got := waitReady(t, ns, "web", metav1.ConditionFalse, vaultcertv1.ReasonKeyNotExportable)
	if c := meta.FindStatusCondition(got.Status.Conditions, vaultcertv1.ConditionReady); !strings.Contains(c.Message, "exportable") {
		t.Errorf("message should say how to fix it: %s", c.Message)
	}
	if getSecret(t, ns, "web-tls") != nil {
		t.Fatal("no Secret may be written without a private key")
	}
}

func TestMismatchedKeyKeepsLastGoodSecret(t *testing.T) {
	name := uniqueName("mismatch")
	ns, _ := syncedCertificate(t, fakevault.CertSpec{Name: name})
	before := getSecret(t, ns, "web-tls")
	v2, err := vault.Rotate(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := vault.CorruptKey(name, v2.Version); err != nil {
		t.Fatal(err)
	}
	refresh(t, ns, "web")
	waitReady(t, ns, "web", metav1.ConditionFalse, vaultcertv1.ReasonInvalidCertificate)
	after := getSecret(t, ns, "web-tls")
	if !reflect.DeepEqual(before.Data, after.Data) || after.ResourceVersion != before.ResourceVersion {
		t.Fatal("the last good Secret must stay byte-identical when the new version's key does not match")
	}
}

func TestDisabledLatestVersionKeepsSecret(t *testing.T) {
	name := uniqueName("disabled")
	ns, v1 := syncedCertificate(t, fakevault.CertSpec{Name: name})
	v2, err := vault.Rotate(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := vault.SetEnabled(name, v2.Version, false); err != nil {
		t.Fatal(err)
	}
	refresh(t, ns, "web")
	got := waitReady(t, ns, "web", metav1.ConditionFalse, vaultcertv1.ReasonCertificateDisabled)
	if c := meta.FindStatusCondition(got.Status.Conditions, vaultcertv1.ConditionReady); !strings.Contains(c.Message, v1.Version) {
		t.Errorf("message should say which version the Secret keeps: %s", c.Message)
	}
	if s := getSecret(t, ns, "web-tls"); s.Annotations[vaultcertv1.AnnotationVersion] != v1.Version {
		t.Fatal("the Secret must keep the enabled version")
	}
}

func TestUnmanagedSecretIsNeverTouched(t *testing.T) {
	name := uniqueName("conflict")
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	if _, err := vault.Seed(fakevault.CertSpec{Name: name}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mine := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "web-tls", Namespace: ns},
		Data: map[string][]byte{"hand-made": []byte("keep me")}}
	if err := k8s.Create(ctx, mine); err != nil {
		t.Fatal(err)
	}
	newCertificate(t, ns, name)
	waitReady(t, ns, "web", metav1.ConditionFalse, vaultcertv1.ReasonSecretConflict)
	s := getSecret(t, ns, "web-tls")
	if s.ResourceVersion != mine.ResourceVersion || string(s.Data["hand-made"]) != "keep me" {
		t.Fatal("an unmanaged Secret was modified")
	}
	if n := vault.CountFor(fakevault.OpGetSecret, name); n != 0 {
		t.Errorf("the key material was fetched %d times although the Secret cannot be written", n)
	}
}

func TestDeletedAndEditedSecretAreRepaired(t *testing.T) {
	name := uniqueName("repair")
	ns, v := syncedCertificate(t, fakevault.CertSpec{Name: name, DNSNames: []string{"fix.example.com"}})
	ctx := context.Background()

	// Edited: someone overwrites tls.crt.
	s := getSecret(t, ns, "web-tls")
	good := s.Data["tls.crt"]
	s.Data["tls.crt"] = []byte("garbage")
	if err := k8s.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	eventually(t, "tls.crt restored", func() (bool, string) {
		return bytes.Equal(getSecret(t, ns, "web-tls").Data["tls.crt"], good), "still edited"
	})

	// Deleted: the Secret comes back.
	if err := k8s.Delete(ctx, getSecret(t, ns, "web-tls")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Secret recreated", func() (bool, string) {
		s := getSecret(t, ns, "web-tls")
		return s != nil && s.Annotations[vaultcertv1.AnnotationVersion] == v.Version, "missing"
	})
	assertServes(t, getSecret(t, ns, "web-tls"), "fix.example.com")
}

func TestDeletionPolicy(t *testing.T) {
	ctx := context.Background()
	// Retain: no owner reference, so the Secret outlives the VaultCertificate.
	name := uniqueName("retain")
	ns, _ := syncedCertificate(t, fakevault.CertSpec{Name: name}, func(vc *vaultcertv1.VaultCertificate) {
		vc.Spec.DeletionPolicy = vaultcertv1.DeletionPolicyRetain
	})
	if refs := getSecret(t, ns, "web-tls").OwnerReferences; len(refs) != 0 {
		t.Fatalf("Retain must not own the Secret: %+v", refs)
	}
	if err := k8s.Delete(ctx, getCert(t, ns, "web")); err != nil {
		t.Fatal(err)
	}
	if getSecret(t, ns, "web-tls") == nil {
		t.Fatal("Retain: the Secret must stay")
	}

	// Switching Delete -> Retain on a live object releases the owner reference.
	name2 := uniqueName("delete")
	ns2, _ := syncedCertificate(t, fakevault.CertSpec{Name: name2})
	if refs := getSecret(t, ns2, "web-tls").OwnerReferences; len(refs) != 1 {
		t.Fatalf("Delete must own the Secret (garbage collection removes it): %+v", refs)
	}
	vc := getCert(t, ns2, "web")
	patch := client.MergeFrom(vc.DeepCopy())
	vc.Spec.DeletionPolicy = vaultcertv1.DeletionPolicyRetain
	if err := k8s.Patch(ctx, vc, patch); err != nil {
		t.Fatal(err)
	}
	eventually(t, "owner reference released", func() (bool, string) {
		return len(getSecret(t, ns2, "web-tls").OwnerReferences) == 0, "still owned"
	})
}

func TestShortThrottleBurstRecovers(t *testing.T) {
	name := uniqueName("throttle")
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	v, err := vault.Seed(fakevault.CertSpec{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	// A first sync reads the key material (GetSecret) first.
	vault.InjectFault(fakevault.Fault{Operation: fakevault.OpGetSecret, Name: name, Status: 429, RetryAfter: "1", Times: 2})
	newCertificate(t, ns, name)
	waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	waitSecretVersion(t, ns, "web-tls", v.Version)
}

func TestNoSecretFetchWhenNothingChanged(t *testing.T) {
	name := uniqueName("count")
	ns, _ := syncedCertificate(t, fakevault.CertSpec{Name: name})
	// Let the first sync's follow-up reconciles (Secret watch, status update) settle, then count.
	gets := vault.CountFor(fakevault.OpGetSecret, name)
	metaBefore := vault.CountFor(fakevault.OpGetCertificate, name)
	for i := 0; i < 3; i++ {
		refresh(t, ns, "web")
		want := metaBefore + i + 1
		eventually(t, "a metadata read per refresh", func() (bool, string) {
			return vault.CountFor(fakevault.OpGetCertificate, name) >= want, "waiting"
		})
	}
	if got := vault.CountFor(fakevault.OpGetSecret, name); got != gets {
		t.Fatalf("the secret endpoint was called %d times for an unchanged certificate", got-gets)
	}
}

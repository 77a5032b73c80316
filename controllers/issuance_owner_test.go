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
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/controllers"
	"github.com/vaultcert/vaultcert/internal/fakevault"
	"github.com/vaultcert/vaultcert/internal/keyvault"
)

// reconciled asks for a refresh of a VaultCertificate and waits until the controller read certName from Key
// Vault again, so a test can count what several reconciles sent.
func reconciled(t *testing.T, ns, name, certName string) {
	t.Helper()
	before := vault.CountFor(fakevault.OpGetCertificate, certName)
	refresh(t, ns, name)
	eventually(t, fmt.Sprintf("a reconcile of %s/%s that reads %s", ns, name, certName), func() (bool, string) {
		n := vault.CountFor(fakevault.OpGetCertificate, certName)
		return n > before, fmt.Sprintf("%d reads", n)
	})
	// Let the reconcile finish whatever it does after the read (a create would follow within milliseconds).
	time.Sleep(300 * time.Millisecond)
}

// policyPatches is how many policy updates Key Vault received for name.
func policyPatches(name string) int { return vault.CountFor(fakevault.OpUpdateCertificatePolicy, name) }

// kvTags reads the tags of the latest version of name, as `az keyvault certificate show` shows them.
func kvTags(t *testing.T, name string) map[string]string {
	t.Helper()
	got, err := sdkClient(t).GetCertificate(context.Background(), name, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for k, v := range got.Tags {
		if v != nil {
			out[k] = *v
		}
	}
	return out
}

// issuanceClusterConnection creates a ClusterVaultConnection to the fake vault with the suite's service
// principal (its Secret in a namespace of its own) and the given issuance opt-in.
func issuanceClusterConnection(t *testing.T, is *vaultcertv1.ClusterIssuance) string {
	t.Helper()
	credNS := newNamespace(t, nil)
	createSecret(t, credNS, "kv-credentials", map[string]string{"clientSecret": testClientSecret})
	conn := &vaultcertv1.ClusterVaultConnection{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("issuing")},
		Spec: vaultcertv1.ClusterVaultConnectionSpec{
			ConnectionSpec: vaultcertv1.ConnectionSpec{VaultURL: vault.URL(), Cloud: clusterCloudConfig(vault),
				Auth: &vaultcertv1.ConnectionAuth{ServicePrincipal: &vaultcertv1.ServicePrincipalAuth{
					TenantID: vault.TenantID(), ClientID: testClientID,
					ClientSecretRef: &vaultcertv1.SecretKeyReference{Name: "kv-credentials", Namespace: credNS, Key: "clientSecret"},
				}}},
			Issuance: is,
		}}
	if err := k8s.Create(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), conn) })
	return conn.Name
}

// named gives a VaultCertificate another name and Secret, so several can live in one namespace.
func named(name string) func(*vaultcertv1.VaultCertificate) {
	return func(vc *vaultcertv1.VaultCertificate) { vc.Name, vc.Spec.SecretName = name, name+"-tls" }
}

// withAnnotation sets an annotation at creation.
func withAnnotation(key, value string) func(*vaultcertv1.VaultCertificate) {
	return func(vc *vaultcertv1.VaultCertificate) {
		if vc.Annotations == nil {
			vc.Annotations = map[string]string{}
		}
		vc.Annotations[key] = value
	}
}

// TestIssuanceLongValidityIsNotRenewedEveryPoll: a five-year certificate renewing at 80 % is renewed after
// four years, not on every poll. The renewal time used to overflow from about 44 months at 80 %, so each new
// version looked overdue and vaultcert asked Key Vault for another one.
func TestIssuanceLongValidityIsNotRenewedEveryPoll(t *testing.T) {
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	name := uniqueName("issue-long")
	pct := int32(80)
	issuedCertificate(t, ns, name, vaultcertv1.Issuance{DNSNames: []string{"long.example.com"}, KeyType: "EC",
		ValidityMonths: 60, Renewal: &vaultcertv1.Renewal{LifetimePercentage: &pct}})
	waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	waitSecretVersion(t, ns, "web-tls", latestVersion(t, name).Version)
	for i := 0; i < 3; i++ {
		reconciled(t, ns, "web", name)
	}
	if n := creates(name); n != 1 {
		t.Fatalf("Key Vault received %d creates for a certificate valid for five years, want 1", n)
	}
	vc := waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	leaf := leafOf(t, ns, "web-tls")
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	want := leaf.NotBefore.Add(life / 100 * 80)
	if got := vc.Status.RenewalTime; got == nil || got.Time.Sub(want).Abs() > time.Minute {
		t.Errorf("status.renewalTime = %v, want %v (80 %% of five years)", got, want)
	}
}

// TestIssuanceDailyLimitStopsALoop: an issuer whose certificates arrive already past their renewal time makes
// every version look overdue. vaultcert requests at most five versions a day, then says so (Issuing=False
// IssuanceFailed with the count, an event, the Ready message) and requests nothing more, even after a
// restart, until the renew annotation changes.
func TestIssuanceDailyLimitStopsALoop(t *testing.T) {
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	name := uniqueName("issue-loop")
	// 27 days into a one-month lifetime: past the 80 % AutoRenew point and the day of grace, still valid.
	vault.SetIssueBackdate(name, 27*24*time.Hour)
	t.Cleanup(func() { vault.SetIssueBackdate(name, 0) })
	issuedCertificate(t, ns, name, vaultcertv1.Issuance{DNSNames: []string{"loop.example.com"}, KeyType: "EC", ValidityMonths: 1})

	limited, issuing := waitCondition(t, ns, "web", vaultcertv1.ConditionIssuing, metav1.ConditionFalse, vaultcertv1.ReasonIssuanceFailed)
	wantMessage(t, issuing.Message, "requested 5 in the last 24 hours", "daily limit is 5", vaultcertv1.AnnotationRenew, "due for renewal")
	if st := limited.Status.Issuance; st == nil || st.LimitedAtGeneration != limited.Generation {
		t.Errorf("status.issuance.limitedAtGeneration should record generation %d, got %+v", limited.Generation, st)
	}
	if n := creates(name); n != 5 {
		t.Fatalf("Key Vault received %d creates, want 5 (the daily limit)", n)
	}
	waitEvent(t, ns, vaultcertv1.ReasonIssuanceFailed, "requested 5 in the last 24 hours")
	// The Secret still follows Key Vault, and Ready says issuance stopped.
	vc := waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	wantMessage(t, readyMessage(vc), "stopped requesting new versions")
	waitSecretVersion(t, ns, "web-tls", latestVersion(t, name).Version)

	for i := 0; i < 3; i++ {
		reconciled(t, ns, "web", name)
	}
	if n := creates(name); n != 5 {
		t.Fatalf("creates = %d after more reconciles, want still 5", n)
	}

	// A restarted controller has no memory and the status may have lost the record: at its next look at
	// Key Vault (here a refresh request) the count comes from the versions' tags, and still nothing is requested.
	clearIssuing(t, ns, "web")
	refresh(t, ns, "web")
	fresh := &controllers.VaultCertificateReconciler{
		Client: k8s, APIReader: k8s, Recorder: events.NewFakeRecorder(100),
		Factory: keyvault.NewFactory(keyvault.FactoryOptions{}), TerminalRetry: 2 * time.Second,
		HostPolicy: loopbackHostPolicy(), IssuancePollInterval: 100 * time.Millisecond,
	}
	req := ctrl.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: "web"}}
	for i := 0; i < 3; i++ {
		if _, err := fresh.Reconcile(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	if n := creates(name); n != 5 {
		t.Fatalf("a restarted controller requested more versions: creates = %d, want 5", n)
	}
	_, issuing = waitCondition(t, ns, "web", vaultcertv1.ConditionIssuing, metav1.ConditionFalse, vaultcertv1.ReasonIssuanceFailed)
	wantMessage(t, issuing.Message, "requested 5 in the last 24 hours")

	// A new renew annotation value is a person asking: exactly one more version, then the limit holds again.
	annotate(t, ns, "web", vaultcertv1.AnnotationRenew, "after-the-limit")
	eventually(t, "the requested renewal", func() (bool, string) { return creates(name) == 6, fmt.Sprint(creates(name), " creates") })
	_, issuing = waitCondition(t, ns, "web", vaultcertv1.ConditionIssuing, metav1.ConditionFalse, vaultcertv1.ReasonIssuanceFailed)
	wantMessage(t, issuing.Message, "requested 6 in the last 24 hours")
	reconciled(t, ns, "web", name)
	if n := creates(name); n != 6 {
		t.Fatalf("creates = %d after the renewal, want 6", n)
	}
}

// clearIssuing removes the Issuing condition and status.issuance, as a status lost in a restore would.
func clearIssuing(t *testing.T, ns, name string) {
	t.Helper()
	vc := getCert(t, ns, name)
	patch := client.MergeFrom(vc.DeepCopy())
	meta.RemoveStatusCondition(&vc.Status.Conditions, vaultcertv1.ConditionIssuing)
	vc.Status.Issuance = nil
	if err := k8s.Status().Patch(context.Background(), vc, patch); err != nil {
		t.Fatal(err)
	}
}

// TestIssuanceOneOwnerPerCertificate: two VaultCertificates name one Key Vault certificate with different
// issuance specs. The first creates it and is recorded as its owner in Key Vault's tags; the second syncs it,
// says who owns it, and never changes its policy or requests versions, so the two never take turns.
func TestIssuanceOneOwnerPerCertificate(t *testing.T) {
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	name := uniqueName("issue-owner")
	issuedCertificate(t, ns, name, vaultcertv1.Issuance{DNSNames: []string{"a.example.com"}, KeyType: "EC", ValidityMonths: 12})
	waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	v1 := latestVersion(t, name)
	waitSecretVersion(t, ns, "web-tls", v1.Version)
	owner := getCert(t, ns, "web")
	tags := kvTags(t, name)
	for k, want := range map[string]string{"vaultcert.io-namespace": ns, "vaultcert.io-name": "web", "vaultcert.io-uid": string(owner.UID)} {
		if tags[k] != want {
			t.Errorf("Key Vault tag %s = %q, want %q (all tags: %v)", k, tags[k], want, tags)
		}
	}

	issuedCertificate(t, ns, name, vaultcertv1.Issuance{DNSNames: []string{"b.example.com"}, KeyType: "EC", ValidityMonths: 3}, named("other"))
	vc := waitReady(t, ns, "other", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	wantMessage(t, readyMessage(vc), "managed by VaultCertificate "+ns+"/web", "does not apply its spec.issuance")
	waitSecretVersion(t, ns, "other-tls", v1.Version)
	waitEvent(t, ns, "NotOwner", ns+"/web")
	for i := 0; i < 3; i++ {
		reconciled(t, ns, "other", name)
		reconciled(t, ns, "web", name)
	}
	if n, p := creates(name), policyPatches(name); n != 1 || p != 0 {
		t.Fatalf("creates = %d, policy updates = %d; the second VaultCertificate must change nothing (want 1 and 0)", n, p)
	}
	pol, err := sdkClient(t).GetCertificatePolicy(context.Background(), name, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sans := pol.X509CertificateProperties.SubjectAlternativeNames; sans == nil || len(sans.DNSNames) != 1 || *sans.DNSNames[0] != "a.example.com" ||
		*pol.X509CertificateProperties.ValidityInMonths != 12 {
		t.Errorf("Key Vault's policy was changed by the VaultCertificate that does not own it: %+v", pol.X509CertificateProperties)
	}

	// The owner keeps control, and the other follows its new version.
	updateIssuance(t, ns, "web", func(is *vaultcertv1.Issuance) { is.DNSNames = append(is.DNSNames, "c.example.com") })
	eventually(t, "the owner's new version", func() (bool, string) { return creates(name) == 2, fmt.Sprint(creates(name), " creates") })
	eventually(t, "a version other than the first", func() (bool, string) {
		v := latestVersion(t, name)
		return v.Version != v1.Version && !v.Pending, v.Version
	})
	v2 := latestVersion(t, name)
	waitSecretVersion(t, ns, "web-tls", v2.Version)
	reconciled(t, ns, "other", name)
	waitSecretVersion(t, ns, "other-tls", v2.Version)
	if n := creates(name); n != 2 {
		t.Errorf("creates = %d, want 2", n)
	}
}

// TestIssuanceThroughClusterConnectionNeedsOptIn: a shared vault is read-only for the namespaces it admits
// unless its ClusterVaultConnection opts in, may limit each namespace to "<namespace>-" names, and one
// namespace never changes a certificate another namespace created.
func TestIssuanceThroughClusterConnectionNeedsOptIn(t *testing.T) {
	ns := newNamespace(t, nil)
	closed := issuanceClusterConnection(t, nil)

	// No opt-in: a missing certificate is not created, and the message says how to opt in.
	missing := ns + "-missing"
	issuedCertificate(t, ns, missing, vaultcertv1.Issuance{DNSNames: []string{"missing.example.com"}, KeyType: "EC"}, viaCluster(closed))
	vc := waitReady(t, ns, "web", metav1.ConditionFalse, vaultcertv1.ReasonConnectionNotAllowed)
	wantMessage(t, readyMessage(vc), closed, "spec.issuance.enabled: true", missing)
	// An existing certificate is still read into the Secret, and never changed.
	existing := seed(t, "cvc-existing")
	issuedCertificate(t, ns, existing, vaultcertv1.Issuance{DNSNames: []string{"other.example.com"}, KeyType: "EC", ValidityMonths: 2},
		viaCluster(closed), named("existing"))
	vc = waitReady(t, ns, "existing", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	wantMessage(t, readyMessage(vc), "spec.issuance is not applied", "spec.issuance.enabled: true")
	if getSecret(t, ns, "existing-tls") == nil {
		t.Error("the existing certificate was not synced")
	}
	reconciled(t, ns, "web", missing)
	for _, n := range []string{missing, existing} {
		if c, p, u := creates(n), policyPatches(n), vault.CountFor(fakevault.OpUpdateCertificate, n); c+p+u != 0 {
			t.Errorf("%s: %d creates, %d policy updates, %d tag updates through a connection that does not allow issuance", n, c, p, u)
		}
	}

	// Opted in with requireNamespacePrefix: only "<namespace>-" names may be issued.
	prefixed := issuanceClusterConnection(t, &vaultcertv1.ClusterIssuance{Enabled: true, RequireNamespacePrefix: true})
	wrong := uniqueName("noprefix")
	issuedCertificate(t, ns, wrong, vaultcertv1.Issuance{DNSNames: []string{"wrong.example.com"}, KeyType: "EC"}, viaCluster(prefixed), named("wrong"))
	vc = waitReady(t, ns, "wrong", metav1.ConditionFalse, vaultcertv1.ReasonConnectionNotAllowed)
	wantMessage(t, readyMessage(vc), prefixed, `"`+ns+`-"`, "requireNamespacePrefix")
	right := ns + "-" + uniqueName("ok")
	issuedCertificate(t, ns, right, vaultcertv1.Issuance{DNSNames: []string{"right.example.com"}, KeyType: "EC"}, viaCluster(prefixed), named("right"))
	waitReady(t, ns, "right", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	if creates(wrong) != 0 || creates(right) != 1 {
		t.Errorf("creates: %d for %s (want 0), %d for %s (want 1)", creates(wrong), wrong, creates(right), right)
	}
	// A name under a longer namespace's prefix ("<ns>-a-..." belongs to namespace "<ns>-a") is refused too.
	longer := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns + "-a"}}
	if err := k8s.Create(context.Background(), longer); err != nil {
		t.Fatal(err)
	}
	theirs := ns + "-a-" + uniqueName("theirs")
	issuedCertificate(t, ns, theirs, vaultcertv1.Issuance{DNSNames: []string{"theirs.example.com"}, KeyType: "EC"}, viaCluster(prefixed), named("theirs"))
	vc = waitReady(t, ns, "theirs", metav1.ConditionFalse, vaultcertv1.ReasonConnectionNotAllowed)
	wantMessage(t, readyMessage(vc), `namespace "`+ns+`-a"`)
	if n := creates(theirs); n != 0 {
		t.Errorf("namespace %s created %d versions of a name under namespace %s-a", ns, n, ns)
	}

	// Opted in without a prefix: another namespace naming the same certificate only syncs it.
	shared := issuanceClusterConnection(t, &vaultcertv1.ClusterIssuance{Enabled: true})
	name := uniqueName("shared")
	issuedCertificate(t, ns, name, vaultcertv1.Issuance{DNSNames: []string{"tenant-a.example.com"}, KeyType: "EC"}, viaCluster(shared), named("tenant"))
	waitReady(t, ns, "tenant", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	other := newNamespace(t, nil)
	issuedCertificate(t, other, name, vaultcertv1.Issuance{DNSNames: []string{"tenant-b.example.com"}, KeyType: "EC"}, viaCluster(shared))
	vc = waitReady(t, other, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	wantMessage(t, readyMessage(vc), "managed by VaultCertificate "+ns+"/tenant")
	reconciled(t, other, "web", name)
	if c, p := creates(name), policyPatches(name); c != 1 || p != 0 {
		t.Errorf("another namespace changed the certificate: %d creates (want 1), %d policy updates (want 0)", c, p)
	}
}

// TestIssuanceAdoptsOnlyUnownedCertificatesWhenAsked: a certificate created outside vaultcert is synced but
// not changed until the VaultCertificate is annotated vaultcert.io/adopt=true; a certificate another
// cluster's vaultcert owns is never taken, even when asked.
func TestIssuanceAdoptsOnlyUnownedCertificatesWhenAsked(t *testing.T) {
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	name := uniqueName("adopt")
	dns := name + ".example.com"
	seeded, err := vault.Seed(fakevault.CertSpec{Name: name, KeyType: "EC", DNSNames: []string{dns}})
	if err != nil {
		t.Fatal(err)
	}
	issuedCertificate(t, ns, name, vaultcertv1.Issuance{Subject: "CN=" + dns, DNSNames: []string{dns, "www." + dns}, KeyType: "EC"})
	vc := waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	wantMessage(t, readyMessage(vc), "not created by vaultcert", "vaultcert.io/adopt=true")
	waitSecretVersion(t, ns, "web-tls", seeded.Version)
	reconciled(t, ns, "web", name)
	if c, p := creates(name), policyPatches(name); c+p != 0 {
		t.Fatalf("an unowned certificate was changed without adoption: %d creates, %d policy updates", c, p)
	}

	// As documented: kubectl annotate vcert web vaultcert.io/adopt=true vaultcert.io/refresh="$(date +%s)" --overwrite
	annotate(t, ns, "web", "vaultcert.io/adopt", "true")
	refresh(t, ns, "web")
	waitEvent(t, ns, "Adopted", name)
	eventually(t, "a version with www."+dns+" in the Secret", func() (bool, string) {
		s := getSecret(t, ns, "web-tls")
		if s == nil || s.Annotations[vaultcertv1.AnnotationVersion] == seeded.Version {
			return false, "still the seeded version"
		}
		return len(leafOf(t, ns, "web-tls").DNSNames) == 2, fmt.Sprint(leafOf(t, ns, "web-tls").DNSNames)
	})
	if tags := kvTags(t, name); tags["vaultcert.io-namespace"] != ns || tags["vaultcert.io-name"] != "web" {
		t.Errorf("the adopted certificate's tags do not name its owner: %v", tags)
	}

	// Another cluster's certificate (same namespace and name there): read-only, even with the annotation.
	foreign := uniqueName("foreign")
	if _, err := vault.Seed(fakevault.CertSpec{Name: foreign, KeyType: "EC", Tags: map[string]string{
		"vaultcert.io-cluster": "cluster-elsewhere", "vaultcert.io-namespace": ns, "vaultcert.io-name": "theirs"}}); err != nil {
		t.Fatal(err)
	}
	issuedCertificate(t, ns, foreign, vaultcertv1.Issuance{DNSNames: []string{"mine.example.com"}, KeyType: "EC"},
		named("theirs"), withAnnotation("vaultcert.io/adopt", "true"))
	vc = waitReady(t, ns, "theirs", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	wantMessage(t, readyMessage(vc), "another cluster", "cluster-elsewhere")
	reconciled(t, ns, "theirs", foreign)
	if c, p, u := creates(foreign), policyPatches(foreign), vault.CountFor(fakevault.OpUpdateCertificate, foreign); c+p+u != 0 {
		t.Errorf("another cluster's certificate was changed: %d creates, %d policy updates, %d tag updates", c, p, u)
	}
}

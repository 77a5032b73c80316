package controllers_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azcertificates"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/controllers"
	"github.com/vaultcert/vaultcert/internal/fakevault"
	"github.com/vaultcert/vaultcert/internal/fakevault/issuer"
	"github.com/vaultcert/vaultcert/internal/keyvault"
)

// issuedCertificate creates a VaultCertificate that creates certName in Key Vault from is.
func issuedCertificate(t *testing.T, ns, certName string, is vaultcertv1.Issuance, mutate ...func(*vaultcertv1.VaultCertificate)) {
	t.Helper()
	newCertificate(t, ns, certName, append([]func(*vaultcertv1.VaultCertificate){func(vc *vaultcertv1.VaultCertificate) {
		vc.Spec.Issuance = &is
	}}, mutate...)...)
}

// creates is how many certificate creates Key Vault received for name.
func creates(name string) int { return vault.CountFor(fakevault.OpCreateCertificate, name) }

// waitCondition waits until a condition has the given status and reason for the current generation.
func waitCondition(t *testing.T, ns, name, condType string, status metav1.ConditionStatus, reason string) (*vaultcertv1.VaultCertificate, metav1.Condition) {
	t.Helper()
	var vc *vaultcertv1.VaultCertificate
	var got metav1.Condition
	eventually(t, fmt.Sprintf("%s/%s %s=%s %s", ns, name, condType, status, reason), func() (bool, string) {
		vc = getCert(t, ns, name)
		c := meta.FindStatusCondition(vc.Status.Conditions, condType)
		if c == nil {
			return false, "no " + condType + " condition"
		}
		got = *c
		return c.Status == status && c.Reason == reason && c.ObservedGeneration == vc.Generation,
			fmt.Sprintf("%s=%s %s: %s", condType, c.Status, c.Reason, c.Message)
	})
	return vc, got
}

// waitEvent waits for an event on the VaultCertificate with that reason whose note contains text.
func waitEvent(t *testing.T, ns, reason, text string) {
	t.Helper()
	eventually(t, fmt.Sprintf("event %s %q in %s", reason, text, ns), func() (bool, string) {
		var list eventsv1.EventList
		if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range list.Items {
			if e.Reason == reason && strings.Contains(e.Note, text) {
				return true, ""
			}
			seen = append(seen, e.Reason+": "+e.Note)
		}
		return false, strings.Join(seen, " | ")
	})
}

// setPendingDuration makes Key Vault operations stay inProgress for d during the test.
func setPendingDuration(t *testing.T, d time.Duration) {
	t.Helper()
	vault.SetPendingDuration(d)
	t.Cleanup(func() { vault.SetPendingDuration(0) })
}

// annotate sets an annotation on the VaultCertificate, as kubectl annotate --overwrite would.
func annotate(t *testing.T, ns, name, key, value string) {
	t.Helper()
	vc := getCert(t, ns, name)
	patch := client.MergeFrom(vc.DeepCopy())
	if vc.Annotations == nil {
		vc.Annotations = map[string]string{}
	}
	vc.Annotations[key] = value
	if err := k8s.Patch(context.Background(), vc, patch); err != nil {
		t.Fatal(err)
	}
}

// updateIssuance edits spec.issuance.
func updateIssuance(t *testing.T, ns, name string, edit func(*vaultcertv1.Issuance)) {
	t.Helper()
	vc := getCert(t, ns, name)
	patch := client.MergeFrom(vc.DeepCopy())
	edit(vc.Spec.Issuance)
	if err := k8s.Patch(context.Background(), vc, patch); err != nil {
		t.Fatal(err)
	}
}

// leafOf returns the first certificate of the Secret's tls.crt.
func leafOf(t *testing.T, ns, secret string) *x509.Certificate {
	t.Helper()
	s := getSecret(t, ns, secret)
	if s == nil {
		t.Fatalf("Secret %s/%s does not exist", ns, secret)
	}
	certs := pemCerts(t, s.Data["tls.crt"])
	if len(certs) == 0 {
		t.Fatal("tls.crt holds no certificate")
	}
	return certs[0]
}

// latestVersion is Key Vault's latest version of name.
func latestVersion(t *testing.T, name string) fakevault.Version {
	t.Helper()
	v, err := vault.Latest(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestIssuanceCreatesRSACertificate(t *testing.T) {
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	name := uniqueName("issue-rsa")
	pct := int32(70)
	issuedCertificate(t, ns, name, vaultcertv1.Issuance{
		Subject:           "CN=app.example.com, O=Example",
		DNSNames:          []string{"app.example.com", "www.app.example.com"},
		IPAddresses:       []string{"10.0.0.7"},
		KeySize:           3072,
		ValidityMonths:    6,
		ExtendedKeyUsages: []string{"1.3.6.1.5.5.7.3.1"},
		Renewal:           &vaultcertv1.Renewal{LifetimePercentage: &pct},
	})
	vc := waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	v := latestVersion(t, name)
	s := waitSecretVersion(t, ns, "web-tls", v.Version)
	assertServes(t, s, "www.app.example.com")

	leaf := leafOf(t, ns, "web-tls")
	if k, ok := leaf.PublicKey.(*rsa.PublicKey); !ok || k.N.BitLen() != 3072 {
		t.Errorf("leaf key = %T, want RSA 3072", leaf.PublicKey)
	}
	if leaf.Subject.CommonName != "app.example.com" || len(leaf.Subject.Organization) != 1 || leaf.Subject.Organization[0] != "Example" {
		t.Errorf("leaf subject = %s", leaf.Subject)
	}
	if len(leaf.IPAddresses) != 1 || leaf.IPAddresses[0].String() != "10.0.0.7" {
		t.Errorf("leaf IP SANs = %v", leaf.IPAddresses)
	}
	if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("leaf EKUs = %v, want serverAuth only", leaf.ExtKeyUsage)
	}
	if months := leaf.NotAfter.Sub(leaf.NotBefore).Hours() / 24 / 30.4; months < 5.5 || months > 6.5 {
		t.Errorf("leaf lifetime is %.1f months, want 6", months)
	}
	// renewalTime follows the policy's AutoRenew action (70 %), not the default two thirds.
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	want := leaf.NotBefore.Add(life * 70 / 100)
	if got := vc.Status.RenewalTime; got == nil || got.Time.Sub(want).Abs() > time.Minute {
		t.Errorf("status.renewalTime = %v, want %v (70 %% of the lifetime)", got, want)
	}
	if n := creates(name); n != 1 {
		t.Errorf("Key Vault received %d creates, want 1", n)
	}
	if meta.FindStatusCondition(vc.Status.Conditions, vaultcertv1.ConditionIssuing) != nil {
		t.Errorf("Issuing condition should be gone once the certificate is issued")
	}
	waitEvent(t, ns, vaultcertv1.ReasonIssuing, "created certificate")
}

func TestIssuanceCreatesECCertificateInPEM(t *testing.T) {
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	name := uniqueName("issue-ec")
	issuedCertificate(t, ns, name, vaultcertv1.Issuance{
		DNSNames:    []string{"ec.example.com"},
		KeyType:     "EC",
		Curve:       "P-384",
		ContentType: "PEM",
	})
	waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	s := waitSecretVersion(t, ns, "web-tls", latestVersion(t, name).Version)
	assertServes(t, s, "ec.example.com")
	leaf := leafOf(t, ns, "web-tls")
	if k, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P384() {
		t.Errorf("leaf key = %T, want ECDSA P-384", leaf.PublicKey)
	}
	if n := creates(name); n != 1 {
		t.Errorf("Key Vault received %d creates, want 1", n)
	}
}

func TestIssuancePendingThenCompletedCreatesOnce(t *testing.T) {
	setPendingDuration(t, 2500*time.Millisecond)
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	name := uniqueName("issue-pending")
	issuedCertificate(t, ns, name, vaultcertv1.Issuance{DNSNames: []string{"pending.example.com"}})

	_, issuing := waitCondition(t, ns, "web", vaultcertv1.ConditionIssuing, metav1.ConditionTrue, vaultcertv1.ReasonIssuing)
	if !strings.Contains(issuing.Message, "Certificate request is in progress") {
		t.Errorf("Issuing message should carry Key Vault's status details, got %q", issuing.Message)
	}
	waitReady(t, ns, "web", metav1.ConditionFalse, vaultcertv1.ReasonIssuing)
	if getSecret(t, ns, "web-tls") != nil {
		t.Fatal("no Secret may exist before the certificate is issued")
	}

	// A controller that restarts while the operation is pending: a fresh reconciler (new Key Vault client
	// factory, no memory) reconciles the same object many times and must follow the pending operation.
	fresh := &controllers.VaultCertificateReconciler{
		Client: k8s, APIReader: k8s, Recorder: events.NewFakeRecorder(100),
		Factory: keyvault.NewFactory(keyvault.FactoryOptions{}), TerminalRetry: 2 * time.Second,
		HostPolicy: loopbackHostPolicy(), IssuancePollInterval: 100 * time.Millisecond,
	}
	req := ctrl.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: "web"}}
	for i := 0; i < 5; i++ {
		res, err := fresh.Reconcile(context.Background(), req)
		if err != nil {
			t.Fatalf("reconcile while pending: %v", err)
		}
		if res.RequeueAfter <= 0 || res.RequeueAfter > time.Second {
			t.Errorf("a pending operation should be polled by a short requeue, got %v", res.RequeueAfter)
		}
	}
	if n := creates(name); n != 1 {
		t.Fatalf("Key Vault received %d creates while the operation was pending, want exactly 1", n)
	}

	vc := waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	assertServes(t, waitSecretVersion(t, ns, "web-tls", vc.Status.Version), "pending.example.com")
	if c := meta.FindStatusCondition(vc.Status.Conditions, vaultcertv1.ConditionIssuing); c != nil {
		t.Errorf("Issuing should be gone after completion, got %s %s", c.Status, c.Reason)
	}
	if n := creates(name); n != 1 {
		t.Errorf("Key Vault received %d creates in all, want 1", n)
	}
	if polls := vault.CountFor(fakevault.OpGetCertificateOperation, name); polls < 2 {
		t.Errorf("the pending operation was polled %d times; it should be followed by requeue", polls)
	}
}

func TestIssuanceFailureIsReportedAndRetried(t *testing.T) {
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	name := uniqueName("issue-fail")
	vault.FailNextOperation(name, "CertificateIssuanceFailed", "The issuer refused the request: domain not validated")
	issuedCertificate(t, ns, name, vaultcertv1.Issuance{DNSNames: []string{"fail.example.com"}})

	failed, ready := waitCondition(t, ns, "web", vaultcertv1.ConditionReady, metav1.ConditionFalse, vaultcertv1.ReasonIssuanceFailed)
	if !strings.Contains(ready.Message, "domain not validated") || !strings.Contains(ready.Message, "CertificateIssuanceFailed") {
		t.Errorf("the condition should carry Key Vault's error, got %q", ready.Message)
	}
	// The backoff lives in the object, so a restarted controller or another replica keeps it.
	if st := failed.Status.Issuance; st == nil || st.Failures < 1 || st.FailedOperation == "" || st.RetryAt == nil {
		t.Errorf("status.issuance should record the failed operation and when to retry, got %+v", st)
	}
	waitEvent(t, ns, vaultcertv1.ReasonIssuanceFailed, "domain not validated")

	// Retried with backoff: the second create succeeds, and the failure is history.
	if vc := waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced); vc.Status.Issuance != nil {
		t.Errorf("a successful issuance should clear status.issuance, got %+v", vc.Status.Issuance)
	}
	if n := creates(name); n != 2 {
		t.Errorf("Key Vault received %d creates, want 2 (the failed one and one retry)", n)
	}
}

func TestIssuanceUnknownIssuerShowsCSRAndCompletesAfterMerge(t *testing.T) {
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	name := uniqueName("issue-csr")
	issuedCertificate(t, ns, name, vaultcertv1.Issuance{IssuerName: "Unknown", Subject: "CN=csr.example.com", DNSNames: []string{"csr.example.com"}})

	vc, issuing := waitCondition(t, ns, "web", vaultcertv1.ConditionIssuing, metav1.ConditionTrue, vaultcertv1.ReasonIssuing)
	if !strings.Contains(issuing.Message, "status.csr") || !strings.Contains(issuing.Message, "az keyvault certificate pending merge") {
		t.Errorf("the message should say to sign status.csr and merge it, got %q", issuing.Message)
	}
	block, _ := pem.Decode([]byte(vc.Status.CSR))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		t.Fatalf("status.csr is not a PEM CSR: %q", vc.Status.CSR)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil || csr.Subject.CommonName != "csr.example.com" {
		t.Fatalf("status.csr: %v, subject %v", err, csr)
	}

	// The user signs the CSR with their CA and merges the chain, as az keyvault certificate pending merge would.
	ca, err := issuer.NewCA("merge-test")
	if err != nil {
		t.Fatal(err)
	}
	chain, err := ca.Issue(csr.PublicKey, issuer.Leaf{Subject: csr.Subject, DNSNames: csr.DNSNames,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(90 * 24 * time.Hour)}, 3)
	if err != nil {
		t.Fatal(err)
	}
	var x5c [][]byte
	for _, c := range chain {
		x5c = append(x5c, c.Raw)
	}
	if _, err := sdkClient(t).MergeCertificate(context.Background(), name,
		azcertificates.MergeCertificateParameters{X509Certificates: x5c}, nil); err != nil {
		t.Fatal(err)
	}

	vc = waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	if vc.Status.CSR != "" {
		t.Errorf("status.csr should be cleared after the merge")
	}
	assertServes(t, getSecret(t, ns, "web-tls"), "csr.example.com")
}

// sdkClient is an azcertificates client on the fake vault, for steps a user does outside vaultcert.
func sdkClient(t *testing.T) *azcertificates.Client {
	t.Helper()
	transport := vault.HTTPClient()
	cred, err := azidentity.NewClientSecretCredential(vault.TenantID(), testClientID, testClientSecret,
		&azidentity.ClientSecretCredentialOptions{
			ClientOptions: azcore.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: vault.AuthorityHost()},
				Transport: transport},
			DisableInstanceDiscovery: true,
		})
	if err != nil {
		t.Fatal(err)
	}
	c, err := azcertificates.NewClient(vault.URL(), cred, &azcertificates.ClientOptions{
		ClientOptions: azcore.ClientOptions{Transport: transport}, DisableChallengeResourceVerification: true})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestIssuancePolicyDrift(t *testing.T) {
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	name := uniqueName("issue-drift")
	issuedCertificate(t, ns, name, vaultcertv1.Issuance{DNSNames: []string{"a.example.com"}, ValidityMonths: 12})
	waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	v1 := latestVersion(t, name)
	waitSecretVersion(t, ns, "web-tls", v1.Version)

	// A change that only affects future versions: the policy is patched, no new version.
	patches := vault.CountFor(fakevault.OpUpdateCertificatePolicy, name)
	updateIssuance(t, ns, "web", func(is *vaultcertv1.Issuance) { is.ValidityMonths = 3 })
	waitEvent(t, ns, "PolicyUpdated", "validityMonths")
	if n := vault.CountFor(fakevault.OpUpdateCertificatePolicy, name); n != patches+1 {
		t.Errorf("policy PATCHes = %d, want %d", n, patches+1)
	}
	waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	if n := creates(name); n != 1 {
		t.Errorf("a validity change must not request a new version (creates = %d)", n)
	}

	// A change to the certificate itself (a new DNS name): a new version reaches the Secret.
	updateIssuance(t, ns, "web", func(is *vaultcertv1.Issuance) { is.DNSNames = append(is.DNSNames, "b.example.com") })
	waitEvent(t, ns, vaultcertv1.ReasonIssuing, "dnsNames")
	eventually(t, "a new version with b.example.com in the Secret", func() (bool, string) {
		s := getSecret(t, ns, "web-tls")
		if s == nil || s.Annotations[vaultcertv1.AnnotationVersion] == v1.Version {
			return false, "still the first version"
		}
		leaf := pemCerts(t, s.Data["tls.crt"])[0]
		return len(leaf.DNSNames) == 2, fmt.Sprint(leaf.DNSNames)
	})
	assertServes(t, getSecret(t, ns, "web-tls"), "b.example.com")
	leaf := leafOf(t, ns, "web-tls")
	if months := leaf.NotAfter.Sub(leaf.NotBefore).Hours() / 24 / 30.4; months > 3.5 {
		t.Errorf("the new version should follow the patched validity (3 months), got %.1f", months)
	}
	if n := creates(name); n != 2 {
		t.Errorf("creates = %d, want 2", n)
	}
	// Settled: more reconciles request nothing more.
	refresh(t, ns, "web")
	waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	if n := creates(name); n != 2 {
		t.Errorf("creates = %d after the policy settled, want 2", n)
	}
}

func TestManualRenewOncePerValue(t *testing.T) {
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	name := uniqueName("issue-renew")
	issuedCertificate(t, ns, name, vaultcertv1.Issuance{DNSNames: []string{"renew.example.com"}})
	waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	v1 := latestVersion(t, name)
	waitSecretVersion(t, ns, "web-tls", v1.Version)

	annotate(t, ns, "web", vaultcertv1.AnnotationRenew, "first")
	eventually(t, "a renewed version in the Secret", func() (bool, string) {
		s := getSecret(t, ns, "web-tls")
		return s != nil && s.Annotations[vaultcertv1.AnnotationVersion] != v1.Version, "still " + v1.Version
	})
	vc := waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	if vc.Status.LastRenewRequest != "first" {
		t.Errorf("status.lastRenewRequest = %q, want first", vc.Status.LastRenewRequest)
	}
	if n := creates(name); n != 2 {
		t.Fatalf("creates = %d after one renewal request, want 2", n)
	}

	// The same value again, and unrelated reconciles, request nothing.
	for i := 0; i < 3; i++ {
		refresh(t, ns, "web")
	}
	annotate(t, ns, "web", vaultcertv1.AnnotationRenew, "first")
	waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	if n := creates(name); n != 2 {
		t.Fatalf("creates = %d after repeating the same value, want 2", n)
	}

	v2 := latestVersion(t, name)
	annotate(t, ns, "web", vaultcertv1.AnnotationRenew, "second")
	eventually(t, "a second renewal", func() (bool, string) {
		s := getSecret(t, ns, "web-tls")
		have := s.Annotations[vaultcertv1.AnnotationVersion]
		return have != v2.Version && have != v1.Version, "Secret at " + have
	})
	if n := creates(name); n != 3 {
		t.Errorf("creates = %d after a second value, want 3", n)
	}
	waitEvent(t, ns, vaultcertv1.ReasonIssuing, `vaultcert.io/renew="second"`)
}

func TestSoftDeletedNameIsReportedThenRecovered(t *testing.T) {
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	name := uniqueName("issue-deleted")
	dns := name + ".example.com"
	seeded, err := vault.Seed(fakevault.CertSpec{Name: name, DNSNames: []string{dns}})
	if err != nil {
		t.Fatal(err)
	}
	if err := vault.Delete(name); err != nil {
		t.Fatal(err)
	}
	issuedCertificate(t, ns, name, vaultcertv1.Issuance{Subject: "CN=" + dns, DNSNames: []string{dns}})

	_, ready := waitCondition(t, ns, "web", vaultcertv1.ConditionReady, metav1.ConditionFalse, vaultcertv1.ReasonCertificateSoftDeleted)
	for _, want := range []string{"recover", "purge", "recoverSoftDeleted"} {
		if !strings.Contains(ready.Message, want) {
			t.Errorf("the message should name %q, got %q", want, ready.Message)
		}
	}
	if n := vault.CountFor(fakevault.OpPurgeDeletedCertificate, name) + vault.CountFor(fakevault.OpRecoverDeletedCertificate, name); n != 0 {
		t.Fatalf("vaultcert must neither purge nor recover without recoverSoftDeleted (%d calls)", n)
	}

	updateIssuance(t, ns, "web", func(is *vaultcertv1.Issuance) { is.RecoverSoftDeleted = true })
	waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	s := waitSecretVersion(t, ns, "web-tls", seeded.Version)
	assertServes(t, s, dns)
	if n := vault.CountFor(fakevault.OpRecoverDeletedCertificate, name); n != 1 {
		t.Errorf("recoveries = %d, want 1", n)
	}
	if n := vault.CountFor(fakevault.OpPurgeDeletedCertificate, name) + vault.CountFor(fakevault.OpDeleteCertificate, name); n != 0 {
		t.Errorf("vaultcert purged or deleted in Key Vault (%d calls)", n)
	}
	waitEvent(t, ns, "Recovered", "recovered")
}

func TestAutoRenewVersionReachesSecret(t *testing.T) {
	// Issue "eight hours ago" with AutoRenew at 1 % of a one-month lifetime (about 7 h 20 min): by now the
	// renewal is due, and Key Vault (not vaultcert) issues the new version.
	vaultClockOffset.Store(int64(-8 * time.Hour))
	t.Cleanup(func() { vaultClockOffset.Store(0) })
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	name := uniqueName("issue-autorenew")
	pct := int32(1)
	issuedCertificate(t, ns, name, vaultcertv1.Issuance{DNSNames: []string{"auto.example.com"}, ValidityMonths: 1,
		Renewal: &vaultcertv1.Renewal{LifetimePercentage: &pct}})
	vc := waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	v1 := latestVersion(t, name)
	waitSecretVersion(t, ns, "web-tls", v1.Version)
	if rt := vc.Status.RenewalTime; rt == nil || rt.Time.After(time.Now()) {
		t.Fatalf("status.renewalTime = %v: the 1 %% AutoRenew action should be due by now", rt)
	}

	vaultClockOffset.Store(0)
	if n := vault.AdvanceRenewals(); n < 1 {
		t.Fatalf("Key Vault renewed %d certificates, want at least 1", n)
	}
	v2 := latestVersion(t, name)
	if v2.Version == v1.Version {
		t.Fatal("AutoRenew produced no version")
	}
	refresh(t, ns, "web")
	s := waitSecretVersion(t, ns, "web-tls", v2.Version)
	assertServes(t, s, "auto.example.com")
	if n := creates(name); n != 1 {
		t.Errorf("creates = %d: the renewal was Key Vault's own, vaultcert should have created only the first version", n)
	}
}

func TestOverdueRenewalIsRequested(t *testing.T) {
	// A self-signed certificate issued 28 days ago for 30 days, with no AutoRenew action: its renewal time
	// (two thirds) is 8 days past and Key Vault produced nothing, so vaultcert requests a version.
	vaultClockOffset.Store(int64(-28 * 24 * time.Hour))
	name := uniqueName("issue-overdue")
	dns := name + ".example.com"
	old, err := vault.Seed(fakevault.CertSpec{Name: name, DNSNames: []string{dns}, Validity: 30 * 24 * time.Hour})
	vaultClockOffset.Store(0)
	if err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	// The certificate was not created by vaultcert: the annotation lets this VaultCertificate take it over.
	issuedCertificate(t, ns, name, vaultcertv1.Issuance{Subject: "CN=" + dns, DNSNames: []string{dns}, ValidityMonths: 1},
		func(vc *vaultcertv1.VaultCertificate) {
			vc.Annotations = map[string]string{"vaultcert.io/adopt": "true"}
		})

	waitEvent(t, ns, vaultcertv1.ReasonIssuing, "Key Vault has produced no new version")
	var have string
	eventually(t, "a fresh version in the Secret", func() (bool, string) {
		s := getSecret(t, ns, "web-tls")
		if s == nil {
			return false, "no Secret"
		}
		have = s.Annotations[vaultcertv1.AnnotationVersion]
		return have != "" && have != old.Version, "Secret at " + have
	})
	// The status is written after the Secret, at the end of the same reconcile.
	var vc *vaultcertv1.VaultCertificate
	eventually(t, "the status at the Secret's version", func() (bool, string) {
		vc = waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
		return vc.Status.Version == have, "status at " + vc.Status.Version
	})
	if !vc.Status.NotAfter.After(time.Now().Add(25 * 24 * time.Hour)) {
		t.Errorf("the Secret should hold the renewed certificate, expiring %v", vc.Status.NotAfter)
	}
	if n := creates(name); n != 1 {
		t.Errorf("creates = %d, want exactly one renewal", n)
	}
}

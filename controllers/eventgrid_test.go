package controllers_test

import (
	"net/url"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/fakevault"
)

// TestCertificateEventRotatesTheSecretAtOnce: a Key Vault certificate event (what the Event Grid webhook hands to
// the vault listing, see internal/eventgrid) brings the new version into the Secret at once, although the
// VaultCertificate's next refresh is an hour away and nobody annotated it. An event for another certificate
// changes nothing.
func TestCertificateEventRotatesTheSecretAtOnce(t *testing.T) {
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	cert, other := seed(t, "evented"), seed(t, "not-evented")
	newCertificate(t, ns, cert)
	newCertificate(t, ns, other, func(vc *vaultcertv1.VaultCertificate) { vc.Name, vc.Spec.SecretName = "other", "other-tls" })
	v1 := waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced).Status.Version
	o1 := waitReady(t, ns, "other", metav1.ConditionTrue, vaultcertv1.ReasonSynced).Status.Version
	u, err := url.Parse(vault.URL())
	if err != nil {
		t.Fatal(err)
	}
	v2, err := vault.Rotate(cert)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vault.Rotate(other); err != nil {
		t.Fatal(err)
	}
	secretReads, metadataReads := vault.CountFor(fakevault.OpGetSecret, cert), vault.CountFor(fakevault.OpGetCertificate, cert)
	// The reconcile that the Secret write triggered registered the VaultCertificate with its connection's listing.
	eventually(t, "the event to reach a VaultCertificate", func() (bool, string) {
		return changes.Notify(u.Host, "", cert, v2.Version) == 1, "not registered yet"
	})
	waitSecretVersion(t, ns, "web-tls", v2.Version)
	// The event said a new version exists: one call, the latest secret bundle (not the first sync's read of
	// seconds ago, which a shared read would still hold), and no metadata read.
	if n := vault.CountFor(fakevault.OpGetSecret, cert) - secretReads; n != 1 {
		t.Errorf("the rotation read the secret bundle %d times, want 1", n)
	}
	if n := vault.CountFor(fakevault.OpGetCertificate, cert) - metadataReads; n != 0 {
		t.Errorf("the rotation read the metadata %d times, want none", n)
	}
	time.Sleep(time.Second)
	if got := getSecret(t, ns, "other-tls").Annotations[vaultcertv1.AnnotationVersion]; got != o1 || v1 == v2.Version {
		t.Errorf("an event for another certificate moved other-tls to %s (was %s)", got, o1)
	}
}

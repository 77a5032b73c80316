package controllers_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/controllers"
	"github.com/vaultcert/vaultcert/internal/changefeed"
	"github.com/vaultcert/vaultcert/internal/fakevault"
	"github.com/vaultcert/vaultcert/internal/keyvault"
)

// laterController is a second controller whose clock runs ahead of the suite's by skew (a settable amount), with
// its own vault listing: it plays the controller when the VaultCertificates' refresh intervals have elapsed.
type laterController struct {
	r       *controllers.VaultCertificateReconciler
	changes *changefeed.Registry
	mu      sync.Mutex
	skew    time.Duration
}

func newLaterController(t *testing.T) *laterController {
	t.Helper()
	lc := &laterController{}
	now := func() time.Time {
		lc.mu.Lock()
		defer lc.mu.Unlock()
		return time.Now().Add(lc.skew)
	}
	lc.changes = changefeed.NewRegistry(changefeed.Options{Now: now})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = lc.changes.Start(ctx) }()
	lc.r = &controllers.VaultCertificateReconciler{
		Client: k8s, APIReader: k8s, Recorder: events.NewFakeRecorder(1000),
		Factory: keyvault.NewFactory(keyvault.FactoryOptions{}), TerminalRetry: 2 * time.Second,
		HostPolicy: loopbackHostPolicy(), Now: now, Changes: lc.changes,
	}
	return lc
}

func (lc *laterController) setSkew(d time.Duration) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.skew = d
}

// reconcileAll reconciles every named VaultCertificate of ns until none waits for a listing: those that waited are
// reconciled again when the listing wakes them, as the controller's event source would.
func (lc *laterController) reconcileAll(t *testing.T, ns string, names []string) {
	t.Helper()
	waiting := map[string]bool{}
	for _, n := range names {
		res, err := lc.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: n}})
		if err != nil {
			t.Fatalf("reconcile %s: %v", n, err)
		}
		if res.RequeueAfter == time.Minute {
			waiting[n] = true
		}
	}
	deadline := time.After(waitTimeout)
	for len(waiting) > 0 {
		select {
		case ev := <-lc.changes.Events():
			n := ev.Object.GetName()
			if _, err := lc.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: n}}); err != nil {
				t.Fatalf("reconcile %s after the listing: %v", n, err)
			}
			delete(waiting, n)
		case <-deadline:
			t.Fatalf("still waiting for the listing: %v", waiting)
		}
	}
}

// TestRefreshIsAnsweredByOneVaultListing: when the refresh interval of 30 VaultCertificates on one connection has
// elapsed, one listing of the vault (25 certificates a page) answers them all, with no read of any certificate,
// and moves their next refresh on. After a rotation, the next listing wakes only the rotated certificate's
// VaultCertificate, which reads and syncs the new version.
func TestRefreshIsAnsweredByOneVaultListing(t *testing.T) {
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	var names, certs []string
	for i := range 30 {
		cert := seed(t, "listed")
		name := fmt.Sprintf("web-%02d", i)
		newCertificate(t, ns, cert, func(vc *vaultcertv1.VaultCertificate) { vc.Name, vc.Spec.SecretName = name, name+"-tls" })
		names, certs = append(names, name), append(certs, cert)
	}
	for _, n := range names {
		waitReady(t, ns, n, metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	}
	reads := func() (n int) {
		for _, c := range certs {
			n += kvReads(c)
		}
		return n
	}
	readsBefore, pagesBefore := reads(), vault.Count(fakevault.OpListCertificates)

	lc := newLaterController(t)
	lc.setSkew(2 * time.Hour) // past every refresh interval (1 h by default)
	lc.reconcileAll(t, ns, names)
	if n := reads() - readsBefore; n != 0 {
		t.Errorf("the refresh read certificates %d times; the listing should have answered all 30", n)
	}
	pages := vault.Count(fakevault.OpListCertificates) - pagesBefore
	if pages < 2 {
		t.Errorf("%d list pages, want at least 2 (30 certificates, 25 a page)", pages)
	}
	for _, n := range names {
		vc := getCert(t, ns, n)
		if next := vc.Status.NextRefreshTime; next == nil || next.Time.Before(time.Now().Add(2*time.Hour)) {
			t.Fatalf("%s: nextRefreshTime %v was not moved past the refresh the listing answered", n, next)
		}
	}

	// The next refresh round costs one listing again, and still no certificate read.
	pagesBefore = vault.Count(fakevault.OpListCertificates)
	lc.setSkew(2*time.Hour + 90*time.Minute)
	lc.reconcileAll(t, ns, names)
	if reads() != readsBefore {
		t.Errorf("certificates were read in the second round")
	}
	if n := vault.Count(fakevault.OpListCertificates) - pagesBefore; n != pages {
		t.Errorf("second round: %d list pages, want %d (one listing)", n, pages)
	}

	perCert := map[string]int{}
	for _, c := range certs {
		perCert[c] = kvReads(c)
	}
	rotated, err := vault.Rotate(certs[7])
	if err != nil {
		t.Fatal(err)
	}
	lc.setSkew(5 * time.Hour)
	lc.reconcileAll(t, ns, names)
	// The rotated one was woken (its entry changed) or found changed when due: either way it read the new version.
	if got := vault.CountFor(fakevault.OpGetSecret, certs[7]); got < 2 {
		t.Errorf("the rotated certificate's key was read %d times in all, want its new version read too", got)
	}
	waitSecretVersion(t, ns, names[7]+"-tls", rotated.Version)
	for i, c := range certs {
		if i != 7 && kvReads(c) != perCert[c] {
			t.Errorf("%s was read again though it did not change", c)
		}
	}
}

// TestOneCertificateInManyNamespacesIsReadOncePerVersion: a wildcard certificate used by ten namespaces through one
// ClusterVaultConnection (one identity) has its key read from Key Vault once; each namespace still gets its own
// Secret. A namespace on its own VaultConnection (another identity) reads it itself.
func TestOneCertificateInManyNamespacesIsReadOncePerVersion(t *testing.T) {
	conn := secretClusterConnection(t, &metav1.LabelSelector{MatchLabels: map[string]string{"wildcard": "yes"}})
	cert := seed(t, "wildcard")
	var namespaces []string
	for range 10 {
		ns := newNamespace(t, map[string]string{"wildcard": "yes"})
		newCertificate(t, ns, cert, viaCluster(conn))
		namespaces = append(namespaces, ns)
	}
	v := latestVersion(t, cert)
	for _, ns := range namespaces {
		waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
		assertServes(t, waitSecretVersion(t, ns, "web-tls", v.Version), cert+".example.com")
	}
	if n := vault.CountFor(fakevault.OpGetSecret, cert); n != 1 {
		t.Errorf("the key of one version was read %d times for ten namespaces on one connection, want 1", n)
	}

	own := newNamespace(t, nil)
	newConnection(t, own)
	newCertificate(t, own, cert)
	waitReady(t, own, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	if n := vault.CountFor(fakevault.OpGetSecret, cert); n != 2 {
		t.Errorf("a namespace on its own connection must read the key itself: %d reads, want 2", n)
	}
}

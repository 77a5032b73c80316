package controllers_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/fakevault"
)

// newIngress creates an Ingress serving hosts with one TLS Secret per entry of tls (secret name -> hosts).
func newIngress(t *testing.T, ns, name string, annotations map[string]string, tls map[string][]string) *networkingv1.Ingress {
	t.Helper()
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: annotations}}
	setIngressTLS(ing, tls)
	if err := k8s.Create(context.Background(), ing); err != nil {
		t.Fatal(err)
	}
	return ing
}

// setIngressTLS sets spec.tls and one rule per host (sorted, so the spec is stable).
func setIngressTLS(ing *networkingv1.Ingress, tls map[string][]string) {
	ing.Spec.TLS, ing.Spec.Rules = nil, nil
	secrets := make([]string, 0, len(tls))
	for s := range tls {
		secrets = append(secrets, s)
	}
	slices.Sort(secrets)
	pathType := networkingv1.PathTypePrefix
	for _, s := range secrets {
		ing.Spec.TLS = append(ing.Spec.TLS, networkingv1.IngressTLS{SecretName: s, Hosts: tls[s]})
		for _, h := range tls[s] {
			ing.Spec.Rules = append(ing.Spec.Rules, networkingv1.IngressRule{Host: h, IngressRuleValue: networkingv1.IngressRuleValue{
				HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: &pathType,
					Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}}}},
			}})
		}
	}
}

// updateIngress re-reads the Ingress, applies mutate and updates it (retrying on conflicts).
func updateIngress(t *testing.T, ns, name string, mutate func(*networkingv1.Ingress)) {
	t.Helper()
	eventually(t, "updating Ingress "+name, func() (bool, string) {
		var ing networkingv1.Ingress
		if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &ing); err != nil {
			return false, err.Error()
		}
		mutate(&ing)
		if err := k8s.Update(context.Background(), &ing); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
}

// waitShimCertificate waits until the VaultCertificate exists and check accepts it.
func waitShimCertificate(t *testing.T, ns, name string, check func(*vaultcertv1.VaultCertificate) string) *vaultcertv1.VaultCertificate {
	t.Helper()
	var vc vaultcertv1.VaultCertificate
	eventually(t, fmt.Sprintf("VaultCertificate %s/%s", ns, name), func() (bool, string) {
		if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &vc); err != nil {
			return false, err.Error()
		}
		why := check(&vc)
		return why == "", why
	})
	return &vc
}

// waitGone waits until the VaultCertificate does not exist.
func waitGone(t *testing.T, ns, name string) {
	t.Helper()
	eventually(t, fmt.Sprintf("VaultCertificate %s/%s to be deleted", ns, name), func() (bool, string) {
		var vc vaultcertv1.VaultCertificate
		err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &vc)
		return apierrors.IsNotFound(err), fmt.Sprintf("still there (%v)", err)
	})
}

// waitRouteEvent waits for an event about the object kind/name with that type and reason whose note contains
// every text.
func waitRouteEvent(t *testing.T, ns, kind, name, eventType, reason string, texts ...string) {
	t.Helper()
	eventually(t, fmt.Sprintf("%s event %s on %s %s", eventType, reason, kind, name), func() (bool, string) {
		var list eventsv1.EventList
		if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		var seen []string
	events:
		for _, e := range list.Items {
			if e.Regarding.Kind != kind || e.Regarding.Name != name || e.Type != eventType || e.Reason != reason {
				continue
			}
			for _, text := range texts {
				if !strings.Contains(e.Note, text) {
					seen = append(seen, e.Note)
					continue events
				}
			}
			return true, ""
		}
		return false, fmt.Sprintf("%d events, none matching; notes of that reason: %q", len(list.Items), seen)
	})
}

// routeEvents counts the events about the named object with that reason.
func routeEvents(t *testing.T, ns, name, reason string) int {
	t.Helper()
	var list eventsv1.EventList
	if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range list.Items {
		if e.Regarding.Name == name && e.Reason == reason {
			n++
		}
	}
	return n
}

// shimCheck is a check for waitShimCertificate: the fields the shim sets.
func shimCheck(cert string, chain vaultcertv1.ChainMode, hosts ...string) func(*vaultcertv1.VaultCertificate) string {
	return func(vc *vaultcertv1.VaultCertificate) string {
		switch {
		case vc.Spec.CertificateName != cert:
			return "certificateName " + vc.Spec.CertificateName
		case vc.Spec.Chain != chain:
			return "chain " + string(vc.Spec.Chain)
		case !slices.Equal(vc.Spec.Hosts, hosts):
			return fmt.Sprintf("hosts %q", vc.Spec.Hosts)
		}
		return ""
	}
}

// TestIngressShimLifecycle: an annotated Ingress gets a VaultCertificate per TLS Secret, owned by it, kept in step
// with its annotations and TLS entries (an edit of the VaultCertificate itself is undone), removed with the
// annotation; a VaultCertificate made by hand is never touched, and the clash is told on the Ingress.
func TestIngressShimLifecycle(t *testing.T) {
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	cert := uniqueName("shop")
	v1, err := vault.Seed(fakevault.CertSpec{Name: cert, KeyType: "EC", DNSNames: []string{"shop.example.test"}, ChainDepth: 2})
	if err != nil {
		t.Fatal(err)
	}
	ing := newIngress(t, ns, "shop", map[string]string{
		vaultcertv1.AnnotationCertificateName: cert,
		vaultcertv1.AnnotationConnection:      "vault",
		vaultcertv1.AnnotationRefreshInterval: "2m",
		vaultcertv1.AnnotationChain:           "LeafOnly",
	}, map[string][]string{"shop-tls": {"shop.example.test"}})

	vc := waitShimCertificate(t, ns, "shop-tls", shimCheck(cert, vaultcertv1.ChainLeafOnly, "shop.example.test"))
	if owner := metav1.GetControllerOf(vc); owner == nil || owner.Kind != "Ingress" || owner.UID != ing.UID {
		t.Fatalf("VaultCertificate shop-tls is controlled by %+v, want the Ingress", owner)
	}
	if vc.Spec.ConnectionRef != (vaultcertv1.ConnectionReference{Kind: vaultcertv1.VaultConnectionKind, Name: "vault"}) ||
		vc.Spec.SecretName != "shop-tls" || vc.Spec.RefreshInterval.Duration != 2*time.Minute {
		t.Fatalf("VaultCertificate spec %+v", vc.Spec)
	}
	waitReady(t, ns, "shop-tls", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	secret := waitSecretVersion(t, ns, "shop-tls", v1.Version)
	if n := len(pemCerts(t, secret.Data[corev1.TLSCertKey])); n != 1 {
		t.Fatalf("chain LeafOnly from the annotation: tls.crt holds %d certificates, want 1", n)
	}
	waitRouteEvent(t, ns, "Ingress", "shop", corev1.EventTypeNormal, vaultcertv1.EventVaultCertificateCreated, "shop-tls", cert)

	// A hand-made VaultCertificate of the name a new TLS entry would use is left alone.
	other := uniqueName("other")
	if _, err := vault.Seed(fakevault.CertSpec{Name: other, KeyType: "EC"}); err != nil {
		t.Fatal(err)
	}
	newCertificate(t, ns, other, func(vc *vaultcertv1.VaultCertificate) { vc.Name, vc.Spec.SecretName = "hand-tls", "hand-tls" })

	// Annotations and TLS entries change: chain back to its default, a second Secret, a clash with the hand-made one.
	updateIngress(t, ns, "shop", func(ing *networkingv1.Ingress) {
		delete(ing.Annotations, vaultcertv1.AnnotationChain)
		setIngressTLS(ing, map[string][]string{"shop-tls": {"shop.example.test"}, "admin-tls": {"admin.example.test"}, "hand-tls": {"hand.example.test"}})
	})
	waitShimCertificate(t, ns, "shop-tls", shimCheck(cert, vaultcertv1.ChainLeafAndIntermediates, "shop.example.test"))
	waitShimCertificate(t, ns, "admin-tls", shimCheck(cert, vaultcertv1.ChainLeafAndIntermediates, "admin.example.test"))
	waitRouteEvent(t, ns, "Ingress", "shop", corev1.EventTypeWarning, vaultcertv1.EventVaultCertificateConflict, "hand-tls", "leaves it")
	hand := getCert(t, ns, "hand-tls")
	if hand.Spec.CertificateName != other || len(hand.Labels) != 0 || len(hand.OwnerReferences) != 0 || len(hand.Spec.Hosts) != 0 {
		t.Fatalf("the hand-made VaultCertificate was changed: labels %v, owners %v, spec %+v", hand.Labels, hand.OwnerReferences, hand.Spec)
	}

	// Someone edits the shim's VaultCertificate: the Ingress's annotations win.
	edited := getCert(t, ns, "admin-tls")
	patch := client.MergeFrom(edited.DeepCopy())
	edited.Spec.CertificateName = other
	if err := k8s.Patch(context.Background(), edited, patch); err != nil {
		t.Fatal(err)
	}
	waitShimCertificate(t, ns, "admin-tls", func(vc *vaultcertv1.VaultCertificate) string {
		if vc.Generation < 2 || vc.Spec.CertificateName != cert {
			return fmt.Sprintf("generation %d, certificateName %s", vc.Generation, vc.Spec.CertificateName)
		}
		return ""
	})

	// A TLS entry removed: its VaultCertificate goes; the others stay.
	updateIngress(t, ns, "shop", func(ing *networkingv1.Ingress) {
		setIngressTLS(ing, map[string][]string{"shop-tls": {"shop.example.test"}, "hand-tls": {"hand.example.test"}})
	})
	waitGone(t, ns, "admin-tls")
	waitRouteEvent(t, ns, "Ingress", "shop", corev1.EventTypeNormal, vaultcertv1.EventVaultCertificateDeleted, "admin-tls")

	// A second Ingress with the same annotations on the same Secret (paths split over Ingresses) shares it
	// without a clash; its own other Secret gets its own VaultCertificate.
	newIngress(t, ns, "shop-api", map[string]string{
		vaultcertv1.AnnotationCertificateName: cert,
		vaultcertv1.AnnotationConnection:      "vault",
		vaultcertv1.AnnotationRefreshInterval: "2m",
	}, map[string][]string{"shop-tls": {"shop.example.test"}, "zz-tls": {"zz.example.test"}})
	waitRouteEvent(t, ns, "Ingress", "shop-api", corev1.EventTypeNormal, vaultcertv1.EventVaultCertificateCreated, "zz-tls")
	if n := routeEvents(t, ns, "shop-api", vaultcertv1.EventVaultCertificateConflict); n != 0 {
		t.Fatalf("%d conflict events for an Ingress asking the same of a shared Secret", n)
	}
	if owner := metav1.GetControllerOf(getCert(t, ns, "shop-tls")); owner == nil || owner.Name != "shop" {
		t.Fatalf("shop-tls is now controlled by %+v, want still the first Ingress", owner)
	}

	// Bad annotations: told on the Ingress, and the last good VaultCertificate stays as it was.
	updateIngress(t, ns, "shop", func(ing *networkingv1.Ingress) { ing.Annotations[vaultcertv1.AnnotationChain] = "Everything" })
	waitRouteEvent(t, ns, "Ingress", "shop", corev1.EventTypeWarning, vaultcertv1.EventInvalidAnnotations, vaultcertv1.AnnotationChain, "Everything")
	if got := getCert(t, ns, "shop-tls"); got.Spec.CertificateName != cert || got.Spec.Chain != vaultcertv1.ChainLeafAndIntermediates {
		t.Fatalf("a bad annotation changed the VaultCertificate: %+v", got.Spec)
	}

	// The certificate annotation removed from the first Ingress: its VaultCertificate goes, and the second Ingress,
	// which shared it, makes its own for the Secret it still serves.
	updateIngress(t, ns, "shop", func(ing *networkingv1.Ingress) { delete(ing.Annotations, vaultcertv1.AnnotationCertificateName) })
	waitShimCertificate(t, ns, "shop-tls", func(vc *vaultcertv1.VaultCertificate) string {
		if owner := metav1.GetControllerOf(vc); owner == nil || owner.Name != "shop-api" {
			return fmt.Sprintf("controlled by %+v", owner)
		}
		return ""
	})
	// And from the second: the shim's VaultCertificates go, the hand-made one stays.
	updateIngress(t, ns, "shop-api", func(ing *networkingv1.Ingress) { delete(ing.Annotations, vaultcertv1.AnnotationCertificateName) })
	waitGone(t, ns, "shop-tls")
	waitGone(t, ns, "zz-tls")
	if getCert(t, ns, "hand-tls").Spec.CertificateName != other {
		t.Fatal("the hand-made VaultCertificate changed")
	}
}

// TestIngressShimHostsCovered: a host the certificate's DNS names do not cover (wildcards cover one label) is
// named in HostsCovered=False and told on the Ingress; the Secret is written anyway.
func TestIngressShimHostsCovered(t *testing.T) {
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	cert := uniqueName("wild")
	v1, err := vault.Seed(fakevault.CertSpec{Name: cert, KeyType: "EC", DNSNames: []string{"www.example.test", "*.apps.example.test"}})
	if err != nil {
		t.Fatal(err)
	}
	newIngress(t, ns, "apps", map[string]string{vaultcertv1.AnnotationCertificateName: cert, vaultcertv1.AnnotationConnection: "vault"},
		map[string][]string{"apps-tls": {"www.example.test", "a.apps.example.test", "a.b.apps.example.test", "shop.example.test"}})
	waitSecretVersion(t, ns, "apps-tls", v1.Version)
	_, c := waitCondition(t, ns, "apps-tls", vaultcertv1.ConditionHostsCovered, metav1.ConditionFalse, vaultcertv1.ReasonHostsNotCovered)
	if !strings.Contains(c.Message, "do not cover a.b.apps.example.test, shop.example.test:") {
		t.Fatalf("HostsCovered message %q does not name exactly the uncovered hosts", c.Message)
	}
	waitReady(t, ns, "apps-tls", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	waitRouteEvent(t, ns, "Ingress", "apps", corev1.EventTypeWarning, vaultcertv1.ReasonHostsNotCovered, "apps-tls", "shop.example.test")
	waitRouteEvent(t, ns, "VaultCertificate", "apps-tls", corev1.EventTypeWarning, vaultcertv1.ReasonHostsNotCovered, "shop.example.test")

	// The hosts fixed: True.
	updateIngress(t, ns, "apps", func(ing *networkingv1.Ingress) {
		setIngressTLS(ing, map[string][]string{"apps-tls": {"www.example.test", "a.apps.example.test"}})
	})
	waitCondition(t, ns, "apps-tls", vaultcertv1.ConditionHostsCovered, metav1.ConditionTrue, vaultcertv1.ReasonHostsCovered)
}

// TestIngressShimKeyVaultURIAndDefaultConnection: a versioned certificate URI pins the version and, without a
// connection annotation, uses the ClusterVaultConnection marked default; a URI naming another vault than the
// connection's is refused with a Warning and nothing is created.
func TestIngressShimKeyVaultURIAndDefaultConnection(t *testing.T) {
	ns := newNamespace(t, nil)
	cert := uniqueName("pinned")
	v1, err := vault.Seed(fakevault.CertSpec{Name: cert, KeyType: "EC"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vault.Rotate(cert); err != nil {
		t.Fatal(err)
	}
	// Without a default, the Ingress is told what to set.
	newIngress(t, ns, "pinned", map[string]string{vaultcertv1.AnnotationKeyVaultURI: vault.URL() + "certificates/" + cert + "/" + v1.Version},
		map[string][]string{"pinned-tls": {"pinned.example.test"}})
	waitRouteEvent(t, ns, "Ingress", "pinned", corev1.EventTypeWarning, vaultcertv1.ReasonConnectionNotReady, vaultcertv1.AnnotationDefaultConnection)

	name := defaultClusterConnection(t, ns)
	vc := waitShimCertificate(t, ns, "pinned-tls", func(vc *vaultcertv1.VaultCertificate) string {
		if vc.Spec.Version != v1.Version || vc.Spec.ConnectionRef.Kind != vaultcertv1.ClusterVaultConnectionKind || vc.Spec.ConnectionRef.Name != name {
			return fmt.Sprintf("spec %+v", vc.Spec)
		}
		return ""
	})
	waitSecretVersion(t, ns, vc.Spec.SecretName, v1.Version)

	newIngress(t, ns, "elsewhere", map[string]string{vaultcertv1.AnnotationKeyVaultURI: "https://another.vault.azure.net/certificates/" + cert},
		map[string][]string{"elsewhere-tls": {"elsewhere.example.test"}})
	waitRouteEvent(t, ns, "Ingress", "elsewhere", corev1.EventTypeWarning, vaultcertv1.EventInvalidAnnotations,
		"https://another.vault.azure.net/", name, vault.URL())
	var vcs vaultcertv1.VaultCertificateList
	if err := k8s.List(context.Background(), &vcs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(vcs.Items) != 1 {
		t.Fatalf("%d VaultCertificates in the namespace, want only pinned-tls", len(vcs.Items))
	}
}

// defaultClusterConnection creates a ClusterVaultConnection to the suite's vault marked default (its credential
// Secret in ns), removed when the test ends.
func defaultClusterConnection(t *testing.T, ns string) string {
	t.Helper()
	ctx := context.Background()
	if err := k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kv-credentials", Namespace: ns},
		StringData: map[string]string{"clientSecret": testClientSecret}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err) // a namespace with a VaultConnection has it already
	}
	conn := &vaultcertv1.ClusterVaultConnection{
		ObjectMeta: metav1.ObjectMeta{Name: "default-" + ns, Annotations: map[string]string{vaultcertv1.AnnotationDefaultConnection: "true"}},
		Spec: vaultcertv1.ClusterVaultConnectionSpec{ConnectionSpec: vaultcertv1.ConnectionSpec{
			VaultURL: vault.URL(),
			Auth: &vaultcertv1.ConnectionAuth{ServicePrincipal: &vaultcertv1.ServicePrincipalAuth{TenantID: vault.TenantID(), ClientID: testClientID,
				ClientSecretRef: &vaultcertv1.SecretKeyReference{Name: "kv-credentials", Namespace: ns, Key: "clientSecret"}}},
			Cloud: clusterCloudConfig(vault),
		}},
	}
	if err := k8s.Create(ctx, conn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), conn) })
	return conn.Name
}

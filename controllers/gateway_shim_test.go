package controllers_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/controllers"
	"github.com/vaultcert/vaultcert/internal/fakevault"
)

// gatewayListener is an HTTPS listener for hostname terminating TLS with the Secrets refs, whose tls.options ask
// vaultcert for cert through the options given.
func gatewayListener(name, hostname string, options map[string]string, refs ...gatewayv1.SecretObjectReference) gatewayv1.Listener {
	h := gatewayv1.Hostname(hostname)
	mode := gatewayv1.TLSModeTerminate
	opts := map[gatewayv1.AnnotationKey]gatewayv1.AnnotationValue{}
	for k, v := range options {
		opts[gatewayv1.AnnotationKey(k)] = gatewayv1.AnnotationValue(v)
	}
	return gatewayv1.Listener{Name: gatewayv1.SectionName(name), Hostname: &h, Port: 443, Protocol: gatewayv1.HTTPSProtocolType,
		TLS: &gatewayv1.ListenerTLSConfig{Mode: &mode, CertificateRefs: refs, Options: opts}}
}

// secretRef references a Secret, in namespace ns when not empty.
func secretRef(name, ns string) gatewayv1.SecretObjectReference {
	ref := gatewayv1.SecretObjectReference{Name: gatewayv1.ObjectName(name)}
	if ns != "" {
		n := gatewayv1.Namespace(ns)
		ref.Namespace = &n
	}
	return ref
}

// TestGatewayShim: a listener's tls.options make a VaultCertificate per certificateRefs Secret, owned by the
// Gateway in its namespace; a Secret in another namespace is served only while a ReferenceGrant allows it (and
// through a ClusterVaultConnection), and its VaultCertificate goes when the grant or the Gateway does.
func TestGatewayShim(t *testing.T) {
	ctx := context.Background()
	gwNS, otherNS := newNamespace(t, nil), newNamespace(t, map[string]string{"vault-access": "other-only"})
	newConnection(t, gwNS)
	cluster := defaultClusterConnection(t, gwNS)
	// A ClusterVaultConnection that admits the Secret's namespace but not the Gateway's.
	otherOnly := secretClusterConnection(t, &metav1.LabelSelector{MatchLabels: map[string]string{"vault-access": "other-only"}})
	cert := uniqueName("gw")
	v1, err := vault.Seed(fakevault.CertSpec{Name: cert, KeyType: "EC", DNSNames: []string{"*.gw.example.test"}})
	if err != nil {
		t.Fatal(err)
	}
	gw := &gatewayv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: "edge", Namespace: gwNS},
		Spec: gatewayv1.GatewaySpec{GatewayClassName: "example", Listeners: []gatewayv1.Listener{
			gatewayListener("app", "app.gw.example.test",
				map[string]string{vaultcertv1.AnnotationCertificateName: cert, vaultcertv1.AnnotationConnection: "vault"}, secretRef("edge-tls", "")),
			gatewayListener("api", "api.other.example.test",
				map[string]string{vaultcertv1.AnnotationCertificateName: cert, vaultcertv1.AnnotationClusterConnection: cluster}, secretRef("shared-tls", otherNS)),
			// A listener without vaultcert's keys is none of vaultcert's business.
			gatewayListener("plain", "plain.example.test", nil, secretRef("plain-tls", "")),
			// A connection the Gateway's own namespace may not use cannot fill a Secret elsewhere, grant or not.
			gatewayListener("sneaky", "sneaky.other.example.test",
				map[string]string{vaultcertv1.AnnotationCertificateName: cert, vaultcertv1.AnnotationClusterConnection: otherOnly}, secretRef("sneaky-tls", otherNS)),
		}},
	}
	if err := k8s.Create(ctx, gw); err != nil {
		t.Fatal(err)
	}

	vc := waitShimCertificate(t, gwNS, "edge-tls", shimCheck(cert, vaultcertv1.ChainLeafAndIntermediates, "app.gw.example.test"))
	if owner := metav1.GetControllerOf(vc); owner == nil || owner.Kind != "Gateway" || owner.UID != gw.UID {
		t.Fatalf("VaultCertificate edge-tls is controlled by %+v, want the Gateway", owner)
	}
	waitSecretVersion(t, gwNS, "edge-tls", v1.Version)
	waitCondition(t, gwNS, "edge-tls", vaultcertv1.ConditionHostsCovered, metav1.ConditionTrue, vaultcertv1.ReasonHostsCovered)
	waitRouteEvent(t, gwNS, "Gateway", "edge", corev1.EventTypeWarning, vaultcertv1.EventRefNotPermitted, "no ReferenceGrant in namespace "+otherNS)
	if getSecret(t, gwNS, "plain-tls") != nil {
		t.Fatal("a listener without vaultcert's keys got a Secret")
	}

	// The grant: the Secret in the other namespace is served, by a VaultCertificate there without an owner.
	grant := &gatewayv1.ReferenceGrant{
		ObjectMeta: metav1.ObjectMeta{Name: "gateways-from-" + gwNS, Namespace: otherNS},
		Spec: gatewayv1.ReferenceGrantSpec{
			From: []gatewayv1.ReferenceGrantFrom{{Group: gatewayv1.GroupName, Kind: "Gateway", Namespace: gatewayv1.Namespace(gwNS)}},
			To:   []gatewayv1.ReferenceGrantTo{{Group: "", Kind: "Secret"}},
		},
	}
	if err := k8s.Create(ctx, grant); err != nil {
		t.Fatal(err)
	}
	shared := waitShimCertificate(t, otherNS, "shared-tls", shimCheck(cert, vaultcertv1.ChainLeafAndIntermediates, "api.other.example.test"))
	if len(shared.OwnerReferences) != 0 || shared.Annotations[vaultcertv1.AnnotationRoute] != "Gateway/"+gwNS+"/edge" ||
		shared.Spec.ConnectionRef != (vaultcertv1.ConnectionReference{Kind: vaultcertv1.ClusterVaultConnectionKind, Name: cluster}) {
		t.Fatalf("cross-namespace VaultCertificate: owners %v, annotations %v, connection %+v", shared.OwnerReferences, shared.Annotations, shared.Spec.ConnectionRef)
	}
	waitSecretVersion(t, otherNS, "shared-tls", v1.Version)
	// api.other.example.test is not under *.gw.example.test.
	waitCondition(t, otherNS, "shared-tls", vaultcertv1.ConditionHostsCovered, metav1.ConditionFalse, vaultcertv1.ReasonHostsNotCovered)
	waitRouteEvent(t, gwNS, "Gateway", "edge", corev1.EventTypeWarning, vaultcertv1.ReasonHostsNotCovered, "api.other.example.test")

	waitRouteEvent(t, gwNS, "Gateway", "edge", corev1.EventTypeWarning, vaultcertv1.ReasonConnectionNotAllowed,
		"sneaky", fmt.Sprintf("does not admit namespace %q", gwNS))
	if certExists(t, otherNS, "sneaky-tls") {
		t.Fatal("a connection that does not admit the Gateway's namespace filled a Secret in another namespace")
	}

	// The grant taken back, while the listener's options are broken: vaultcert stops serving that Secret for the
	// Gateway all the same (a bad option keeps the last good VaultCertificate only where the Gateway may refer).
	var broken gatewayv1.Gateway
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: gwNS, Name: "edge"}, &broken); err != nil {
		t.Fatal(err)
	}
	broken.Spec.Listeners[1].TLS.Options[gatewayv1.AnnotationKey(vaultcertv1.AnnotationChain)] = "Everything"
	if err := k8s.Update(ctx, &broken); err != nil {
		t.Fatal(err)
	}
	waitRouteEvent(t, gwNS, "Gateway", "edge", corev1.EventTypeWarning, vaultcertv1.EventInvalidAnnotations, "Everything")
	if err := k8s.Delete(ctx, grant); err != nil {
		t.Fatal(err)
	}
	waitGone(t, otherNS, "shared-tls")
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: gwNS, Name: "edge"}, &broken); err != nil {
		t.Fatal(err)
	}
	delete(broken.Spec.Listeners[1].TLS.Options, gatewayv1.AnnotationKey(vaultcertv1.AnnotationChain))
	if err := k8s.Update(ctx, &broken); err != nil {
		t.Fatal(err)
	}

	// A namespaced VaultConnection cannot fill another namespace's Secret, grant or not.
	grant.ResourceVersion = ""
	if err := k8s.Create(ctx, grant); err != nil {
		t.Fatal(err)
	}
	waitShimCertificate(t, otherNS, "shared-tls", func(*vaultcertv1.VaultCertificate) string { return "" })
	var latest gatewayv1.Gateway
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: gwNS, Name: "edge"}, &latest); err != nil {
		t.Fatal(err)
	}
	latest.Spec.Listeners[1].TLS.Options[gatewayv1.AnnotationKey(vaultcertv1.AnnotationConnection)] = "vault"
	delete(latest.Spec.Listeners[1].TLS.Options, gatewayv1.AnnotationKey(vaultcertv1.AnnotationClusterConnection))
	if err := k8s.Update(ctx, &latest); err != nil {
		t.Fatal(err)
	}
	waitRouteEvent(t, gwNS, "Gateway", "edge", corev1.EventTypeWarning, vaultcertv1.ReasonConnectionNotAllowed, "cannot serve a Secret in another namespace")
	if got := getCert(t, otherNS, "shared-tls"); got.Spec.ConnectionRef.Kind != vaultcertv1.ClusterVaultConnectionKind {
		t.Fatalf("the refused request changed the VaultCertificate: %+v", got.Spec.ConnectionRef)
	}

	// The Gateway deleted: both VaultCertificates go (the one in the other namespace has no owner to be
	// collected with).
	if err := k8s.Delete(ctx, &latest); err != nil {
		t.Fatal(err)
	}
	waitGone(t, otherNS, "shared-tls")
	waitGone(t, gwNS, "edge-tls")
}

// certExists reports whether the VaultCertificate exists.
func certExists(t *testing.T, ns, name string) bool {
	t.Helper()
	var vc vaultcertv1.VaultCertificate
	err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &vc)
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}

// TestGatewayShimOffWithoutCRDs: on an API server without the Gateway API CRDs the shim sets up without an
// error and registers nothing.
func TestGatewayShimOffWithoutCRDs(t *testing.T) {
	env := &envtest.Environment{CRDDirectoryPaths: []string{filepath.Join("..", "config", "crd", "bases")}, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0"})
	if err != nil {
		t.Fatal(err)
	}
	installed, err := controllers.GatewayAPIInstalled(mgr.GetRESTMapper())
	if err != nil || installed {
		t.Fatalf("GatewayAPIInstalled = %v, %v on an API server without the CRDs", installed, err)
	}
	if err := (&controllers.GatewayShimReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("vaultcert")}).SetupWithManager(mgr); err != nil {
		t.Fatalf("the Gateway shim failed without the CRDs: %v", err)
	}
	// The suite's API server has them: there it is on.
	installed, err = controllers.GatewayAPIInstalled(k8s.RESTMapper())
	if err != nil || !installed {
		t.Fatalf("GatewayAPIInstalled = %v, %v on the suite's API server, which has the CRDs", installed, err)
	}
}

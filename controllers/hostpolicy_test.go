package controllers_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
)

// trapServer is an HTTPS server on 127.0.0.2, outside the suite's allow-list (127.0.0.1:*), that would accept
// anything and counts what reaches it: a tenant's vault or authority.
func trapServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2: %v", err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("WWW-Authenticate", `Bearer authorization="https://127.0.0.2/tenant", resource="https://0.0.2"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	srv.Listener = ln
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, &hits
}

// TestVaultConnectionOutsideAllowListSendsNothing: a tenant's VaultConnection to a vault or an authority the
// admin did not allow is refused with ConnectionNotAllowed naming the flag, and not one request, not even the
// unauthenticated challenge, reaches that host; its credential Secret is never sent anywhere.
func TestVaultConnectionOutsideAllowListSendsNothing(t *testing.T) {
	trap, hits := trapServer(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name, vaultURL, authority, flag string
	}{
		{"vault", trap.URL + "/", vault.AuthorityHost(), "--allowed-vault-domains"},
		{"authority", vault.URL(), trap.URL + "/", "--allowed-authority-hosts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNamespace(t, nil)
			createSecret(t, ns, "kv-credentials", map[string]string{"clientSecret": testClientSecret})
			conn := &vaultcertv1.VaultConnection{ObjectMeta: metav1.ObjectMeta{Name: "vault", Namespace: ns},
				Spec: vaultcertv1.ConnectionSpec{VaultURL: tc.vaultURL,
					Cloud: &vaultcertv1.CloudConfig{AuthorityHost: tc.authority, CABundle: string(vault.CAPEM())},
					Auth: &vaultcertv1.ConnectionAuth{ServicePrincipal: &vaultcertv1.ServicePrincipalAuth{
						TenantID: vault.TenantID(), ClientID: testClientID,
						ClientSecretRef: &vaultcertv1.SecretKeyReference{Name: "kv-credentials", Key: "clientSecret"}}}}}
			if err := k8s.Create(ctx, conn); err != nil {
				t.Fatal(err)
			}
			cert := seed(t, "trap")
			newCertificate(t, ns, cert)
			vc := waitReady(t, ns, "web", metav1.ConditionFalse, vaultcertv1.ReasonConnectionNotAllowed)
			wantMessage(t, readyMessage(vc), tc.flag, "127.0.0.2", "ClusterVaultConnection")
			eventually(t, "the connection's own status", func() (bool, string) {
				var got vaultcertv1.VaultConnection
				if err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "vault"}, &got); err != nil {
					return false, err.Error()
				}
				c := meta.FindStatusCondition(got.Status.Conditions, vaultcertv1.ConditionReady)
				return c != nil && c.Status == metav1.ConditionFalse && c.Reason == vaultcertv1.ReasonConnectionNotAllowed, "no ConnectionNotAllowed yet"
			})
			if n := hits.Load(); n != 0 {
				t.Fatalf("%d requests reached a host the admin did not allow", n)
			}
			if n := kvReads(cert); n != 0 {
				t.Fatalf("the vault was asked %d times through a refused connection", n)
			}
		})
	}
}

// TestVaultConnectionCannotDisableVerification: the API server refuses the options that would let a vault or an
// authority of the tenant's choosing receive tokens; a ClusterVaultConnection keeps them.
func TestVaultConnectionCannotDisableVerification(t *testing.T) {
	ns := newNamespace(t, nil)
	for _, cloud := range []*vaultcertv1.CloudConfig{
		{DisableChallengeResourceVerification: true},
		{DisableInstanceDiscovery: true},
	} {
		conn := &vaultcertv1.VaultConnection{ObjectMeta: metav1.ObjectMeta{GenerateName: "v-", Namespace: ns},
			Spec: vaultcertv1.ConnectionSpec{VaultURL: vault.URL(), Cloud: cloud,
				Auth: &vaultcertv1.ConnectionAuth{ServicePrincipal: &vaultcertv1.ServicePrincipalAuth{TenantID: "t", ClientID: "c",
					ClientSecretRef: &vaultcertv1.SecretKeyReference{Name: "s", Key: "k"}}}}}
		err := k8s.Create(context.Background(), conn)
		if err == nil {
			t.Fatalf("a VaultConnection with %+v was accepted", *cloud)
		}
		wantMessage(t, err.Error(), "only a ClusterVaultConnection may")
	}
	cluster := &vaultcertv1.ClusterVaultConnection{ObjectMeta: metav1.ObjectMeta{GenerateName: "c-"},
		Spec: vaultcertv1.ClusterVaultConnectionSpec{ConnectionSpec: vaultcertv1.ConnectionSpec{VaultURL: vault.URL(),
			// A credential Secret that does not exist: the connection never reaches for a token.
			Auth: &vaultcertv1.ConnectionAuth{ServicePrincipal: &vaultcertv1.ServicePrincipalAuth{TenantID: "t", ClientID: "c",
				ClientSecretRef: &vaultcertv1.SecretKeyReference{Name: "missing", Namespace: ns, Key: "k"}}},
			Cloud: &vaultcertv1.CloudConfig{DisableInstanceDiscovery: true, DisableChallengeResourceVerification: true}}}}
	if err := k8s.Create(context.Background(), cluster); err != nil {
		t.Fatalf("a ClusterVaultConnection may keep both options: %v", err)
	}
	_ = k8s.Delete(context.Background(), cluster)
}

// TestNamespaceUnlabelledRevokesClusterConnection: when a namespace stops matching a ClusterVaultConnection's
// selector, its certificates turn ConnectionNotAllowed within seconds (no refresh interval to wait for), the
// Secret stays, a Warning event says why, and Key Vault is not asked again.
func TestNamespaceUnlabelledRevokesClusterConnection(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, map[string]string{"vault-access": "granted"})
	cluster := secretClusterConnection(t, &metav1.LabelSelector{MatchLabels: map[string]string{"vault-access": "granted"}})
	cert := seed(t, "revoke")
	newCertificate(t, ns, cert, viaCluster(cluster), func(vc *vaultcertv1.VaultCertificate) {
		vc.Spec.RefreshInterval = &metav1.Duration{Duration: 24 * time.Hour}
	})
	waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)

	var namespace corev1.Namespace
	if err := k8s.Get(ctx, client.ObjectKey{Name: ns}, &namespace); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(namespace.DeepCopy())
	delete(namespace.Labels, "vault-access")
	if err := k8s.Patch(ctx, &namespace, patch); err != nil {
		t.Fatal(err)
	}
	calls := kvReads(cert)
	vc := waitReady(t, ns, "web", metav1.ConditionFalse, vaultcertv1.ReasonConnectionNotAllowed)
	wantMessage(t, readyMessage(vc), cluster, ns, "namespaceSelector")
	if getSecret(t, ns, "web-tls") == nil {
		t.Fatal("the Secret must stay when access is revoked")
	}
	waitEvent(t, ns, vaultcertv1.ReasonConnectionNotAllowed, "does not admit")
	if n := kvReads(cert); n != calls {
		t.Fatalf("Key Vault was asked %d more times after the namespace was revoked", n-calls)
	}
}

package connection

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
)

// TestConnectionKeyRoundTrip: every key reads back as itself, a VaultCertificate's key follows its connectionRef
// (kind defaulting to VaultConnection in its own namespace), and malformed text is refused.
func TestConnectionKeyRoundTrip(t *testing.T) {
	for _, k := range []Key{Namespaced("shop", "vault"), Cluster("shared")} {
		got, ok := Parse(k.String())
		if !ok || got != k {
			t.Errorf("parse(%q) = %+v, %v", k.String(), got, ok)
		}
	}
	vc := &vaultcertv1.VaultCertificate{ObjectMeta: metav1.ObjectMeta{Namespace: "shop"},
		Spec: vaultcertv1.VaultCertificateSpec{ConnectionRef: vaultcertv1.ConnectionReference{Name: "vault"}}}
	if got := Of(vc).String(); got != "VaultConnection/shop/vault" {
		t.Errorf("default kind: %q", got)
	}
	vc.Spec.ConnectionRef.Kind = vaultcertv1.ClusterVaultConnectionKind
	if got := Of(vc).String(); got != "ClusterVaultConnection/vault" {
		t.Errorf("cluster kind: %q", got)
	}
	for _, bad := range []string{"", "VaultConnection/shop", "ClusterVaultConnection/", "Secret/x", "VaultConnection/a/b/c", "ClusterVaultConnection/a/b"} {
		if _, ok := Parse(bad); ok {
			t.Errorf("parse(%q) accepted", bad)
		}
	}
}

package controllers

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/connection"
	"github.com/vaultcert/vaultcert/internal/keyvault"
)

// TestRequestTagsFitKeyVault: the tags of a requested version always pass Key Vault's limits (15 tags, 256
// characters a value), name the owner, and keep as many of the user's own tags as fit.
func TestRequestTagsFitKeyVault(t *testing.T) {
	now := time.Date(2026, 5, 1, 10, 0, 0, 123, time.UTC)
	r := &VaultCertificateReconciler{Now: func() time.Time { return now }}
	r.ClusterID = strings.Repeat("c", 300)
	vc := &vaultcertv1.VaultCertificate{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: strings.Repeat("n", 253), UID: "uid-1", Generation: 7}}
	latest := &keyvault.Certificate{Tags: map[string]string{"vaultcert.io-name": "previous-owner", "vaultcert.io-requested": "old"}}
	for i := 0; i < 20; i++ {
		latest.Tags[fmt.Sprintf("user%02d", i)] = "v"
	}
	tags := r.requestTags(vc, latest)
	if err := keyvault.ValidateTags(tags); err != nil {
		t.Fatalf("Key Vault would refuse the create: %v (%d tags)", err, len(tags))
	}
	if len(tags) != keyvault.MaxTags {
		t.Errorf("%d tags, want the user's tags filled up to %d", len(tags), keyvault.MaxTags)
	}
	for k, want := range map[string]string{tagNamespace: "shop", tagName: vc.Name, tagUID: "uid-1", tagGeneration: "7",
		tagRequested: "2026-05-01T10:00:00.000000123Z", "user00": "v"} {
		if tags[k] != want {
			t.Errorf("tag %s = %q, want %q", k, tags[k], want)
		}
	}
	if c := tags[tagCluster]; !strings.HasPrefix(c, "sha256:") || len(c) > keyvault.MaxTagValueLen {
		t.Errorf("a 300-character cluster ID must be hashed to fit, got %q", c)
	}
	if !r.isOwner(tags, vc) {
		t.Error("the tags of a version vc requested do not name vc as the owner")
	}
}

func TestIssuanceRefusal(t *testing.T) {
	cluster := func(is *vaultcertv1.ClusterIssuance) *connection.Resolved {
		return &connection.Resolved{Cluster: &vaultcertv1.ClusterVaultConnection{ObjectMeta: metav1.ObjectMeta{Name: "shared"},
			Spec: vaultcertv1.ClusterVaultConnectionSpec{Issuance: is}}}
	}
	vc := func(name string) *vaultcertv1.VaultCertificate {
		return &vaultcertv1.VaultCertificate{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
			Spec: vaultcertv1.VaultCertificateSpec{CertificateName: name}}
	}
	tests := []struct {
		name string
		vc   *vaultcertv1.VaultCertificate
		conn *connection.Resolved
		want string // "" allowed, else a part of the refusal
	}{
		{"namespaced connection", vc("anything"), &connection.Resolved{}, ""},
		{"cluster connection without issuance", vc("shop-web"), cluster(nil), "spec.issuance.enabled: true"},
		{"cluster connection with issuance off", vc("shop-web"), cluster(&vaultcertv1.ClusterIssuance{RequireNamespacePrefix: true}), "spec.issuance.enabled: true"},
		{"opted in", vc("web"), cluster(&vaultcertv1.ClusterIssuance{Enabled: true}), ""},
		{"prefix required and present", vc("shop-web"), cluster(&vaultcertv1.ClusterIssuance{Enabled: true, RequireNamespacePrefix: true}), ""},
		{"prefix in another case", vc("SHOP-web"), cluster(&vaultcertv1.ClusterIssuance{Enabled: true, RequireNamespacePrefix: true}), ""},
		{"prefix missing", vc("web"), cluster(&vaultcertv1.ClusterIssuance{Enabled: true, RequireNamespacePrefix: true}), `starts with "shop-"`},
		{"namespace without the dash", vc("shopweb"), cluster(&vaultcertv1.ClusterIssuance{Enabled: true, RequireNamespacePrefix: true}), `starts with "shop-"`},
	}
	for _, tt := range tests {
		got := issuanceRefusal(tt.vc, tt.conn)
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("%s: refusal %q, want %q", tt.name, got, tt.want)
		}
	}
}

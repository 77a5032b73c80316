package routes

import (
	"slices"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
)

func TestParseAsksNothingWithoutACertificate(t *testing.T) {
	// Connection and options alone (the certificate annotation removed) ask for nothing: the shim removes.
	_, asked, err := Parse(map[string]string{vaultcertv1.AnnotationConnection: "vault", vaultcertv1.AnnotationChain: "Full"})
	if asked || err != nil {
		t.Fatalf("asked=%v err=%v, want nothing asked and no error", asked, err)
	}
}

func TestParseReadsEveryKey(t *testing.T) {
	req, asked, err := Parse(map[string]string{
		vaultcertv1.AnnotationCertificateName:    "web-cert",
		vaultcertv1.AnnotationClusterConnection:  "prod",
		vaultcertv1.AnnotationRefreshInterval:    "15m",
		vaultcertv1.AnnotationChain:              "Full",
		vaultcertv1.AnnotationPrivateKeyEncoding: "PKCS1",
		vaultcertv1.AnnotationDeletionPolicy:     "Retain",
	})
	if !asked || err != nil {
		t.Fatalf("asked=%v err=%v", asked, err)
	}
	want := Request{CertificateName: "web-cert",
		Connection:      &vaultcertv1.ConnectionReference{Kind: vaultcertv1.ClusterVaultConnectionKind, Name: "prod"},
		RefreshInterval: req.RefreshInterval, Chain: vaultcertv1.ChainFull, PrivateKeyEncoding: vaultcertv1.PrivateKeyPKCS1,
		DeletionPolicy: vaultcertv1.DeletionPolicyRetain}
	if req.RefreshInterval == nil || req.RefreshInterval.Duration != 15*time.Minute {
		t.Fatalf("refresh interval %v, want 15m", req.RefreshInterval)
	}
	if req.CertificateName != want.CertificateName || *req.Connection != *want.Connection || req.Chain != want.Chain ||
		req.PrivateKeyEncoding != want.PrivateKeyEncoding || req.DeletionPolicy != want.DeletionPolicy {
		t.Fatalf("got %+v, want %+v", req, want)
	}
}

func TestParseKeyVaultURIVersionedAndNot(t *testing.T) {
	req, _, err := Parse(map[string]string{vaultcertv1.AnnotationKeyVaultURI: "https://My-Vault.vault.azure.net/certificates/web/0123456789abcdef0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	if req.VaultURL != "https://My-Vault.vault.azure.net/" || req.CertificateName != "web" || req.Version != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("got %+v", req)
	}
	req, _, err = Parse(map[string]string{vaultcertv1.AnnotationKeyVaultURI: "https://v.vault.azure.net/certificates/web/"})
	if err != nil || req.Version != "" || req.CertificateName != "web" {
		t.Fatalf("got %+v, %v", req, err)
	}
	if req.Connection != nil {
		t.Fatalf("no connection annotation must mean the default connection, got %+v", req.Connection)
	}
}

func TestParseNamesEveryBadKey(t *testing.T) {
	for _, tc := range []struct {
		keys map[string]string
		want []string
	}{
		{map[string]string{vaultcertv1.AnnotationKeyVaultURI: "http://v.vault.azure.net/certificates/web"}, []string{vaultcertv1.AnnotationKeyVaultURI, "https://"}},
		{map[string]string{vaultcertv1.AnnotationKeyVaultURI: "https://v.vault.azure.net/secrets/web"}, []string{"does not name a certificate"}},
		{map[string]string{vaultcertv1.AnnotationKeyVaultURI: "https://v.vault.azure.net/certificates/web?x=1"}, []string{"not a Key Vault certificate URI"}},
		{map[string]string{vaultcertv1.AnnotationCertificateName: "web_cert"}, []string{vaultcertv1.AnnotationCertificateName, "web_cert"}},
		{map[string]string{vaultcertv1.AnnotationCertificateName: "a", vaultcertv1.AnnotationKeyVaultURI: "https://v/certificates/a"}, []string{"not both"}},
		{map[string]string{vaultcertv1.AnnotationCertificateName: "a", vaultcertv1.AnnotationConnection: "x", vaultcertv1.AnnotationClusterConnection: "y"}, []string{"not both"}},
		{map[string]string{vaultcertv1.AnnotationCertificateName: "a", vaultcertv1.AnnotationConnection: "Not_A_Name"}, []string{vaultcertv1.AnnotationConnection}},
		{map[string]string{vaultcertv1.AnnotationCertificateName: "a", vaultcertv1.AnnotationRefreshInterval: "10s"}, []string{"between 1m0s and 24h0m0s"}},
		{map[string]string{vaultcertv1.AnnotationCertificateName: "a", vaultcertv1.AnnotationRefreshInterval: "soon"}, []string{"not a duration"}},
		{map[string]string{vaultcertv1.AnnotationCertificateName: "a", vaultcertv1.AnnotationChain: "full"}, []string{vaultcertv1.AnnotationChain, "LeafAndIntermediates, Full, LeafOnly"}},
		{map[string]string{vaultcertv1.AnnotationCertificateName: "a", vaultcertv1.AnnotationDeletionPolicy: "Orphan", vaultcertv1.AnnotationPrivateKeyEncoding: "DER"},
			[]string{vaultcertv1.AnnotationDeletionPolicy, vaultcertv1.AnnotationPrivateKeyEncoding}},
	} {
		_, asked, err := Parse(tc.keys)
		if !asked || err == nil {
			t.Errorf("%v: asked=%v err=%v, want an error", tc.keys, asked, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %q does not say %q", tc.keys, err, w)
			}
		}
	}
}

func TestSameVault(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"https://v.vault.azure.net/", "https://V.vault.azure.net", true},
		{"https://v.vault.azure.net:443/", "https://v.vault.azure.net/", true},
		{"https://v.vault.azure.net./", "https://v.vault.azure.net/", true},
		{"https://v.vault.azure.net/", "https://w.vault.azure.net/", false},
		{"https://127.0.0.1:8443/", "https://127.0.0.1:9443/", false},
		{"http://v.vault.azure.net/", "http://v.vault.azure.net/", false},
	} {
		if got := SameVault(tc.a, tc.b); got != tc.same {
			t.Errorf("SameVault(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.same)
		}
	}
}

func TestUncoveredFollowsRFC6125(t *testing.T) {
	names := []string{"example.com", "*.apps.example.com", "API.Example.com"}
	hosts := []string{
		"example.com",             // exact
		"a.apps.example.com",      // one label under the wildcard
		"api.example.com.",        // case and trailing dot
		"a.b.apps.example.com",    // two labels: not covered
		"apps.example.com",        // the wildcard's own domain: not covered
		"www.example.com",         // not listed
		"*.apps.example.com",      // a wildcard host, covered by the same wildcard
		"*.other.example.com",     // a wildcard host no name covers
		"x.apps.example.com.evil", // a suffix trick
	}
	got := Uncovered(hosts, names)
	want := []string{"a.b.apps.example.com", "apps.example.com", "www.example.com", "*.other.example.com", "x.apps.example.com.evil"}
	if !slices.Equal(got, want) {
		t.Fatalf("Uncovered = %q, want %q", got, want)
	}
	if got := Uncovered([]string{"a.example.com"}, []string{"a*.example.com", "*"}); len(got) != 1 {
		t.Fatalf("a partial wildcard or a bare * must cover nothing, got uncovered %q", got)
	}
}

func TestIngressHostsPerSecret(t *testing.T) {
	ing := &networkingv1.Ingress{Spec: networkingv1.IngressSpec{
		Rules: []networkingv1.IngressRule{{Host: "b.example.com"}, {Host: "a.example.com"}, {}},
		TLS: []networkingv1.IngressTLS{
			{Hosts: []string{"Shop.example.com", "shop.example.com."}, SecretName: "shop-tls"},
			{SecretName: "all-tls"},
			{Hosts: []string{"x.example.com"}}, // no Secret: the controller's default certificate
			{Hosts: []string{"more.example.com"}, SecretName: "shop-tls"},
		},
	}}
	got := IngressHosts(ing)
	if len(got) != 2 || !slices.Equal(got["shop-tls"], []string{"more.example.com", "shop.example.com"}) ||
		!slices.Equal(got["all-tls"], []string{"a.example.com", "b.example.com"}) {
		t.Fatalf("IngressHosts = %v", got)
	}
}

package controllers_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/fakevault"
	"github.com/vaultcert/vaultcert/internal/pki"
	"github.com/vaultcert/vaultcert/internal/tlscheck"
)

// pemCerts decodes every CERTIFICATE block.
func pemCerts(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out
		}
		if block.Type != "CERTIFICATE" {
			t.Fatalf("unexpected PEM block %q in a certificate field", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

// assertServes checks the Secret the way a TLS client would: handshake verified against ca.crt and the name.
func assertServes(t *testing.T, s *corev1.Secret, dnsName string) {
	t.Helper()
	if s.Type != corev1.SecretTypeTLS {
		t.Fatalf("Secret type = %s, want %s", s.Type, corev1.SecretTypeTLS)
	}
	if _, err := tlscheck.Handshake(s.Data["tls.crt"], s.Data["tls.key"], s.Data["ca.crt"], dnsName); err != nil {
		t.Fatalf("the Secret does not serve %s: %v", dnsName, err)
	}
}

func TestFirstSyncRSAPFX(t *testing.T) {
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	name := uniqueName("rsa")
	v, err := vault.Seed(fakevault.CertSpec{Name: name, DNSNames: []string{"web.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	vc := newCertificate(t, ns, name)
	got := waitReady(t, ns, vc.Name, metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	s := getSecret(t, ns, "web-tls")
	assertServes(t, s, "web.example.com")

	leaf := pemCerts(t, s.Data["tls.crt"])
	if len(leaf) != 1 || !bytes.Equal(leaf[0].Raw, v.Leaf.Raw) {
		t.Fatalf("tls.crt should hold exactly the self-signed leaf, got %d certificates", len(leaf))
	}
	if !bytes.Equal(s.Data["ca.crt"], s.Data["tls.crt"]) {
		t.Errorf("a self-signed leaf is its own root: ca.crt should equal tls.crt")
	}
	if block, _ := pem.Decode(s.Data["tls.key"]); block == nil || block.Type != "PRIVATE KEY" {
		t.Errorf("tls.key should be PKCS#8 by default")
	}
	wantLabels := map[string]string{vaultcertv1.LabelManagedBy: "vaultcert", vaultcertv1.LabelCertificate: "web"}
	for k, want := range wantLabels {
		if s.Labels[k] != want {
			t.Errorf("label %s = %q, want %q", k, s.Labels[k], want)
		}
	}
	wantAnn := map[string]string{
		vaultcertv1.AnnotationVersion:         v.Version,
		vaultcertv1.AnnotationThumbprint:      v.Thumbprint,
		vaultcertv1.AnnotationCertificateName: name,
		vaultcertv1.AnnotationVaultURL:        vault.URL(),
		vaultcertv1.AnnotationNotAfter:        v.Leaf.NotAfter.UTC().Format("2006-01-02T15:04:05Z07:00"),
	}
	for k, want := range wantAnn {
		if s.Annotations[k] != want {
			t.Errorf("annotation %s = %q, want %q", k, s.Annotations[k], want)
		}
	}
	if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != got.UID || !*s.OwnerReferences[0].Controller {
		t.Errorf("Secret should be controller-owned by the VaultCertificate, got %+v", s.OwnerReferences)
	}
	st := got.Status
	if st.Version != v.Version || st.Thumbprint != v.Thumbprint || st.Subject != v.Leaf.Subject.String() ||
		st.NotAfter == nil || !st.NotAfter.Time.Equal(v.Leaf.NotAfter) || st.NextRefreshTime == nil ||
		st.LastSyncTime == nil || st.RenewalTime == nil || len(st.DNSNames) != 1 {
		t.Errorf("status not filled from the certificate: %+v", st)
	}
}

func TestFirstSyncECPEM(t *testing.T) {
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	name := uniqueName("ec")
	v, err := vault.Seed(fakevault.CertSpec{Name: name, KeyType: "EC", Curve: "P-384", ContentType: "application/x-pem-file",
		DNSNames: []string{"api.example.com"}, ChainDepth: 2})
	if err != nil {
		t.Fatal(err)
	}
	newCertificate(t, ns, name, func(vc *vaultcertv1.VaultCertificate) {
		vc.Spec.PrivateKeyEncoding = vaultcertv1.PrivateKeyPKCS1
	})
	waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	s := getSecret(t, ns, "web-tls")
	assertServes(t, s, "api.example.com")
	if block, _ := pem.Decode(s.Data["tls.key"]); block == nil || block.Type != "EC PRIVATE KEY" {
		t.Errorf("privateKeyEncoding PKCS1 on an EC key should give an EC PRIVATE KEY block")
	}
	chain := pemCerts(t, s.Data["tls.crt"])
	if len(chain) != 1 || !bytes.Equal(chain[0].Raw, v.Leaf.Raw) {
		t.Errorf("tls.crt should hold the vault's P-384 leaf alone (its issuer is the self-signed root, in ca.crt)")
	}
	if ca := pemCerts(t, s.Data["ca.crt"]); len(ca) != 1 || !bytes.Equal(ca[0].Raw, v.Chain[1].Raw) {
		t.Errorf("ca.crt should be the root")
	}
}

func TestScrambledThreeLevelChain(t *testing.T) {
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	name := uniqueName("chain")
	v, err := vault.Seed(fakevault.CertSpec{Name: name, ChainDepth: 3, ScrambleChain: true, DNSNames: []string{"shop.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	newCertificate(t, ns, name)
	waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	s := getSecret(t, ns, "web-tls")
	assertServes(t, s, "shop.example.com")

	chain := pemCerts(t, s.Data["tls.crt"])
	if len(chain) != 2 || !bytes.Equal(chain[0].Raw, v.Chain[0].Raw) || !bytes.Equal(chain[1].Raw, v.Chain[1].Raw) {
		t.Fatalf("tls.crt should be leaf then intermediate (no root), got %d certificates", len(chain))
	}
	ca := pemCerts(t, s.Data["ca.crt"])
	if len(ca) != 1 || !bytes.Equal(ca[0].Raw, v.Chain[2].Raw) {
		t.Fatalf("ca.crt should be the root")
	}
	bundle, err := pki.ParseTLS(s.Data["tls.crt"], s.Data["tls.key"])
	if err != nil || !pki.KeyMatches(bundle.Leaf, bundle.Key) {
		t.Fatalf("tls.key does not match the leaf: %v", err)
	}
}

func TestChainModesAndOutputs(t *testing.T) {
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	name := uniqueName("full")
	v, err := vault.Seed(fakevault.CertSpec{Name: name, ChainDepth: 3})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pw := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "p12", Namespace: ns}, StringData: map[string]string{"password": "changeit"}}
	if err := k8s.Create(ctx, pw); err != nil {
		t.Fatal(err)
	}
	newCertificate(t, ns, name, func(vc *vaultcertv1.VaultCertificate) {
		vc.Spec.Chain = vaultcertv1.ChainFull
		vc.Spec.AdditionalOutputFormats = []vaultcertv1.AdditionalOutputFormat{
			{Type: vaultcertv1.OutputCombinedPEM}, {Type: vaultcertv1.OutputDER},
			{Type: vaultcertv1.OutputPKCS12, PasswordSecretRef: &vaultcertv1.SecretKeySelector{Name: "p12"}},
		}
		vc.Spec.SecretTemplate = &vaultcertv1.SecretTemplate{Labels: map[string]string{"team": "shop"}, Annotations: map[string]string{"note": "hi"}}
	})
	waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	s := getSecret(t, ns, "web-tls")
	if n := len(pemCerts(t, s.Data["tls.crt"])); n != 3 {
		t.Errorf("chain Full should write leaf, intermediate and root: got %d", n)
	}
	if !bytes.Equal(s.Data["tls.der"], v.Leaf.Raw) || len(s.Data["key.der"]) == 0 || len(s.Data["tls-combined.pem"]) == 0 {
		t.Errorf("DER and combined outputs missing or wrong")
	}
	if len(s.Data["keystore.p12"]) == 0 {
		t.Errorf("keystore.p12 missing")
	}
	if s.Labels["team"] != "shop" || s.Annotations["note"] != "hi" {
		t.Errorf("secretTemplate not applied: %v %v", s.Labels, s.Annotations)
	}
}

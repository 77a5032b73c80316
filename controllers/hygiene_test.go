package controllers_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/fakevault"
	"github.com/vaultcert/vaultcert/internal/keyvault"
)

// jwtPattern matches a JWT (ServiceAccount tokens, Entra ID access tokens, client assertions).
var jwtPattern = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}`)

// TestNoSecretsInLogsEventsStatusOrMetrics drives the controller through successful syncs with every auth
// method and output format and through failures (wrong secret, key mismatch, access denied, federation
// mismatch), with the manager logging at the highest verbosity, then looks for private key material, client
// secrets, passwords and tokens in everything an operator or a log pipeline sees.
func TestNoSecretsInLogsEventsStatusOrMetrics(t *testing.T) {
	ctx := context.Background()
	const wrongSecret = "hygiene-wrong-client-secret-9f1c"
	const p12Password = "hygiene-pkcs12-password-4e2a"
	var namespaces []string
	var certs []struct{ ns, name string }
	track := func(ns, cert string) {
		namespaces = append(namespaces, ns)
		certs = append(certs, struct{ ns, name string }{ns, cert})
	}

	// 1. Client secret; RSA PFX and EC PEM; every additional output format, PKCS12 with a password.
	nsSecret := newNamespace(t, nil)
	newConnection(t, nsSecret)
	createSecret(t, nsSecret, "p12", map[string]string{"password": p12Password})
	rsaName := uniqueName("hyg-rsa")
	if _, err := vault.Seed(fakevault.CertSpec{Name: rsaName, ChainDepth: 3}); err != nil {
		t.Fatal(err)
	}
	newCertificate(t, nsSecret, rsaName, func(vc *vaultcertv1.VaultCertificate) {
		vc.Spec.AdditionalOutputFormats = []vaultcertv1.AdditionalOutputFormat{
			{Type: vaultcertv1.OutputCombinedPEM}, {Type: vaultcertv1.OutputDER},
			{Type: vaultcertv1.OutputPKCS12, PasswordSecretRef: &vaultcertv1.SecretKeySelector{Name: "p12"}},
		}
	})
	track(nsSecret, rsaName)
	ecName := uniqueName("hyg-ec")
	if _, err := vault.Seed(fakevault.CertSpec{Name: ecName, KeyType: "EC", ContentType: "application/x-pem-file"}); err != nil {
		t.Fatal(err)
	}
	newCertificate(t, nsSecret, ecName, func(vc *vaultcertv1.VaultCertificate) {
		vc.Name, vc.Spec.SecretName, vc.Spec.PrivateKeyEncoding = "ec", "ec-tls", vaultcertv1.PrivateKeyPKCS1
	})
	track(nsSecret, ecName)
	waitReady(t, nsSecret, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	waitReady(t, nsSecret, "ec", metav1.ConditionTrue, vaultcertv1.ReasonSynced)

	// 2. A rotation, and a version whose key does not match (the last good Secret stays).
	if _, err := vault.Rotate(rsaName); err != nil {
		t.Fatal(err)
	}
	if err := vault.CorruptKey(rsaName, ""); err != nil {
		t.Fatal(err)
	}
	refresh(t, nsSecret, "web")
	eventually(t, "the corrupt version to be refused", func() (bool, string) {
		msg := readyMessage(getCert(t, nsSecret, "web"))
		return strings.Contains(msg, "keeps its last good certificate") || strings.Contains(msg, "not usable"), msg
	})
	if _, err := vault.Rotate(rsaName); err != nil {
		t.Fatal(err)
	}
	refresh(t, nsSecret, "web")
	latest, err := vault.Latest(rsaName)
	if err != nil {
		t.Fatal(err)
	}
	waitSecretVersion(t, nsSecret, "web-tls", latest.Version)

	// 3. Client certificate.
	nsCert, _, clientPEM := certificateConnection(t, "hyg-cert-client")
	certName := seed(t, "hyg-certauth")
	newCertificate(t, nsCert, certName)
	track(nsCert, certName)
	waitReady(t, nsCert, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)

	// 4. Workload identity, good and refused.
	wiClient := uniqueName("hyg-wi")
	nsWI := newNamespace(t, nil)
	vault.AddFederatedCredential(wiClient, clusterIssuer, "system:serviceaccount:"+nsWI+":app")
	createServiceAccount(t, nsWI, "app", wiAnnotations(wiClient))
	createServiceAccount(t, nsWI, "stranger", wiAnnotations(wiClient))
	createConnection(t, nsWI, "vault", &vaultcertv1.ConnectionAuth{WorkloadIdentity: &vaultcertv1.WorkloadIdentityAuth{
		ServiceAccountRef: &vaultcertv1.ServiceAccountReference{Name: "app"}}})
	createConnection(t, nsWI, "stranger", &vaultcertv1.ConnectionAuth{WorkloadIdentity: &vaultcertv1.WorkloadIdentityAuth{
		ServiceAccountRef: &vaultcertv1.ServiceAccountReference{Name: "stranger"}}})
	wiName := seed(t, "hyg-wi")
	newCertificate(t, nsWI, wiName)
	track(nsWI, wiName)
	newCertificate(t, nsWI, wiName, func(vc *vaultcertv1.VaultCertificate) {
		vc.Name, vc.Spec.SecretName, vc.Spec.ConnectionRef.Name = "refused", "refused-tls", "stranger"
	})
	waitReady(t, nsWI, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	waitReady(t, nsWI, "refused", metav1.ConditionFalse, vaultcertv1.ReasonAuthenticationFailed)

	// 5. Wrong client secret, access denied, a non-exportable key.
	nsFail := newNamespace(t, nil)
	secretConnection(t, nsFail, testClientID, wrongSecret)
	newCertificate(t, nsFail, seed(t, "hyg-wrong"))
	waitReady(t, nsFail, "web", metav1.ConditionFalse, vaultcertv1.ReasonAuthenticationFailed)
	nsDenied := newNamespace(t, nil)
	newConnection(t, nsDenied)
	denied := seed(t, "hyg-denied")
	vault.InjectFault(fakevault.Fault{Operation: fakevault.OpGetSecret, Name: denied, Status: 403, InnerCode: "ForbiddenByRbac"})
	t.Cleanup(vault.ClearFaults)
	newCertificate(t, nsDenied, denied)
	waitReady(t, nsDenied, "web", metav1.ConditionFalse, vaultcertv1.ReasonAccessDenied)
	noKey := uniqueName("hyg-nokey")
	if _, err := vault.Seed(fakevault.CertSpec{Name: noKey, KeyType: "EC", NotExportable: true}); err != nil {
		t.Fatal(err)
	}
	newCertificate(t, nsDenied, noKey, func(vc *vaultcertv1.VaultCertificate) { vc.Name, vc.Spec.SecretName = "nokey", "nokey-tls" })
	waitReady(t, nsDenied, "nokey", metav1.ConditionFalse, vaultcertv1.ReasonKeyNotExportable)
	namespaces = append(namespaces, nsFail, nsDenied)

	// What must never show: every private key the controller handled (PEM body lines, DER in base64 and
	// hex), the PFX and PEM values Key Vault returned, the client secrets, the PKCS12 password, the client
	// certificate's key, and any token.
	var forbidden []string
	addPEMKeys := func(data []byte) {
		for {
			var block *pem.Block
			block, data = pem.Decode(data)
			if block == nil {
				return
			}
			if !strings.Contains(block.Type, "PRIVATE KEY") {
				continue
			}
			forbidden = append(forbidden, derForms(block.Bytes)...)
		}
	}
	for _, c := range certs {
		var list corev1.SecretList
		if err := k8s.List(ctx, &list, client.InNamespace(c.ns)); err != nil {
			t.Fatal(err)
		}
		for _, s := range list.Items {
			addPEMKeys(s.Data[corev1.TLSPrivateKeyKey])
			addPEMKeys(s.Data["tls-combined.pem"])
			if der := s.Data["key.der"]; len(der) > 0 {
				forbidden = append(forbidden, derForms(der)...)
			}
			if p12 := s.Data["keystore.p12"]; len(p12) > 0 {
				forbidden = append(forbidden, chunks(base64.StdEncoding.EncodeToString(p12))...)
			}
		}
		for _, v := range vaultSecretValues(t, c.name) {
			forbidden = append(forbidden, chunks(v)...)
			addPEMKeys([]byte(v))
		}
	}
	addPEMKeys(clientPEM)
	forbidden = append(forbidden, testClientSecret, wrongSecret, p12Password)
	if len(forbidden) < 20 {
		t.Fatalf("only %d forbidden strings collected: the scenario did not produce key material", len(forbidden))
	}

	// Where they must not be: logs, events, status, metrics.
	logText := logs.String()
	if !strings.Contains(logText, `"writing Secret"`) {
		t.Fatal("the captured log has no V(1) line: the hygiene check would not see verbose logging")
	}
	var places []struct{ name, text string }
	places = append(places, struct{ name, text string }{"logs", logText})
	for _, ns := range namespaces {
		var ev eventsv1.EventList
		if err := k8s.List(ctx, &ev, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		var coreEv corev1.EventList
		if err := k8s.List(ctx, &coreEv, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		var vcs vaultcertv1.VaultCertificateList
		if err := k8s.List(ctx, &vcs, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		var conns vaultcertv1.VaultConnectionList
		if err := k8s.List(ctx, &conns, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		if len(ev.Items)+len(coreEv.Items) == 0 {
			t.Errorf("no events in %s: the check would be vacuous", ns)
		}
		places = append(places,
			struct{ name, text string }{"events in " + ns, mustJSON(t, ev) + mustJSON(t, coreEv)},
			struct{ name, text string }{"status in " + ns, mustJSON(t, vcs) + mustJSON(t, conns)})
	}
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var metricsText strings.Builder
	for _, mf := range families {
		metricsText.WriteString(mf.String())
	}
	places = append(places, struct{ name, text string }{"metrics", metricsText.String()})

	for _, p := range places {
		for _, f := range forbidden {
			if strings.Contains(p.text, f) {
				t.Errorf("%s contain secret material (%d characters starting %q)%s", p.name, len(f), f[:min(6, len(f))], where(p.text, f))
			}
		}
		if m := jwtPattern.FindString(p.text); m != "" {
			t.Errorf("%s contain a token (starting %q)", p.name, m[:12])
		}
		if strings.Contains(p.text, "PRIVATE KEY-----") {
			t.Errorf("%s contain a PEM private key header", p.name)
		}
	}
}

// derForms are the encodings of a DER key that could leak: its base64 (as in PEM) in 48-character chunks,
// and its hex.
func derForms(der []byte) []string {
	out := chunks(base64.StdEncoding.EncodeToString(der))
	h := hex.EncodeToString(der)
	for i := 0; i+64 <= len(h); i += 256 {
		out = append(out, h[i:i+64])
	}
	return out
}

// chunks splits s into 48-character pieces (shorter tails dropped): any of them appearing is a leak, and 48
// base64 characters do not occur by chance.
func chunks(s string) []string {
	s = strings.NewReplacer("\n", "", "\r", "").Replace(s)
	var out []string
	for i := 0; i+48 <= len(s); i += 48 {
		out = append(out, s[i:i+48])
	}
	return out
}

// vaultSecretValues reads every version's secret value (base64 PFX or PEM) of a certificate from the fake
// vault through the real client, as the controller receives them.
func vaultSecretValues(t *testing.T, name string) []string {
	t.Helper()
	f := keyvault.NewFactory(keyvault.FactoryOptions{})
	kv, err := f.Client("hygiene", keyvault.Config{VaultURL: vault.URL(),
		Auth: keyvault.AuthConfig{Method: keyvault.AuthClientSecret, TenantID: vault.TenantID(), ClientID: testClientID, ClientSecret: testClientSecret},
		Cloud: keyvault.CloudConfig{AuthorityHost: vault.AuthorityHost(), DisableInstanceDiscovery: true,
			DisableChallengeResourceVerification: true, CABundle: vault.CAPEM()}})
	if err != nil {
		t.Fatal(err)
	}
	versions, err := vault.Versions(name)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, v := range versions {
		s, err := kv.GetSecret(context.Background(), name, v.Version)
		if err != nil {
			if keyvault.IsForbidden(err) {
				continue // the access-denied scenario's fault
			}
			t.Fatal(err)
		}
		out = append(out, s.Value)
	}
	return out
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// where describes the log line holding a leak by its message and field names, never its values.
func where(text, leak string) string {
	i := strings.Index(text, leak)
	start := strings.LastIndex(text[:i], "\n") + 1
	end := strings.Index(text[i:], "\n")
	if end < 0 {
		end = len(text) - i
	}
	var line map[string]any
	if json.Unmarshal([]byte(text[start:i+end]), &line) != nil {
		return ""
	}
	var fields []string
	for k := range line {
		fields = append(fields, k)
	}
	return fmt.Sprintf(" in the log line %q (logger %v, fields %v)", line["M"], line["N"], fields)
}

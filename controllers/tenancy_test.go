package controllers_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/controllers"
	"github.com/vaultcert/vaultcert/internal/connection"
	"github.com/vaultcert/vaultcert/internal/fakevault"
)

// The tenancy tests: each namespace obtains only what its own identity may read from Key Vault.

// seed puts an EC certificate (fast to generate) into the fake vault under a fresh name.
func seed(t *testing.T, prefix string) string {
	t.Helper()
	name := uniqueName(prefix)
	if _, err := vault.Seed(fakevault.CertSpec{Name: name, KeyType: "EC"}); err != nil {
		t.Fatal(err)
	}
	return name
}

// readyMessage returns the message of a VaultCertificate's Ready condition.
func readyMessage(vc *vaultcertv1.VaultCertificate) string {
	if c := meta.FindStatusCondition(vc.Status.Conditions, vaultcertv1.ConditionReady); c != nil {
		return c.Message
	}
	return ""
}

// wantMessage fails unless msg contains every part.
func wantMessage(t *testing.T, msg string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			t.Errorf("message should contain %q: %s", p, msg)
		}
	}
}

// createSecret creates a Secret with string data.
func createSecret(t *testing.T, ns, name string, data map[string]string) {
	t.Helper()
	if err := k8s.Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: data}); err != nil {
		t.Fatal(err)
	}
}

// createConnection creates a VaultConnection to the fake vault with the given auth.
func createConnection(t *testing.T, ns, name string, auth *vaultcertv1.ConnectionAuth) {
	t.Helper()
	conn := &vaultcertv1.VaultConnection{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: vaultcertv1.ConnectionSpec{VaultURL: vault.URL(), Auth: auth, Cloud: cloudConfig()}}
	if err := k8s.Create(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
}

// secretConnection creates a VaultConnection "vault" in ns that authenticates as clientID with secret.
func secretConnection(t *testing.T, ns, clientID, secret string) {
	t.Helper()
	createSecret(t, ns, "kv-credentials", map[string]string{"clientSecret": secret})
	createConnection(t, ns, "vault", &vaultcertv1.ConnectionAuth{ServicePrincipal: &vaultcertv1.ServicePrincipalAuth{
		TenantID: vault.TenantID(), ClientID: clientID,
		ClientSecretRef: &vaultcertv1.SecretKeyReference{Name: "kv-credentials", Key: "clientSecret"},
	}})
}

// createClusterConnection creates a ClusterVaultConnection to the fake vault and deletes it at the end.
func createClusterConnection(t *testing.T, auth *vaultcertv1.ConnectionAuth, selector *metav1.LabelSelector) string {
	t.Helper()
	conn := &vaultcertv1.ClusterVaultConnection{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("cluster")},
		Spec: vaultcertv1.ClusterVaultConnectionSpec{
			ConnectionSpec:    vaultcertv1.ConnectionSpec{VaultURL: vault.URL(), Auth: auth, Cloud: clusterCloudConfig(vault)},
			NamespaceSelector: selector,
		}}
	if err := k8s.Create(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), conn) })
	return conn.Name
}

// viaCluster points a VaultCertificate at a ClusterVaultConnection.
func viaCluster(name string) func(*vaultcertv1.VaultCertificate) {
	return func(vc *vaultcertv1.VaultCertificate) {
		vc.Spec.ConnectionRef = vaultcertv1.ConnectionReference{Kind: vaultcertv1.ClusterVaultConnectionKind, Name: name}
	}
}

// createServiceAccount creates a ServiceAccount with the given annotations.
func createServiceAccount(t *testing.T, ns, name string, annotations map[string]string) *corev1.ServiceAccount {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: annotations}}
	if err := k8s.Create(context.Background(), sa); err != nil {
		t.Fatal(err)
	}
	return sa
}

// wiAnnotations are the Azure workload identity annotations of a ServiceAccount.
func wiAnnotations(clientID string) map[string]string {
	return map[string]string{
		connection.AnnotationWorkloadIdentityClientID: clientID,
		connection.AnnotationWorkloadIdentityTenantID: vault.TenantID(),
	}
}

func TestIdentityOnlyObtainsWhatItMayRead(t *testing.T) {
	clientA, clientB := uniqueName("identity-a"), uniqueName("identity-b")
	vault.AddClientSecret(clientA, "secret-a")
	vault.AddClientSecret(clientB, "secret-b")
	certA, certB := seed(t, "only-a"), seed(t, "only-b")
	vault.Restrict(clientA, certA)
	vault.Restrict(clientB, certB)

	nsA, nsB := newNamespace(t, nil), newNamespace(t, nil)
	secretConnection(t, nsA, clientA, "secret-a")
	secretConnection(t, nsB, clientB, "secret-b")

	// B reads its certificate; A, asking for B's, is refused by Key Vault and told which role is missing.
	newCertificate(t, nsB, certB)
	waitReady(t, nsB, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	newCertificate(t, nsA, certB)
	vc := waitReady(t, nsA, "web", metav1.ConditionFalse, vaultcertv1.ReasonAccessDenied)
	wantMessage(t, readyMessage(vc), "Key Vault Certificate User", certB)
	if s := getSecret(t, nsA, "web-tls"); s != nil {
		t.Fatalf("namespace A got a Secret for B's certificate: %v", s.Name)
	}
	// Key Vault refused A's identity: no Secret of namespace A holds B's key (B's holds it).
	var inA corev1.SecretList
	if err := k8s.List(context.Background(), &inA, client.InNamespace(nsA)); err != nil {
		t.Fatal(err)
	}
	keyB := string(getSecret(t, nsB, "web-tls").Data[corev1.TLSPrivateKeyKey])
	for _, s := range inA.Items {
		for k, v := range s.Data {
			if string(v) == keyB {
				t.Errorf("Secret %s/%s (%s) holds B's private key", nsA, s.Name, k)
			}
		}
	}
	// A still reads its own.
	newCertificate(t, nsA, certA, func(vc *vaultcertv1.VaultCertificate) { vc.Name, vc.Spec.SecretName = "mine", "mine-tls" })
	waitReady(t, nsA, "mine", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
}

// secretClusterConnection creates a ClusterVaultConnection authenticating with the test service principal,
// whose secret lives in a namespace of its own, admitting the namespaces selector selects.
func secretClusterConnection(t *testing.T, selector *metav1.LabelSelector) string {
	t.Helper()
	credNS := newNamespace(t, nil)
	createSecret(t, credNS, "kv-credentials", map[string]string{"clientSecret": testClientSecret})
	return createClusterConnection(t, &vaultcertv1.ConnectionAuth{ServicePrincipal: &vaultcertv1.ServicePrincipalAuth{
		TenantID: vault.TenantID(), ClientID: testClientID,
		ClientSecretRef: &vaultcertv1.SecretKeyReference{Name: "kv-credentials", Namespace: credNS, Key: "clientSecret"},
	}}, selector)
}

func TestNamespaceSelectorIsEnforcedBeforeKeyVault(t *testing.T) {
	conn := secretClusterConnection(t, &metav1.LabelSelector{MatchLabels: map[string]string{"team": "blue"}})

	cert := seed(t, "selector")
	red := newNamespace(t, map[string]string{"team": "red"})
	newCertificate(t, red, cert, viaCluster(conn))
	vc := waitReady(t, red, "web", metav1.ConditionFalse, vaultcertv1.ReasonConnectionNotAllowed)
	wantMessage(t, readyMessage(vc), conn, red, "team=blue")
	for _, op := range []string{fakevault.OpGetCertificate, fakevault.OpGetSecret} {
		if n := vault.CountFor(op, cert); n != 0 {
			t.Fatalf("%s was called %d times for a namespace the selector does not admit", op, n)
		}
	}

	blue := newNamespace(t, map[string]string{"team": "blue"})
	newCertificate(t, blue, cert, viaCluster(conn))
	waitReady(t, blue, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)

	// Asking again does not leak the certificate to red: refused on every try.
	refresh(t, red, "web")
	waitReady(t, red, "web", metav1.ConditionFalse, vaultcertv1.ReasonConnectionNotAllowed)
	if s := getSecret(t, red, "web-tls"); s != nil {
		t.Fatal("a namespace outside the selector got a Secret")
	}
}

func TestConnectionIsLookedUpInTheCertificatesNamespaceOnly(t *testing.T) {
	owner := newNamespace(t, nil)
	newConnection(t, owner)
	cert := seed(t, "borrow")
	other := newNamespace(t, nil)
	newCertificate(t, other, cert) // names "vault", which exists only in owner
	vc := waitReady(t, other, "web", metav1.ConditionFalse, vaultcertv1.ReasonConnectionNotReady)
	wantMessage(t, readyMessage(vc), `VaultConnection "vault" not found in namespace "`+other+`"`)
	if n := kvReads(cert); n != 0 {
		t.Fatalf("Key Vault was called %d times through another namespace's connection", n)
	}
}

func TestAPIKeepsConnectionsInTheirNamespace(t *testing.T) {
	ns := newNamespace(t, nil)
	ctx := context.Background()
	spec := func(auth *vaultcertv1.ConnectionAuth) vaultcertv1.ConnectionSpec {
		return vaultcertv1.ConnectionSpec{VaultURL: "https://kv.vault.azure.net/", Auth: auth}
	}
	for _, tc := range []struct {
		name, message string
		spec          vaultcertv1.ConnectionSpec
	}{
		{"no auth: the controller's identity", "only a ClusterVaultConnection may use the controller's own identity", spec(nil)},
		{"empty auth", "only a ClusterVaultConnection may use the controller's own identity", spec(&vaultcertv1.ConnectionAuth{})},
		{"client secret in another namespace", "namespace is not allowed", spec(&vaultcertv1.ConnectionAuth{ServicePrincipal: &vaultcertv1.ServicePrincipalAuth{
			TenantID: "t", ClientID: "c", ClientSecretRef: &vaultcertv1.SecretKeyReference{Name: "s", Namespace: "kube-system", Key: "k"}}})},
		{"client certificate in another namespace", "namespace is not allowed", spec(&vaultcertv1.ConnectionAuth{ServicePrincipal: &vaultcertv1.ServicePrincipalAuth{
			TenantID: "t", ClientID: "c", ClientCertificateRef: &vaultcertv1.SecretKeyReference{Name: "s", Namespace: "kube-system", Key: "k"}}})},
		{"ServiceAccount in another namespace", "serviceAccountRef without namespace", spec(&vaultcertv1.ConnectionAuth{WorkloadIdentity: &vaultcertv1.WorkloadIdentityAuth{
			ServiceAccountRef: &vaultcertv1.ServiceAccountReference{Name: "vaultcert", Namespace: "vaultcert-system"}}})},
		{"workload identity without ServiceAccount: the controller's", "serviceAccountRef", spec(&vaultcertv1.ConnectionAuth{WorkloadIdentity: &vaultcertv1.WorkloadIdentityAuth{ClientID: "c", TenantID: "t"}})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := &vaultcertv1.VaultConnection{ObjectMeta: metav1.ObjectMeta{GenerateName: "bad-", Namespace: ns}, Spec: tc.spec}
			if err := k8s.Create(ctx, conn); err == nil || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("want a rejection mentioning %q, got %v", tc.message, err)
			}
		})
	}
	// The cluster kind must say where its references live.
	for _, auth := range []*vaultcertv1.ConnectionAuth{
		{ServicePrincipal: &vaultcertv1.ServicePrincipalAuth{TenantID: "t", ClientID: "c", ClientSecretRef: &vaultcertv1.SecretKeyReference{Name: "s", Key: "k"}}},
		{WorkloadIdentity: &vaultcertv1.WorkloadIdentityAuth{ServiceAccountRef: &vaultcertv1.ServiceAccountReference{Name: "sa"}}},
	} {
		conn := &vaultcertv1.ClusterVaultConnection{ObjectMeta: metav1.ObjectMeta{GenerateName: "bad-"},
			Spec: vaultcertv1.ClusterVaultConnectionSpec{ConnectionSpec: spec(auth)}}
		if err := k8s.Create(ctx, conn); err == nil || !strings.Contains(err.Error(), "need") {
			t.Errorf("a ClusterVaultConnection reference without namespace was accepted: %v", err)
		}
	}
}

// TestNamespacedManagedIdentityIsNotAllowed: the API server itself refuses a VaultConnection that would borrow
// the controller pod's managed identity (the controller refuses it too, for objects written before the rule).
func TestNamespacedManagedIdentityIsNotAllowed(t *testing.T) {
	ns := newNamespace(t, nil)
	conn := &vaultcertv1.VaultConnection{ObjectMeta: metav1.ObjectMeta{Name: "vault", Namespace: ns},
		Spec: vaultcertv1.ConnectionSpec{VaultURL: vault.URL(), Cloud: cloudConfig(),
			Auth: &vaultcertv1.ConnectionAuth{ManagedIdentity: &vaultcertv1.ManagedIdentityAuth{ClientID: "c"}}}}
	err := k8s.Create(context.Background(), conn)
	if err == nil {
		t.Fatal("a VaultConnection with managedIdentity was accepted")
	}
	wantMessage(t, err.Error(), "managedIdentity", "ClusterVaultConnection")
}

// rsaClientCertificate returns a self-signed RSA client certificate and its PEM (certificate, then key).
func rsaClientCertificate(t *testing.T) (*x509.Certificate, []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "vaultcert-client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	out = append(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	return cert, out
}

// certificateConnection creates, in a new namespace, a VaultConnection "vault" authenticating as a new client
// whose certificate the fake authority knows, and returns the namespace, the client ID and the certificate with
// its key (PEM).
func certificateConnection(t *testing.T, prefix string) (string, string, []byte) {
	t.Helper()
	client := uniqueName(prefix)
	cert, pemBytes := rsaClientCertificate(t)
	vault.AddClientCertificate(client, cert)
	ns := newNamespace(t, nil)
	createSecret(t, ns, "kv-cert", map[string]string{"tls.pem": string(pemBytes)})
	createConnection(t, ns, "vault", &vaultcertv1.ConnectionAuth{ServicePrincipal: &vaultcertv1.ServicePrincipalAuth{
		TenantID: vault.TenantID(), ClientID: client,
		ClientCertificateRef: &vaultcertv1.SecretKeyReference{Name: "kv-cert", Key: "tls.pem"},
	}})
	return ns, client, pemBytes
}

func TestClientCertificateAuth(t *testing.T) {
	ns, client, _ := certificateConnection(t, "cert-client")
	newCertificate(t, ns, seed(t, "certauth"))
	waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	waitConnectionReady(t, ns, "vault", metav1.ConditionTrue, controllers.ReasonConnected)

	// A certificate the application does not know is refused by Entra ID, and the message says what to do.
	ns2 := newNamespace(t, nil)
	_, otherPEM := rsaClientCertificate(t)
	createSecret(t, ns2, "kv-cert", map[string]string{"tls.pem": string(otherPEM)})
	createConnection(t, ns2, "vault", &vaultcertv1.ConnectionAuth{ServicePrincipal: &vaultcertv1.ServicePrincipalAuth{
		TenantID: vault.TenantID(), ClientID: client,
		ClientCertificateRef: &vaultcertv1.SecretKeyReference{Name: "kv-cert", Key: "tls.pem"},
	}})
	newCertificate(t, ns2, seed(t, "certauth"))
	vc := waitReady(t, ns2, "web", metav1.ConditionFalse, vaultcertv1.ReasonAuthenticationFailed)
	wantMessage(t, readyMessage(vc), "AADSTS700027", "upload that certificate")
}

func TestWorkloadIdentityPerServiceAccount(t *testing.T) {
	client := uniqueName("wi-client")
	ns := newNamespace(t, nil)
	vault.AddFederatedCredential(client, clusterIssuer, "system:serviceaccount:"+ns+":app")
	createServiceAccount(t, ns, "app", wiAnnotations(client))
	createConnection(t, ns, "vault", &vaultcertv1.ConnectionAuth{WorkloadIdentity: &vaultcertv1.WorkloadIdentityAuth{
		ServiceAccountRef: &vaultcertv1.ServiceAccountReference{Name: "app"}}})
	before := vault.Count(fakevault.OpToken)
	cert := seed(t, "wi")
	newCertificate(t, ns, cert)
	waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	waitConnectionReady(t, ns, "vault", metav1.ConditionTrue, controllers.ReasonConnected)
	if vault.Count(fakevault.OpToken) == before {
		t.Fatal("no token was requested")
	}

	// Another namespace's ServiceAccount of the same name is another subject: no federated credential.
	other := newNamespace(t, nil)
	createServiceAccount(t, other, "app", wiAnnotations(client))
	createConnection(t, other, "vault", &vaultcertv1.ConnectionAuth{WorkloadIdentity: &vaultcertv1.WorkloadIdentityAuth{
		ServiceAccountRef: &vaultcertv1.ServiceAccountReference{Name: "app"}}})
	newCertificate(t, other, cert)
	vc := waitReady(t, other, "web", metav1.ConditionFalse, vaultcertv1.ReasonAuthenticationFailed)
	wantMessage(t, readyMessage(vc), "AADSTS70021", "system:serviceaccount:"+other+":app", "add a federated credential")
	t.Logf("Ready message: %s", readyMessage(vc))
}

func TestWorkloadIdentityClusterConnection(t *testing.T) {
	client := uniqueName("wi-cluster")
	saNS := newNamespace(t, nil)
	vault.AddFederatedCredential(client, clusterIssuer, "system:serviceaccount:"+saNS+":shared")
	// No annotations: clientID and tenantID come from the fields.
	createServiceAccount(t, saNS, "shared", nil)
	conn := createClusterConnection(t, &vaultcertv1.ConnectionAuth{WorkloadIdentity: &vaultcertv1.WorkloadIdentityAuth{
		ServiceAccountRef: &vaultcertv1.ServiceAccountReference{Name: "shared", Namespace: saNS},
		ClientID:          client, TenantID: vault.TenantID(),
	}}, nil)
	ns := newNamespace(t, nil)
	newCertificate(t, ns, seed(t, "wi-cluster"), viaCluster(conn))
	waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
}

func TestWorkloadIdentityFollowsServiceAccountChanges(t *testing.T) {
	client := uniqueName("wi-late")
	ns := newNamespace(t, nil)
	vault.AddFederatedCredential(client, clusterIssuer, "system:serviceaccount:"+ns+":app")
	sa := createServiceAccount(t, ns, "app", nil)
	createConnection(t, ns, "vault", &vaultcertv1.ConnectionAuth{WorkloadIdentity: &vaultcertv1.WorkloadIdentityAuth{
		ServiceAccountRef: &vaultcertv1.ServiceAccountReference{Name: "app"}}})
	cert := seed(t, "wi-late")
	newCertificate(t, ns, cert)

	// Neither fields nor annotations: the message says where to put the IDs, and Key Vault is not asked.
	vc := waitReady(t, ns, "web", metav1.ConditionFalse, vaultcertv1.ReasonConnectionNotReady)
	wantMessage(t, readyMessage(vc), connection.AnnotationWorkloadIdentityClientID, connection.AnnotationWorkloadIdentityTenantID, "spec.auth.workloadIdentity.clientID")
	if n := kvReads(cert); n != 0 {
		t.Fatalf("Key Vault was called %d times", n)
	}

	// A wrong client ID: Entra ID does not know the application.
	patchAnnotations(t, sa, wiAnnotations("00000000-0000-0000-0000-000000000000"))
	vc = waitReady(t, ns, "web", metav1.ConditionFalse, vaultcertv1.ReasonAuthenticationFailed)
	wantMessage(t, readyMessage(vc), "AADSTS700016", "check clientID")

	// Fixing the annotation rebuilds the credential without a restart.
	patchAnnotations(t, sa, wiAnnotations(client))
	waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
}

// patchAnnotations replaces a ServiceAccount's annotations.
func patchAnnotations(t *testing.T, sa *corev1.ServiceAccount, annotations map[string]string) {
	t.Helper()
	var cur corev1.ServiceAccount
	if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: sa.Namespace, Name: sa.Name}, &cur); err != nil {
		t.Fatal(err)
	}
	cur.Annotations = annotations
	if err := k8s.Update(context.Background(), &cur); err != nil {
		t.Fatal(err)
	}
}

func TestControllerOwnWorkloadIdentity(t *testing.T) {
	// Only a ClusterVaultConnection without serviceAccountRef uses the controller's own workload identity,
	// read from the environment the Azure workload identity webhook gives the controller's pod.
	conn := createClusterConnection(t, &vaultcertv1.ConnectionAuth{WorkloadIdentity: &vaultcertv1.WorkloadIdentityAuth{}}, nil)
	ns := newNamespace(t, nil)
	cert := seed(t, "own")
	t.Setenv("AZURE_CLIENT_ID", "")
	t.Setenv("AZURE_TENANT_ID", "")
	t.Setenv("AZURE_FEDERATED_TOKEN_FILE", "")
	newCertificate(t, ns, cert, viaCluster(conn))
	vc := waitReady(t, ns, "web", metav1.ConditionFalse, vaultcertv1.ReasonConnectionNotReady)
	wantMessage(t, readyMessage(vc), "AZURE_FEDERATED_TOKEN_FILE", "azure.workload.identity/use=true")

	// Give "the controller's pod" an identity: a projected token of its ServiceAccount in a file.
	client := uniqueName("controller")
	ctrlNS := newNamespace(t, nil)
	sa := createServiceAccount(t, ctrlNS, "vaultcert", nil)
	vault.AddFederatedCredential(client, clusterIssuer, "system:serviceaccount:"+ctrlNS+":vaultcert")
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{connection.WorkloadIdentityAudience}}}
	if err := k8s.SubResource("token").Create(context.Background(), sa, tr); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(t.TempDir(), "azure-identity-token")
	if err := os.WriteFile(tokenFile, []byte(tr.Status.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AZURE_CLIENT_ID", client)
	t.Setenv("AZURE_TENANT_ID", vault.TenantID())
	t.Setenv("AZURE_FEDERATED_TOKEN_FILE", tokenFile)
	refresh(t, ns, "web")
	waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
}

func TestRotatedClientSecretIsPickedUp(t *testing.T) {
	client := uniqueName("rotating")
	vault.AddClientSecret(client, "first-secret")
	ns := newNamespace(t, nil)
	secretConnection(t, ns, client, "first-secret")
	cert := seed(t, "rotating")
	newCertificate(t, ns, cert)
	waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)

	// The Secret gets a value Entra ID does not know yet: the next reconcile uses it (and says so), which
	// proves the credential was rebuilt from the Secret without a restart.
	updateSecret(t, ns, "kv-credentials", "clientSecret", "second-secret")
	if _, err := vault.Rotate(cert); err != nil {
		t.Fatal(err)
	}
	refresh(t, ns, "web")
	eventually(t, "the new secret to be tried", func() (bool, string) {
		vc := getCert(t, ns, "web")
		msg := readyMessage(vc)
		return strings.Contains(msg, "AADSTS7000215"), msg
	})
	// Entra ID learns the new secret and forgets the old one: the certificate syncs with the new one.
	vault.AddClientSecret(client, "second-secret")
	vault.RemoveClientSecret(client, "first-secret")
	latest, err := vault.Latest(cert)
	if err != nil {
		t.Fatal(err)
	}
	waitSecretVersion(t, ns, "web-tls", latest.Version)
	waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
}

// updateSecret sets one key of a Secret.
func updateSecret(t *testing.T, ns, name, key, value string) {
	t.Helper()
	var s corev1.Secret
	if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &s); err != nil {
		t.Fatal(err)
	}
	s.Data[key] = []byte(value)
	if err := k8s.Update(context.Background(), &s); err != nil {
		t.Fatal(err)
	}
}

func TestAuthenticationAndAccessFailuresNameTheFix(t *testing.T) {
	t.Run("wrong client secret", func(t *testing.T) {
		ns := newNamespace(t, nil)
		secretConnection(t, ns, testClientID, "not-the-secret")
		newCertificate(t, ns, seed(t, "wrongsecret"))
		vc := waitReady(t, ns, "web", metav1.ConditionFalse, vaultcertv1.ReasonAuthenticationFailed)
		wantMessage(t, readyMessage(vc), "AADSTS7000215", "client secret in the connection's Secret is wrong")
		waitConnectionReady(t, ns, "vault", metav1.ConditionFalse, vaultcertv1.ReasonAuthenticationFailed)
	})
	// Key Vault's refusals, each answered by the fake for one certificate: the reason and the fix in the message.
	// A first sync reads the key material (GetSecret); the metadata (GetCertificate) is read at a refresh, so
	// those refusals are met by a refresh of a synced certificate.
	for _, tc := range []struct {
		name   string
		fault  fakevault.Fault
		reason string
		fix    []string
	}{
		{"Key Vault refuses the token", fakevault.Fault{Operation: fakevault.OpGetSecret, Status: 401, Code: "Unauthorized",
			Message: "AKV10032: Invalid issuer."}, vaultcertv1.ReasonAuthenticationFailed, []string{"refused the connection's token", "tenantID"}},
		{"RBAC on the certificate", fakevault.Fault{Operation: fakevault.OpGetCertificate, Status: 403, InnerCode: "ForbiddenByRbac"},
			vaultcertv1.ReasonAccessDenied, []string{"Key Vault Certificate User"}},
		{"RBAC on the private key", fakevault.Fault{Operation: fakevault.OpGetSecret, Status: 403, InnerCode: "ForbiddenByRbac"},
			vaultcertv1.ReasonAccessDenied, []string{"Key Vault Secrets User"}},
		{"access policy", fakevault.Fault{Operation: fakevault.OpGetCertificate, Status: 403, InnerCode: "AccessDenied"},
			vaultcertv1.ReasonAccessDenied, []string{"access policy", "secrets get"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNamespace(t, nil)
			newConnection(t, ns)
			cert := seed(t, "refused")
			tc.fault.Name = cert
			t.Cleanup(vault.ClearFaults)
			if tc.fault.Operation == fakevault.OpGetCertificate {
				newCertificate(t, ns, cert)
				waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
				vault.InjectFault(tc.fault)
				refresh(t, ns, "web")
			} else {
				vault.InjectFault(tc.fault)
				newCertificate(t, ns, cert)
			}
			vc := waitReady(t, ns, "web", metav1.ConditionFalse, tc.reason)
			wantMessage(t, readyMessage(vc), tc.fix...)
		})
	}
}

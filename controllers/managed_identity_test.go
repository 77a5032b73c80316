package controllers_test

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/controllers"
	"github.com/vaultcert/vaultcert/internal/fakevault"
)

// useManagedIdentityEndpoint gives "the controller's host" the fake vault's managed identity endpoint for the
// rest of the test: azidentity selects the App Service source from IDENTITY_ENDPOINT and IDENTITY_HEADER when
// a managed identity credential is built (the client factory builds it lazily, when a connection is first
// used) and reads them again on every token request. t.Setenv restores the environment at the end, after the
// test's connections are deleted (cleanups run last-in first-out), and no other test runs meanwhile (the
// suite's tests are sequential).
func useManagedIdentityEndpoint(t *testing.T) {
	t.Helper()
	for k, v := range vault.ManagedIdentityEnv() {
		t.Setenv(k, v)
	}
	t.Setenv("IDENTITY_SERVER_THUMBPRINT", "") // would select Service Fabric
}

func TestManagedIdentityClusterConnection(t *testing.T) {
	useManagedIdentityEndpoint(t)
	// uniqueName: MSAL caches managed identity tokens process-wide by client ID.
	identity := uniqueName("uami")
	vault.AddManagedIdentity(identity)
	cert := seed(t, "mi")
	vault.Restrict(identity, cert) // the vault knows the token as this identity's
	before := vault.Count(fakevault.OpManagedIdentityToken)

	conn := createClusterConnection(t, &vaultcertv1.ConnectionAuth{ManagedIdentity: &vaultcertv1.ManagedIdentityAuth{ClientID: identity}}, nil)
	ns := newNamespace(t, nil)
	newCertificate(t, ns, cert, viaCluster(conn))
	waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	waitClusterConnectionReady(t, conn, metav1.ConditionTrue, controllers.ReasonConnected)
	if vault.Count(fakevault.OpManagedIdentityToken) == before {
		t.Fatal("the managed identity endpoint was never asked for a token")
	}
	if n := vault.CountFor(fakevault.OpGetSecret, cert); n != 1 {
		t.Errorf("the private key was read %d times, want 1", n)
	}

	// An identity not assigned to the host: the endpoint's 400 becomes AuthenticationFailed naming the fix.
	unknown := createClusterConnection(t, &vaultcertv1.ConnectionAuth{ManagedIdentity: &vaultcertv1.ManagedIdentityAuth{ClientID: uniqueName("not-assigned")}}, nil)
	ns2 := newNamespace(t, nil)
	newCertificate(t, ns2, cert, viaCluster(unknown))
	vc := waitReady(t, ns2, "web", metav1.ConditionFalse, vaultcertv1.ReasonAuthenticationFailed)
	msg := readyMessage(vc)
	wantMessage(t, msg, "Unable to load the proper Managed Identity", "spec.auth.managedIdentity.clientID", "node pool")
	if strings.Contains(msg, vault.ManagedIdentityHeader()) {
		t.Errorf("the message reveals IDENTITY_HEADER: %s", msg)
	}
	c := waitClusterConnectionReady(t, unknown, metav1.ConditionFalse, vaultcertv1.ReasonAuthenticationFailed)
	wantMessage(t, c.Message, "Unable to load the proper Managed Identity")
	if s := getSecret(t, ns2, "web-tls"); s != nil {
		t.Fatal("a Secret was written through an identity the host does not have")
	}
	t.Logf("Ready message: %s", msg)
}

package keyvault

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"

	"github.com/vaultcert/vaultcert/internal/fakevault"
)

var (
	assertionKeyOnce sync.Once
	assertionKeyVal  *rsa.PrivateKey
)

// assertionKey is the RSA key test ServiceAccount tokens are signed with (one per test binary: RSA key
// generation is slow).
func assertionKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	assertionKeyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		assertionKeyVal = k
	})
	return assertionKeyVal
}

func TestPinAuthority(t *testing.T) {
	for _, tc := range []struct {
		method AuthMethod
		host   string
		want   string
	}{
		// A connection's own identity with no authorityHost is Azure public, whatever the pod's environment.
		{AuthClientSecret, "", cloud.AzurePublic.ActiveDirectoryAuthorityHost},
		{AuthClientCertificate, "", cloud.AzurePublic.ActiveDirectoryAuthorityHost},
		{AuthWorkloadIdentity, "", cloud.AzurePublic.ActiveDirectoryAuthorityHost},
		// Sovereign clouds are selected with authorityHost.
		{AuthClientSecret, "https://login.chinacloudapi.cn", "https://login.chinacloudapi.cn/"},
		{AuthWorkloadIdentity, "https://login.microsoftonline.us/", "https://login.microsoftonline.us/"},
		// The controller's own identities follow AZURE_AUTHORITY_HOST (azidentity's default) when unset.
		{AuthDefault, "", ""},
		{AuthManagedIdentity, "", ""},
		{AuthControllerWorkloadIdentity, "", ""},
		{AuthControllerWorkloadIdentity, "https://login.microsoftonline.us/", "https://login.microsoftonline.us/"},
	} {
		co := pinAuthority(tc.method, credentialClientOptions(CloudConfig{AuthorityHost: tc.host}, nil, ""))
		if got := co.Cloud.ActiveDirectoryAuthorityHost; got != tc.want {
			t.Errorf("%s %q: authority %q, want %q", tc.method, tc.host, got, tc.want)
		}
	}
	if co := pinAuthority(AuthClientSecret, azcore.ClientOptions{}); co.Cloud.Services == nil {
		t.Error("Azure public should come with its service configuration")
	}
}

// The controller's own workload identity reads the projected token file and exchanges it.
func TestControllerWorkloadIdentityCredential(t *testing.T) {
	e := newTestEnv(t)
	e.seed(fakevault.CertSpec{Name: "web", KeyType: "EC"})
	const client = "88888888-6666-5555-4444-333333333333"
	const issuer, subject = "https://oidc.example/cluster", "system:serviceaccount:vaultcert-system:vaultcert"
	e.s.AddFederatedCredential(client, issuer, subject)
	e.s.AddFederatedIssuerKeys(issuer, &assertionKey(t).PublicKey)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(unsignedJWT(t, issuer, subject)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := e.config("")
	cfg.Auth = AuthConfig{Method: AuthControllerWorkloadIdentity, TenantID: e.s.TenantID(), ClientID: client,
		TokenFile: tokenFile, AssertionKey: tokenFile}
	c, err := e.f.Client("ClusterVaultConnection/own", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetCertificate(ctxT(t), "web", ""); err != nil {
		t.Fatalf("controller workload identity: %v", err)
	}

	// A token for another subject is refused with Entra ID's answer, which Classify keeps.
	other := filepath.Join(t.TempDir(), "other")
	if err := os.WriteFile(other, []byte(unsignedJWT(t, issuer, "system:serviceaccount:x:y")), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Auth.TokenFile, cfg.Auth.AssertionKey = other, other
	c, err = e.f.Client("ClusterVaultConnection/other", cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.GetCertificate(ctxT(t), "web", "")
	var ae *AuthenticationError
	if !errors.As(err, &ae) || !strings.Contains(ae.Message, "AADSTS70021") {
		t.Fatalf("want AuthenticationError AADSTS70021, got %T %v", err, err)
	}

	// Without a token file the controller has no workload identity: a configuration error that says how to
	// give it one.
	t.Setenv("AZURE_FEDERATED_TOKEN_FILE", "")
	cfg.Auth.TokenFile, cfg.Auth.AssertionKey = "", ""
	_, err = e.f.Client("ClusterVaultConnection/none", cfg)
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "azure.workload.identity/use") {
		t.Fatalf("want ErrInvalidConfig naming the fix, got %v", err)
	}
}

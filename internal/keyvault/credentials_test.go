package keyvault

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/vaultcert/vaultcert/internal/fakevault/issuer"
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

// clientCertificate is a self-signed certificate for key, as a service principal's client certificate.
func clientCertificate(t *testing.T, key *rsa.PrivateKey, cn string) *x509.Certificate {
	t.Helper()
	cert, err := issuer.SelfSigned(key, issuer.Leaf{Subject: pkix.Name{CommonName: cn}, KeyUsage: x509.KeyUsageDigitalSignature,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// federate registers client's federated credential for (issuer, subject) at the fake vault's authority,
// with assertionKey as the issuer's key: unsignedJWT(t, issuer, subject) is then a valid assertion.
func (e *testEnv) federate(t *testing.T, client, issuer, subject string) {
	t.Helper()
	e.s.AddFederatedCredential(client, issuer, subject)
	e.s.AddFederatedIssuerKeys(issuer, &assertionKey(t).PublicKey)
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
	e := newWebEnv(t)
	const client = "88888888-6666-5555-4444-333333333333"
	const issuer, subject = "https://oidc.example/cluster", "system:serviceaccount:vaultcert-system:vaultcert"
	e.federate(t, client, issuer, subject)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(unsignedJWT(t, issuer, subject)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := e.config("")
	cfg.Auth = AuthConfig{Method: AuthControllerWorkloadIdentity, TenantID: e.s.TenantID(), ClientID: client,
		TokenFile: tokenFile, AssertionKey: tokenFile}
	c := e.clientFor(t, "ClusterVaultConnection/own", cfg)
	if _, err := c.GetCertificate(ctxT(t), "web", ""); err != nil {
		t.Fatalf("controller workload identity: %v", err)
	}

	// A token for another subject is refused with Entra ID's answer, which Classify keeps.
	other := filepath.Join(t.TempDir(), "other")
	if err := os.WriteFile(other, []byte(unsignedJWT(t, issuer, "system:serviceaccount:x:y")), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Auth.TokenFile, cfg.Auth.AssertionKey = other, other
	c = e.clientFor(t, "ClusterVaultConnection/other", cfg)
	_, err := c.GetCertificate(ctxT(t), "web", "")
	if ae := errorAs[*AuthenticationError](t, err); !strings.Contains(ae.Message, "AADSTS70021") {
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

// A PFX client certificate is checked for its KDF cost before azidentity derives any key: one that asks
// for a billion iterations is a configuration error at once, not a stalled build.
func TestClientCertificatePFXCostIsBounded(t *testing.T) {
	key := assertionKey(t) // azidentity reads RSA keys from a PFX
	pfx, err := pkcs12.LegacyDES.Encode(key, clientCertificate(t, key, "sp"), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	auth := AuthConfig{Method: AuthClientCertificate, TenantID: "t", ClientID: "c", ClientCertificate: pfx}
	if _, err := NewCredential(auth, CloudConfig{}, nil); err != nil {
		t.Fatalf("a PFX with ordinary iteration counts: %v", err)
	}

	// The same file with the MAC's iteration count raised to 2^30.
	var doc struct {
		Version  int
		AuthSafe asn1.RawValue
		MacData  struct {
			Mac        asn1.RawValue
			MacSalt    []byte
			Iterations int `asn1:"optional,default:1"`
		}
	}
	if _, err := asn1.Unmarshal(pfx, &doc); err != nil {
		t.Fatal(err)
	}
	doc.MacData.Iterations = 1 << 30
	if auth.ClientCertificate, err = asn1.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = NewFactory(FactoryOptions{}).Client("VaultConnection/ns/pfx", Config{VaultURL: "https://v.vault.azure.net/", Auth: auth})
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "iteration") {
		t.Fatalf("want ErrInvalidConfig naming the iteration count, got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("refusing the PFX took %v", d)
	}
}

package keyvault

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vaultcert/vaultcert/internal/fakevault"
)

// The managed identity credential against the fake's managed identity endpoint (App Service source, chosen
// by azidentity from IDENTITY_ENDPOINT and IDENTITY_HEADER), through the factory's own transport: the
// connection's CABundle is trusted for that endpoint like for the vault.
func TestManagedIdentityCredential(t *testing.T) {
	e := newWebEnv(t)
	for k, v := range e.s.ManagedIdentityEnv() {
		t.Setenv(k, v)
	}
	t.Setenv("IDENTITY_SERVER_THUMBPRINT", "")
	ctx := ctxT(t)
	// MSAL caches managed identity tokens process-wide by client ID: never reuse one across servers.
	identity := fmt.Sprintf("uami-%d", time.Now().UnixNano())
	e.s.AddManagedIdentity(identity)
	cfg := e.config("")
	cfg.Auth = AuthConfig{Method: AuthManagedIdentity, ClientID: identity}

	c := e.clientFor(t, "ClusterVaultConnection/mi", cfg)
	e.s.ResetCounts()
	if _, err := c.GetCertificate(ctx, "web", ""); err != nil {
		t.Fatal(err)
	}
	if e.s.Count(fakevault.OpManagedIdentityToken) != 1 || e.s.Count(fakevault.OpToken) != 0 {
		t.Errorf("token requests: managed identity %d, authority %d; want 1 and 0",
			e.s.Count(fakevault.OpManagedIdentityToken), e.s.Count(fakevault.OpToken))
	}

	cfg.Auth.ClientID = fmt.Sprintf("not-assigned-%d", time.Now().UnixNano())
	c = e.clientFor(t, "ClusterVaultConnection/unknown", cfg)
	_, err := c.GetCertificate(ctx, "web", "")
	ae := errorAs[*AuthenticationError](t, err)
	if ae.StatusCode != 400 || ae.Message != "Unable to load the proper Managed Identity." {
		t.Errorf("details: %d %q %q", ae.StatusCode, ae.Code, ae.Message)
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || strings.Contains(msg, e.s.ManagedIdentityHeader()) {
		t.Errorf("message %q", msg)
	}
}

package fakevault_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/vaultcert/vaultcert/internal/fakevault"
)

// managedIdentityCredential builds azidentity's managed identity credential against s's endpoint (App
// Service source, selected from the environment).
func managedIdentityCredential(t *testing.T, s *fakevault.Server, clientID string) azcore.TokenCredential {
	t.Helper()
	for k, v := range s.ManagedIdentityEnv() {
		t.Setenv(k, v)
	}
	t.Setenv("IDENTITY_SERVER_THUMBPRINT", "") // would select Service Fabric
	opts := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: azcore.ClientOptions{Transport: s.HTTPClient(), Retry: noRetry}}
	if clientID != "" {
		opts.ID = azidentity.ClientID(clientID)
	}
	cred, err := azidentity.NewManagedIdentityCredential(opts)
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

// uniqueClientID is a client ID no earlier run of this process used: MSAL caches managed identity tokens
// process-wide by client ID, and a token of an earlier server would not verify here.
func uniqueClientID(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
}

func TestManagedIdentityThroughAzidentity(t *testing.T) {
	s := startServer(t)
	seedEC(t, s, "mi")
	id := uniqueClientID("uami")
	s.AddManagedIdentity(id)
	s.Restrict(id, "mi") // the token's appid is the identity's client ID

	c := newClients(t, s, managedIdentityCredential(t, s, id), noRetry)
	if _, err := c.certs.GetCertificate(ctx(t), "mi", "", nil); err != nil {
		t.Fatal(err)
	}
	if n := s.Count(fakevault.OpManagedIdentityToken); n != 1 {
		t.Errorf("managed identity endpoint called %d times, want 1", n)
	}
	if s.Count(fakevault.OpToken) != 0 {
		t.Error("the Entra ID token endpoint was called for a managed identity")
	}
	pager := c.certs.NewListCertificatePropertiesPager(nil)
	_, err := pager.NextPage(ctx(t))
	respErr(t, err, 403, "Forbidden")

	// An identity not assigned to the host: the real endpoint's 400, surfaced by azidentity.
	other := uniqueClientID("not-assigned")
	cred := managedIdentityCredential(t, s, other)
	_, err = cred.GetToken(ctx(t), policy.TokenRequestOptions{Scopes: []string{fakevault.VaultResource + "/.default"}})
	var afe *azidentity.AuthenticationFailedError
	if !errorsAsAuth(err, &afe) || afe.RawResponse == nil || afe.RawResponse.StatusCode != 400 {
		t.Fatalf("want AuthenticationFailedError 400, got %v", err)
	}
	if !strings.Contains(err.Error(), "Unable to load the proper Managed Identity.") {
		t.Fatalf("error should carry the endpoint's message: %v", err)
	}
}

// miGet sends a raw request to the managed identity endpoint.
func miGet(t *testing.T, s *fakevault.Server, header string, query url.Values) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.ManagedIdentityEndpoint()+"?"+query.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if header != "" {
		req.Header.Set("X-IDENTITY-HEADER", header)
	}
	resp, err := s.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

func TestManagedIdentityEndpointWire(t *testing.T) {
	s := startServer(t)
	q := url.Values{"api-version": {"2019-08-01"}, "resource": {fakevault.VaultResource}}

	// No system-assigned identity yet: 400 with the App Service error shape.
	status, body := miGet(t, s, s.ManagedIdentityHeader(), q)
	if status != 400 || body["message"] != "Unable to load the proper Managed Identity." || body["statusCode"] != float64(400) {
		t.Fatalf("got %d %v", status, body)
	}
	// Wrong or missing X-IDENTITY-HEADER.
	if status, _ := miGet(t, s, "wrong", q); status != 401 {
		t.Fatalf("wrong header: %d", status)
	}
	if status, _ := miGet(t, s, "", q); status != 401 {
		t.Fatalf("missing header: %d", status)
	}

	s.SetSystemAssignedIdentity("system-identity")
	status, body = miGet(t, s, s.ManagedIdentityHeader(), q)
	if status != 200 || body["token_type"] != "Bearer" || body["resource"] != fakevault.VaultResource || body["client_id"] != "system-identity" {
		t.Fatalf("got %d %v", status, body)
	}
	exp, err := strconv.ParseInt(fmt.Sprint(body["expires_on"]), 10, 64)
	if err != nil || time.Until(time.Unix(exp, 0)) < 50*time.Minute {
		t.Fatalf("expires_on %v must be Unix seconds as a string, about an hour ahead", body["expires_on"])
	}
	// The vault accepts the token.
	seedEC(t, s, "sys")
	if resp, b := rawDoAuth(t, s, http.MethodGet, "/certificates/sys/?api-version=2025-07-01", "", "Bearer "+body["access_token"].(string)); resp.StatusCode != 200 {
		t.Fatalf("vault refused the managed identity token: %d %s", resp.StatusCode, b)
	}

	// User-assigned: known, unknown, and removed again; selectors other than client_id are not served.
	s.AddManagedIdentity("AAAA-uami")
	uq := url.Values{"api-version": {"2019-08-01"}, "resource": {fakevault.VaultResource}, "client_id": {"aaaa-UAMI"}}
	if status, body := miGet(t, s, s.ManagedIdentityHeader(), uq); status != 200 || body["client_id"] != "AAAA-uami" {
		t.Fatalf("user-assigned: %d %v", status, body)
	}
	s.RemoveManagedIdentity("AAAA-uami")
	if status, _ := miGet(t, s, s.ManagedIdentityHeader(), uq); status != 400 {
		t.Fatalf("removed identity: %d", status)
	}
	rq := url.Values{"api-version": {"2019-08-01"}, "resource": {fakevault.VaultResource}, "mi_res_id": {"/subscriptions/x"}}
	if status, _ := miGet(t, s, s.ManagedIdentityHeader(), rq); status != 400 {
		t.Fatalf("mi_res_id: %d", status)
	}
	if n := s.Count(fakevault.OpManagedIdentityToken); n != 7 {
		t.Errorf("counted %d managed identity requests, want 7", n)
	}
}

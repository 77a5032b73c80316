package fakevault_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/golang-jwt/jwt/v5"

	"github.com/vaultcert/vaultcert/internal/fakevault"
	"github.com/vaultcert/vaultcert/internal/fakevault/issuer"
)

// clientCert is a new RSA key (MSAL signs client assertions with RSA only) and a self-signed certificate for it.
func clientCert(t *testing.T) (*x509.Certificate, *rsa.PrivateKey) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	c, err := issuer.SelfSigned(key, issuer.Leaf{Subject: pkix.Name{CommonName: "client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func TestClientCertificateCredential(t *testing.T) {
	s := startServer(t)
	seedEC(t, s, "t")
	cert, key := clientCert(t)
	s.AddClientCertificate("cert-client", cert)
	opts := &azidentity.ClientCertificateCredentialOptions{
		ClientOptions: azcore.ClientOptions{
			Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: s.AuthorityHost()},
			Transport: s.HTTPClient(), Retry: noRetry,
		},
		DisableInstanceDiscovery: true,
	}
	cred, err := azidentity.NewClientCertificateCredential(s.TenantID(), "cert-client", []*x509.Certificate{cert}, key, opts)
	if err != nil {
		t.Fatal(err)
	}
	c := newClients(t, s, cred, noRetry)
	if _, err := c.certs.GetCertificate(ctx(t), "t", "", nil); err != nil {
		t.Fatal(err)
	}
	// SendCertificateChain (x5c) works too
	opts.SendCertificateChain = true
	cred2, _ := azidentity.NewClientCertificateCredential(s.TenantID(), "cert-client", []*x509.Certificate{cert}, key, opts)
	if _, err := newClients(t, s, cred2, noRetry).secrets.GetSecret(ctx(t), "t", "", nil); err != nil {
		t.Fatal(err)
	}
	// a certificate that is not registered is refused
	other, otherKey := clientCert(t)
	cred3, _ := azidentity.NewClientCertificateCredential(s.TenantID(), "cert-client", []*x509.Certificate{other}, otherKey, opts)
	_, err = newClients(t, s, cred3, noRetry).certs.GetCertificate(ctx(t), "t", "", nil)
	var afe *azidentity.AuthenticationFailedError
	if !errors.As(err, &afe) || afe.RawResponse.StatusCode != 401 {
		t.Fatalf("want 401 authentication failure, got %v", err)
	}
}

func TestWrongSecretAndUnknownClient(t *testing.T) {
	s := startServer(t)
	seedEC(t, s, "t")
	for _, tc := range []struct{ id, secret string }{{testClientID, "wrong"}, {"nobody", "x"}} {
		c := newClients(t, s, secretCredential(t, s, tc.id, tc.secret), noRetry)
		_, err := c.certs.GetCertificate(ctx(t), "t", "", nil)
		var afe *azidentity.AuthenticationFailedError
		if !errors.As(err, &afe) {
			t.Fatalf("%s: want AuthenticationFailedError, got %v", tc.id, err)
		}
	}
}

func TestFederatedCredential(t *testing.T) {
	s := startServer(t)
	seedEC(t, s, "t")
	const issuer = "https://kubernetes.default.svc"
	s.AddFederatedCredential("wi-client", issuer, "system:serviceaccount:ns:sa")
	issuerKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	// The issuer's keys arrive as a JWKS document, as Entra ID reads them from the issuer's jwks_uri.
	jwks := fmt.Sprintf(`{"keys":[{"use":"sig","kty":"RSA","kid":"k1","alg":"RS256","n":%q,"e":"AQAB"}]}`,
		base64.RawURLEncoding.EncodeToString(issuerKey.N.Bytes()))
	if err := s.AddFederatedIssuer(issuer, []byte(jwks)); err != nil {
		t.Fatal(err)
	}
	type claims struct {
		iss, sub, aud string
		exp           time.Duration
		key           *rsa.PrivateKey
	}
	good := claims{iss: issuer, sub: "system:serviceaccount:ns:sa", aud: "api://AzureADTokenExchange", exp: time.Hour, key: issuerKey}
	mk := func(c claims) azcore.TokenCredential {
		assertion := func(context.Context) (string, error) {
			tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
				"iss": c.iss, "sub": c.sub, "aud": []string{c.aud}, "exp": time.Now().Add(c.exp).Unix(),
			})
			tok.Header["kid"] = "k1"
			return tok.SignedString(c.key)
		}
		cred, err := azidentity.NewClientAssertionCredential(s.TenantID(), "wi-client", assertion, &azidentity.ClientAssertionCredentialOptions{
			ClientOptions: azcore.ClientOptions{
				Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: s.AuthorityHost()},
				Transport: s.HTTPClient(), Retry: noRetry,
			},
			DisableInstanceDiscovery: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		return cred
	}
	if _, err := newClients(t, s, mk(good), noRetry).certs.GetCertificate(ctx(t), "t", "", nil); err != nil {
		t.Fatal(err)
	}
	with := func(f func(*claims)) claims { c := good; f(&c); return c }
	for _, tc := range []struct {
		name string
		c    claims
		want string
	}{
		{"subject", with(func(c *claims) { c.sub = "system:serviceaccount:ns:other" }), "AADSTS70021"},
		{"issuer", with(func(c *claims) { c.iss = "https://elsewhere.example" }), "AADSTS700211"},
		{"audience", with(func(c *claims) { c.aud = "https://kubernetes.default.svc" }), "AADSTS700212"},
		{"expired", with(func(c *claims) { c.exp = -time.Hour }), "AADSTS700024"},
		{"signature", with(func(c *claims) { c.key = otherKey }), "AADSTS700027"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newClients(t, s, mk(tc.c), noRetry).certs.GetCertificate(ctx(t), "t", "", nil)
			var afe *azidentity.AuthenticationFailedError
			if !errors.As(err, &afe) || afe.RawResponse.StatusCode != 401 {
				t.Fatalf("want a 401 AuthenticationFailedError, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want %s, got %v", tc.want, err)
			}
		})
	}
	// An issuer whose keys the authority cannot get is refused, never trusted unverified.
	s.AddFederatedCredential("wi-client", "https://nokeys.example", "system:serviceaccount:ns:sa")
	_, err = newClients(t, s, mk(with(func(c *claims) { c.iss = "https://nokeys.example" })), noRetry).certs.GetCertificate(ctx(t), "t", "", nil)
	if err == nil || !strings.Contains(err.Error(), "AADSTS50166") {
		t.Fatalf("want AADSTS50166, got %v", err)
	}
	// Keys given directly work as well as a JWKS document, and replace the earlier ones (rotation).
	s.AddFederatedIssuerKeys(issuer, &otherKey.PublicKey)
	if _, err := newClients(t, s, mk(with(func(c *claims) { c.key = otherKey })), noRetry).certs.GetCertificate(ctx(t), "t", "", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.AddFederatedIssuer(issuer, []byte(`{"keys":[]}`)); err == nil {
		t.Fatal("an empty JWKS was accepted")
	}
}

func TestRotatedClientSecret(t *testing.T) {
	s := startServer(t)
	seedEC(t, s, "t")
	s.AddClientSecret("rotating", "old")
	s.AddClientSecret("rotating", "new")
	s.RemoveClientSecret("rotating", "old")
	if _, err := newClients(t, s, secretCredential(t, s, "rotating", "new"), noRetry).certs.GetCertificate(ctx(t), "t", "", nil); err != nil {
		t.Fatal(err)
	}
	_, err := newClients(t, s, secretCredential(t, s, "rotating", "old"), noRetry).certs.GetCertificate(ctx(t), "t", "", nil)
	if err == nil || !strings.Contains(err.Error(), "AADSTS7000215") {
		t.Fatalf("want AADSTS7000215, got %v", err)
	}
}

func TestRestrict(t *testing.T) {
	s := startServer(t)
	seedEC(t, s, "mine", "theirs")
	s.AddClientSecret("limited", "pw")
	s.Restrict("limited", "Mine")
	c := newClients(t, s, secretCredential(t, s, "limited", "pw"), noRetry)
	if _, err := c.certs.GetCertificate(ctx(t), "mine", "", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.secrets.GetSecret(ctx(t), "mine", "", nil); err != nil {
		t.Fatal(err)
	}
	_, err := c.secrets.GetSecret(ctx(t), "theirs", "", nil)
	if inner := respErr(t, err, 403, "Forbidden"); inner != "ForbiddenByRbac" {
		t.Fatal(inner)
	}
	var re *azcore.ResponseError
	errors.As(err, &re)
	if body, _ := rawBody(re); !contains(body, "Caller is not authorized to perform action on resource") {
		t.Fatal(body)
	}
	pager := c.certs.NewListCertificatePropertiesPager(nil)
	_, err = pager.NextPage(ctx(t))
	respErr(t, err, 403, "Forbidden")
	// other identities are not restricted
	if _, err := newClients(t, s, nil, noRetry).secrets.GetSecret(ctx(t), "theirs", "", nil); err != nil {
		t.Fatal(err)
	}
	s.Unrestrict("limited")
	if _, err := c.secrets.GetSecret(ctx(t), "theirs", "", nil); err != nil {
		t.Fatal(err)
	}
}

func TestRevokedAndExpiredTokens(t *testing.T) {
	s, c := startWithEC(t, noRetry, "t")
	if _, err := c.certs.GetCertificate(ctx(t), "t", "", nil); err != nil {
		t.Fatal(err)
	}
	s.RevokeTokens()
	_, err := c.certs.GetCertificate(ctx(t), "t", "", nil)
	respErr(t, err, 401, "Unauthorized")
	if s.Count(fakevault.OpUnauthorized) < 1 {
		t.Fatal("not counted")
	}
	// expired: a token with a 1 s lifetime
	s2 := startServer(t)
	seedEC(t, s2, "t")
	s2.SetTokenLifetime(time.Second)
	tok, _ := s2.IssueToken(testClientID)
	time.Sleep(1100 * time.Millisecond)
	resp, body := rawDoAuth(t, s2, "GET", "/certificates/t/?api-version=7.5", "", "Bearer "+tok)
	if resp.StatusCode != 401 || !contains(string(body), "expired") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

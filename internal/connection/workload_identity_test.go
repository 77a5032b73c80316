package connection

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/keyvault"
)

func TestTokenRefreshTime(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		life, want time.Duration
	}{
		{time.Hour, 48 * time.Minute},
		{24 * time.Hour, 24 * time.Hour * 8 / 10},
		{10 * time.Minute, 8 * time.Minute}, // the API server's minimum
		{0, 0},                              // already expired: ask again
	} {
		if got := refreshTime(now, now.Add(tc.life)).Sub(now); got != tc.want {
			t.Errorf("lifetime %v: refresh after %v, want %v", tc.life, got, tc.want)
		}
	}
}

// tokenRequestCounter wraps a real client of the envtest API server: it counts the TokenRequests sent through
// it and checks what each asks for. Requests go to Client, which a test may swap.
type tokenRequestCounter struct {
	client.Client
	t        *testing.T
	ns, name string
	requests int
}

func (c *tokenRequestCounter) SubResource(sub string) client.SubResourceClient {
	return countedSubResource{SubResourceClient: c.Client.SubResource(sub), c: c, sub: sub}
}

type countedSubResource struct {
	client.SubResourceClient
	c   *tokenRequestCounter
	sub string
}

func (s countedSubResource) Create(ctx context.Context, obj client.Object, sub client.Object, opts ...client.SubResourceCreateOption) error {
	s.c.requests++
	tr, ok := sub.(*authenticationv1.TokenRequest)
	if !ok || s.sub != "token" || obj.GetNamespace() != s.c.ns || obj.GetName() != s.c.name ||
		len(tr.Spec.Audiences) != 1 || tr.Spec.Audiences[0] != WorkloadIdentityAudience {
		s.c.t.Errorf("unexpected request %s of %s/%s: %#v", s.sub, obj.GetNamespace(), obj.GetName(), sub)
	}
	return s.SubResourceClient.Create(ctx, obj, sub, opts...)
}

// tokenClaims decodes the claims of a ServiceAccount token (a JWT) the API server issued.
func tokenClaims(t *testing.T, token string) (audiences []string, subject string, lifetime time.Duration) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Aud []string `json:"aud"`
		Sub string   `json:"sub"`
		Iat int64    `json:"iat"`
		Exp int64    `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims.Aud, claims.Sub, time.Duration(claims.Exp-claims.Iat) * time.Second
}

// The token source asks the API server for tokens of audience api://AzureADTokenExchange, caches each until
// 80 % of its lifetime has passed, and names the ServiceAccount (never the token) when the request fails.
func TestServiceAccountTokenSource(t *testing.T) {
	c := envtestClient(t)
	ns := createNamespace(t, c, "token")
	mustCreate(t, c, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}})
	counter := &tokenRequestCounter{Client: c, t: t, ns: ns, name: "app"}
	src := newServiceAccountTokenSource(counter, ns, "app")
	now := time.Now()
	src.now = func() time.Time { return now }
	ctx := context.Background()

	first, err := src.Token(ctx)
	if err != nil || first == "" || counter.requests != 1 {
		t.Fatalf("first token: %v after %d requests", err, counter.requests)
	}
	aud, sub, life := tokenClaims(t, first)
	if len(aud) != 1 || aud[0] != WorkloadIdentityAudience || sub != "system:serviceaccount:"+ns+":app" || life != serviceAccountTokenLifetime {
		t.Fatalf("the API server issued a token for %v, subject %s, lifetime %v", aud, sub, life)
	}
	if again, _ := src.Token(ctx); again != first || counter.requests != 1 {
		t.Fatalf("not cached: %d requests", counter.requests)
	}
	now = now.Add(47 * time.Minute) // before 80 % of the hour
	if again, _ := src.Token(ctx); again != first || counter.requests != 1 {
		t.Fatalf("refreshed before 80 %% of the lifetime: %d requests", counter.requests)
	}
	now = now.Add(3 * time.Minute) // past 80 % of the hour
	second, err := src.Token(ctx)
	if err != nil || second == "" || second == first || counter.requests != 2 {
		t.Fatalf("not refreshed near expiry: new token %t, %v after %d requests", second != first, err, counter.requests)
	}

	// A client the API server refuses TokenRequests (RBAC): the error names the ServiceAccount and the
	// permission, never a token.
	cfg := envtestConfig(t)
	cfg.Impersonate.UserName = "vaultcert-test-no-permissions"
	refused, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	counter.Client = refused
	now = now.Add(time.Hour)
	_, err = src.Token(ctx)
	if err == nil || !strings.Contains(err.Error(), ns+"/app") || !strings.Contains(err.Error(), "serviceaccounts/token") ||
		!strings.Contains(err.Error(), "forbidden") || strings.Contains(err.Error(), first) || strings.Contains(err.Error(), second) {
		t.Fatalf("error should name the ServiceAccount and the permission, not the token: %v", err)
	}
	if counter.requests != 3 {
		t.Fatalf("%d requests, want 3", counter.requests)
	}
}

// The resolver: a VaultConnection never reaches the controller's identity, whatever the spec says; the
// ServiceAccount's annotations fill in missing IDs; its UID is part of the credential's cache key.
func TestResolveWorkloadIdentity(t *testing.T) {
	c := envtestClient(t)
	ns := createNamespace(t, c, "wi")
	otherNS := createNamespace(t, c, "wi-other")
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app",
		Annotations: map[string]string{AnnotationWorkloadIdentityClientID: "annotated-client", AnnotationWorkloadIdentityTenantID: "annotated-tenant"}}}
	mustCreate(t, c, sa)
	env := map[string]string{"AZURE_CLIENT_ID": "controller-client", "AZURE_TENANT_ID": "controller-tenant", "AZURE_FEDERATED_TOKEN_FILE": "/var/run/token"}
	r := &Resolver{client: c, apiReader: c, getenv: func(k string) string { return env[k] }}
	ctx := context.Background()
	what := "VaultConnection " + ns + "/v"

	a, err := r.workloadIdentity(ctx, what, ns, &vaultcertWI{ServiceAccountRef: &vaultcertSARef{Name: "app"}})
	if err != nil {
		t.Fatal(err)
	}
	if a.Method != keyvault.AuthWorkloadIdentity || a.ClientID != "annotated-client" || a.TenantID != "annotated-tenant" ||
		sa.UID == "" || a.AssertionKey != "serviceaccount:"+ns+"/app/"+string(sa.UID) || a.Assertion == nil {
		t.Fatalf("%+v", a)
	}
	// The assertion is a token of that ServiceAccount, requested from the API server.
	token, err := a.Assertion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if aud, sub, _ := tokenClaims(t, token); len(aud) != 1 || aud[0] != WorkloadIdentityAudience || sub != "system:serviceaccount:"+ns+":app" {
		t.Fatalf("assertion for %v, subject %s", aud, sub)
	}
	// Fields win over annotations.
	a, _ = r.workloadIdentity(ctx, what, ns, &vaultcertWI{ServiceAccountRef: &vaultcertSARef{Name: "app"}, ClientID: "field-client"})
	if a.ClientID != "field-client" || a.TenantID != "annotated-tenant" {
		t.Fatalf("%+v", a)
	}
	// A namespaced connection's reference resolves in its own namespace, whatever it says.
	if _, err := r.workloadIdentity(ctx, "VaultConnection "+otherNS+"/v", otherNS, &vaultcertWI{ServiceAccountRef: &vaultcertSARef{Name: "app", Namespace: ns}}); err == nil {
		t.Fatalf("a VaultConnection in namespace %s used a ServiceAccount of namespace %s", otherNS, ns)
	}
	// A namespaced connection never gets the controller's identity.
	_, err = r.workloadIdentity(ctx, what, ns, &vaultcertWI{})
	if ce := (*Error)(nil); !errors.As(err, &ce) || ce.Reason != "ConnectionNotAllowed" {
		t.Fatalf("want ConnectionNotAllowed, got %v", err)
	}
	// A cluster connection without serviceAccountRef does, from the environment.
	a, err = r.workloadIdentity(ctx, "ClusterVaultConnection c", "", &vaultcertWI{})
	if err != nil || a.Method != keyvault.AuthControllerWorkloadIdentity || a.ClientID != "controller-client" || a.TokenFile != "/var/run/token" {
		t.Fatalf("%+v %v", a, err)
	}
}

type (
	vaultcertWI    = vaultcertv1.WorkloadIdentityAuth
	vaultcertSARef = vaultcertv1.ServiceAccountReference
)

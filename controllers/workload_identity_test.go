package controllers

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

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

// The token source asks for audience api://AzureADTokenExchange, caches the token until near expiry, and
// names the ServiceAccount (never the token) when the request fails.
func TestServiceAccountTokenSource(t *testing.T) {
	var requests int
	var fail bool
	c := fake.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{
		SubResourceCreate: func(_ context.Context, _ client.Client, sub string, obj client.Object, req client.Object, _ ...client.SubResourceCreateOption) error {
			requests++
			tr := req.(*authenticationv1.TokenRequest)
			if sub != "token" || obj.GetNamespace() != "team" || obj.GetName() != "app" ||
				len(tr.Spec.Audiences) != 1 || tr.Spec.Audiences[0] != WorkloadIdentityAudience {
				t.Errorf("unexpected TokenRequest %s %s/%s %v", sub, obj.GetNamespace(), obj.GetName(), tr.Spec.Audiences)
			}
			if fail {
				return errors.New(`serviceaccounts "app" is forbidden`)
			}
			tr.Status.Token = "token-" + string(rune('0'+requests))
			tr.Status.ExpirationTimestamp = metav1.NewTime(time.Now().Add(time.Hour))
			return nil
		},
	}).Build()
	src := newServiceAccountTokenSource(c, "team", "app")
	now := time.Now()
	src.now = func() time.Time { return now }
	ctx := context.Background()
	first, err := src.Token(ctx)
	if err != nil || first != "token-1" {
		t.Fatal(first, err)
	}
	if again, _ := src.Token(ctx); again != first || requests != 1 {
		t.Fatalf("not cached: %s after %d requests", again, requests)
	}
	now = now.Add(50 * time.Minute) // past 80 % of the hour
	if next, _ := src.Token(ctx); next != "token-2" || requests != 2 {
		t.Fatalf("not refreshed near expiry: %s after %d requests", next, requests)
	}
	now = now.Add(time.Hour)
	fail = true
	_, err = src.Token(ctx)
	if err == nil || !strings.Contains(err.Error(), "team/app") || !strings.Contains(err.Error(), "serviceaccounts/token") || strings.Contains(err.Error(), "token-2") {
		t.Fatalf("error should name the ServiceAccount and the permission, not the token: %v", err)
	}
}

// The resolver: a VaultConnection never reaches the controller's identity, whatever the spec says; the
// ServiceAccount's annotations fill in missing IDs; its UID is part of the credential's cache key.
func TestResolveWorkloadIdentity(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = corev1.AddToScheme(scheme)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "app", UID: "uid-1",
		Annotations: map[string]string{AnnotationWorkloadIdentityClientID: "annotated-client", AnnotationWorkloadIdentityTenantID: "annotated-tenant"}}}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(sa).Build()
	env := map[string]string{"AZURE_CLIENT_ID": "controller-client", "AZURE_TENANT_ID": "controller-tenant", "AZURE_FEDERATED_TOKEN_FILE": "/var/run/token"}
	r := &connectionResolver{client: c, apiReader: c, getenv: func(k string) string { return env[k] }}
	ctx := context.Background()

	a, err := r.workloadIdentity(ctx, "VaultConnection team/v", "team", &vaultcertWI{ServiceAccountRef: &vaultcertSARef{Name: "app"}})
	if err != nil {
		t.Fatal(err)
	}
	if a.Method != keyvault.AuthWorkloadIdentity || a.ClientID != "annotated-client" || a.TenantID != "annotated-tenant" ||
		a.AssertionKey != "serviceaccount:team/app/uid-1" || a.Assertion == nil {
		t.Fatalf("%+v", a)
	}
	// Fields win over annotations.
	a, _ = r.workloadIdentity(ctx, "VaultConnection team/v", "team", &vaultcertWI{ServiceAccountRef: &vaultcertSARef{Name: "app"}, ClientID: "field-client"})
	if a.ClientID != "field-client" || a.TenantID != "annotated-tenant" {
		t.Fatalf("%+v", a)
	}
	// A namespaced connection's reference resolves in its own namespace, whatever it says.
	if _, err := r.workloadIdentity(ctx, "VaultConnection other/v", "other", &vaultcertWI{ServiceAccountRef: &vaultcertSARef{Name: "app", Namespace: "team"}}); err == nil {
		t.Fatal("a VaultConnection in namespace other used a ServiceAccount of namespace team")
	}
	// A namespaced connection never gets the controller's identity.
	_, err = r.workloadIdentity(ctx, "VaultConnection team/v", "team", &vaultcertWI{})
	if ce, ok := asConnectionError(err); !ok || ce.reason != "ConnectionNotAllowed" {
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

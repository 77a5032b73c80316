package connection

import (
	"context"
	"fmt"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	// AnnotationWorkloadIdentityClientID is the Azure workload identity annotation on a ServiceAccount naming
	// the Entra ID application or user-assigned identity its tokens are exchanged for.
	AnnotationWorkloadIdentityClientID = "azure.workload.identity/client-id"
	// AnnotationWorkloadIdentityTenantID is the Azure workload identity annotation on a ServiceAccount naming
	// the identity's tenant.
	AnnotationWorkloadIdentityTenantID = "azure.workload.identity/tenant-id"
	// WorkloadIdentityAudience is the audience of ServiceAccount tokens exchanged with Entra ID.
	WorkloadIdentityAudience = "api://AzureADTokenExchange"

	// serviceAccountTokenLifetime is the lifetime asked of the API server (it may shorten it; 10 min minimum).
	serviceAccountTokenLifetime = time.Hour
)

// serviceAccountTokenSource asks the API server for tokens of one ServiceAccount (TokenRequest, audience
// api://AzureADTokenExchange) and caches each until shortly before it expires. It is the Assertion of a
// workload identity credential; the credential lives in the client factory's cache, and so does this
// cache. Tokens are never logged.
type serviceAccountTokenSource struct {
	client    client.Client
	namespace string
	name      string
	now       func() time.Time

	mu        sync.Mutex
	token     string
	refreshAt time.Time
}

// newServiceAccountTokenSource returns a token source for the ServiceAccount namespace/name.
func newServiceAccountTokenSource(c client.Client, namespace, name string) *serviceAccountTokenSource {
	return &serviceAccountTokenSource{client: c, namespace: namespace, name: name, now: time.Now}
}

// Token returns a cached token, or a new one when none is cached or the cached one nears expiry.
func (s *serviceAccountTokenSource) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.token != "" && now.Before(s.refreshAt) {
		return s.token, nil
	}
	seconds := int64(serviceAccountTokenLifetime / time.Second)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: s.namespace, Name: s.name}}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences:         []string{WorkloadIdentityAudience},
		ExpirationSeconds: &seconds,
	}}
	if err := s.client.SubResource("token").Create(ctx, sa, tr); err != nil {
		return "", &serviceAccountTokenError{namespace: s.namespace, name: s.name, err: err}
	}
	if tr.Status.Token == "" {
		return "", fmt.Errorf("the API server returned an empty token for ServiceAccount %s/%s", s.namespace, s.name)
	}
	s.token = tr.Status.Token
	s.refreshAt = refreshTime(now, tr.Status.ExpirationTimestamp.Time)
	return s.token, nil
}

// serviceAccountTokenError is a failed TokenRequest for a connection's ServiceAccount.
type serviceAccountTokenError struct {
	namespace, name string
	err             error
}

func (e *serviceAccountTokenError) Error() string {
	return fmt.Sprintf("requesting a token of ServiceAccount %s/%s (TokenRequest, audience %s) failed: %v; the controller needs create on serviceaccounts/token in that namespace",
		e.namespace, e.name, WorkloadIdentityAudience, e.err)
}

func (e *serviceAccountTokenError) Unwrap() error { return e.err }

// refreshTime is when a token issued at now and expiring at exp is replaced: after 80 % of its lifetime
// (12 minutes before the expiry of the hour-long tokens asked for), like the kubelet's projected tokens.
func refreshTime(now, exp time.Time) time.Time {
	life := exp.Sub(now)
	if life <= 0 {
		return now
	}
	return now.Add(life * 8 / 10)
}

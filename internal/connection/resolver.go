package connection

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/hostpolicy"
	"github.com/vaultcert/vaultcert/internal/keyvault"
)

// Error is a problem with a connection itself (missing, not allowed, credentials unreadable): the user must fix
// the connection or what it names, so retrying sooner does not help.
type Error struct {
	// Reason is the VaultCertificate condition reason it maps to (vaultcertv1.ReasonConnectionNotReady or
	// vaultcertv1.ReasonConnectionNotAllowed).
	Reason string
	// Message says what is wrong and what to fix.
	Message string
}

// Error returns the message.
func (e *Error) Error() string { return e.Message }

// Resolved is a connection ready to build a Key Vault client from.
type Resolved struct {
	// Key identifies the connection for the client factory's cache.
	Key Key
	// Config is the vault, identity and cloud settings, with credential material read from its Secret.
	Config keyvault.Config
	// Cluster is the ClusterVaultConnection behind it; nil for a VaultConnection.
	Cluster *vaultcertv1.ClusterVaultConnection
	// Revision changes whenever the connection's spec or a credential object it reads changes; it names no
	// secret material, so it can be recorded in status (status.connectionRevision).
	Revision string
}

// The controller reads the ServiceAccounts connections name (directly, not cached) and asks for their tokens;
// the credential watcher (credential_watch.go) also lists and watches exactly those, by name.
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=serviceaccounts/token,verbs=create

// Resolver turns connection objects into keyvault.Config, enforcing the tenancy rules and the host policy. It
// records the credential objects it reads for the Revision, so use a new one (NewResolver) for each reconcile.
type Resolver struct {
	// client reads connections and namespaces (cached) and requests ServiceAccount tokens.
	client client.Client
	// apiReader reads credential Secrets and ServiceAccounts directly: the label-filtered Secret cache does not
	// hold them, and caching every ServiceAccount of the cluster is not worth one read per reconcile.
	apiReader client.Reader
	// getenv reads the controller's environment (the controller's own workload identity); nil is os.Getenv.
	getenv func(string) string
	// hosts is the admin's allow-list of vault and authority hosts for VaultConnections.
	hosts hostpolicy.Policy
	// read records the credential objects read (kind, namespace, name, resourceVersion) for the revision.
	read []string
}

// NewResolver returns a resolver for one reconcile. c reads connections and namespaces (the manager's client)
// and requests ServiceAccount tokens; apiReader reads credential Secrets and ServiceAccounts from the API server,
// except those credentials has seen unchanged since it last read them (credentials may be nil: always read);
// hosts is the admin's allow-list for VaultConnections.
func NewResolver(c client.Client, apiReader client.Reader, credentials *CredentialWatcher, hosts hostpolicy.Policy) *Resolver {
	return &Resolver{client: c, apiReader: credentialReader{watcher: credentials, api: apiReader}, hosts: hosts}
}

// ForCertificate resolves the connection a VaultCertificate names and checks that the certificate's namespace
// may use it (a ClusterVaultConnection's namespaceSelector). A *Error says what to fix.
func (r *Resolver) ForCertificate(ctx context.Context, vc *vaultcertv1.VaultCertificate) (*Resolved, error) {
	ref := vc.Spec.ConnectionRef
	switch ref.Kind {
	case vaultcertv1.ClusterVaultConnectionKind:
		var conn vaultcertv1.ClusterVaultConnection
		if err := r.client.Get(ctx, types.NamespacedName{Name: ref.Name}, &conn); err != nil {
			return nil, notReadyIfMissing(err, fmt.Sprintf("ClusterVaultConnection %q not found: create it or fix spec.connectionRef", ref.Name))
		}
		if err := r.admits(ctx, &conn, vc.Namespace); err != nil {
			return nil, err
		}
		return r.revised(r.forCluster(ctx, &conn))
	default:
		var conn vaultcertv1.VaultConnection
		if err := r.client.Get(ctx, types.NamespacedName{Namespace: vc.Namespace, Name: ref.Name}, &conn); err != nil {
			return nil, notReadyIfMissing(err, fmt.Sprintf("VaultConnection %q not found in namespace %q: create it or fix spec.connectionRef", ref.Name, vc.Namespace))
		}
		return r.revised(r.forNamespaced(ctx, &conn))
	}
}

// revised stamps a resolved connection with its revision: a hash of its key, its configuration without secret
// values, and the resourceVersions of the credential objects read. Credentials rotated in a Secret change it.
func (r *Resolver) revised(conn *Resolved, err error) (*Resolved, error) {
	if err != nil {
		return nil, err
	}
	c := conn.Config
	h := sha256.New()
	for _, f := range append([]string{conn.Key.String(), c.VaultURL, c.Cloud.AuthorityHost,
		fmt.Sprint(c.Cloud.DisableInstanceDiscovery, c.Cloud.DisableChallengeResourceVerification), string(c.Cloud.CABundle),
		string(c.Auth.Method), c.Auth.TenantID, c.Auth.ClientID, c.Auth.AssertionKey, c.Auth.TokenFile,
		strings.Join(c.AllowedHosts, ",")}, r.read...) {
		fmt.Fprintf(h, "%d:%s;", len(f), f)
	}
	conn.Revision = hex.EncodeToString(h.Sum(nil))[:16]
	return conn, nil
}

func notReadyIfMissing(err error, message string) error {
	if apierrors.IsNotFound(err) {
		return &Error{Reason: vaultcertv1.ReasonConnectionNotReady, Message: message}
	}
	return err
}

// admits enforces a ClusterVaultConnection's namespaceSelector before any Key Vault call.
func (r *Resolver) admits(ctx context.Context, conn *vaultcertv1.ClusterVaultConnection, namespace string) error {
	return Admits(ctx, r.client, conn, namespace)
}

// Admits reports whether a ClusterVaultConnection's namespaceSelector admits namespace: nil when it does, an *Error
// (ConnectionNotAllowed) saying what to fix when it does not.
func Admits(ctx context.Context, c client.Reader, conn *vaultcertv1.ClusterVaultConnection, namespace string) error {
	sel := conn.Spec.NamespaceSelector
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		return nil
	}
	selector, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return &Error{Reason: vaultcertv1.ReasonConnectionNotReady,
			Message: fmt.Sprintf("ClusterVaultConnection %q has an invalid namespaceSelector: %v", conn.Name, err)}
	}
	var ns corev1.Namespace
	if err := c.Get(ctx, types.NamespacedName{Name: namespace}, &ns); err != nil {
		return err
	}
	if !selector.Matches(labels.Set(ns.Labels)) {
		return &Error{Reason: vaultcertv1.ReasonConnectionNotAllowed,
			Message: fmt.Sprintf("ClusterVaultConnection %q does not admit namespace %q: its namespaceSelector (%s) does not match the namespace's labels; ask the cluster admin to label the namespace or use a VaultConnection in this namespace", conn.Name, namespace, selector.String())}
	}
	return nil
}

// ForNamespaced resolves a VaultConnection (its Ready check). A *Error says what to fix.
func (r *Resolver) ForNamespaced(ctx context.Context, conn *vaultcertv1.VaultConnection) (*Resolved, error) {
	return r.revised(r.forNamespaced(ctx, conn))
}

// ForCluster resolves a ClusterVaultConnection (its Ready check), whatever its namespaceSelector. A *Error says
// what to fix.
func (r *Resolver) ForCluster(ctx context.Context, conn *vaultcertv1.ClusterVaultConnection) (*Resolved, error) {
	return r.revised(r.forCluster(ctx, conn))
}

// forNamespaced builds the config of a VaultConnection. It never uses the controller's identity and reads
// Secrets only in the connection's namespace.
func (r *Resolver) forNamespaced(ctx context.Context, conn *vaultcertv1.VaultConnection) (*Resolved, error) {
	what := fmt.Sprintf("VaultConnection %s/%s", conn.Namespace, conn.Name)
	auth := conn.Spec.Auth
	if auth == nil || (auth.ServicePrincipal == nil && auth.WorkloadIdentity == nil && auth.ManagedIdentity == nil) {
		return nil, &Error{Reason: vaultcertv1.ReasonConnectionNotReady,
			Message: what + " sets no auth method; a VaultConnection must name its own identity (servicePrincipal or workloadIdentity)"}
	}
	if wi := auth.WorkloadIdentity; wi != nil && (wi.ServiceAccountRef == nil || wi.ServiceAccountRef.Namespace != "" && wi.ServiceAccountRef.Namespace != conn.Namespace) {
		// CEL rejects both; this guards objects written before the rule or with validation bypassed.
		return nil, &Error{Reason: vaultcertv1.ReasonConnectionNotAllowed,
			Message: what + " uses workloadIdentity without a serviceAccountRef in its own namespace; a VaultConnection exchanges the token of one of its namespace's ServiceAccounts and never the controller's own identity"}
	}
	if auth.ManagedIdentity != nil {
		// A managed identity belongs to the controller's pod: letting a namespace select it would lend it the
		// controller's identity.
		return nil, &Error{Reason: vaultcertv1.ReasonConnectionNotAllowed,
			Message: what + " uses managedIdentity, which is the controller's own pod identity; only a ClusterVaultConnection may use it"}
	}
	// Hosts before credentials: a refused connection reads no Secret and sends nothing anywhere.
	allowed, err := r.allowedHosts(what, &conn.Spec)
	if err != nil {
		return nil, err
	}
	cfg, err := r.config(ctx, what, conn.Namespace, &conn.Spec)
	if err != nil {
		return nil, err
	}
	cfg.AllowedHosts = allowed
	if !hostpolicy.IsAzureAuthority(allowed[1]) {
		// Instance discovery would ask login.microsoftonline.com about an authority the admin vouched for.
		cfg.Cloud.DisableInstanceDiscovery = true
	}
	return &Resolved{Key: Namespaced(conn.Namespace, conn.Name), Config: *cfg}, nil
}

// allowedHosts checks a VaultConnection's vault and authority against the admin's allow-list and returns the
// only two hosts its client may reach: the vault's, then the authority's.
func (r *Resolver) allowedHosts(what string, spec *vaultcertv1.ConnectionSpec) ([]string, error) {
	authority := ""
	if c := spec.Cloud; c != nil {
		// CEL refuses both; this guards objects written before the rule or with validation bypassed.
		if c.DisableInstanceDiscovery || c.DisableChallengeResourceVerification {
			return nil, &Error{Reason: vaultcertv1.ReasonConnectionNotAllowed, Message: what +
				" sets cloud.disableInstanceDiscovery or cloud.disableChallengeResourceVerification, which only a ClusterVaultConnection may set: remove them, or ask the cluster admin for a ClusterVaultConnection"}
		}
		authority = c.AuthorityHost
	}
	vaultHost, err := r.hosts.CheckVault(spec.VaultURL)
	if err != nil {
		return nil, &Error{Reason: vaultcertv1.ReasonConnectionNotAllowed, Message: what + ": " + err.Error()}
	}
	authorityHost, err := r.hosts.CheckAuthority(authority)
	if err != nil {
		return nil, &Error{Reason: vaultcertv1.ReasonConnectionNotAllowed, Message: what + ": " + err.Error()}
	}
	return []string{vaultHost, authorityHost}, nil
}

// forCluster builds the config of a ClusterVaultConnection.
func (r *Resolver) forCluster(ctx context.Context, conn *vaultcertv1.ClusterVaultConnection) (*Resolved, error) {
	cfg, err := r.config(ctx, "ClusterVaultConnection "+conn.Name, "", &conn.Spec.ConnectionSpec)
	if err != nil {
		return nil, err
	}
	cfg.AllowedHosts = clusterAllowedHosts(cfg)
	return &Resolved{Key: Cluster(conn.Name), Config: *cfg, Cluster: conn}, nil
}

// clusterAllowedHosts confines a ClusterVaultConnection's own identity (service principal, a ServiceAccount's
// workload identity) to its vault and its authority, so a URL the vault hands back can never carry its token
// elsewhere. The controller's own identities (no auth, managed identity, the pod's workload identity) reach
// endpoints of the pod's environment (IMDS, AZURE_AUTHORITY_HOST) and stay unrestricted.
func clusterAllowedHosts(cfg *keyvault.Config) []string {
	switch cfg.Auth.Method {
	case keyvault.AuthClientSecret, keyvault.AuthClientCertificate, keyvault.AuthWorkloadIdentity:
	default:
		return nil
	}
	authority := cfg.Cloud.AuthorityHost
	if authority == "" {
		authority = hostpolicy.PublicAuthority
	}
	vaultHost, verr := keyvault.VaultHost(cfg.VaultURL)
	authorityHost, aerr := keyvault.VaultHost(authority)
	if verr != nil || aerr != nil {
		return nil // Validate reports the bad URL
	}
	hosts := []string{vaultHost, authorityHost}
	if !cfg.Cloud.DisableInstanceDiscovery && !hostpolicy.IsAzureAuthority(authorityHost) {
		// MSAL validates an authority it does not know with Entra ID's public discovery endpoint.
		hosts = append(hosts, "login.microsoftonline.com")
	}
	return hosts
}

// config maps a connection spec to keyvault.Config. ownNamespace is the namespace references resolve in for a
// VaultConnection; "" for the cluster kind, whose references carry their namespace.
func (r *Resolver) config(ctx context.Context, what, ownNamespace string, spec *vaultcertv1.ConnectionSpec) (*keyvault.Config, error) {
	cfg := &keyvault.Config{VaultURL: spec.VaultURL}
	if c := spec.Cloud; c != nil {
		cfg.Cloud = keyvault.CloudConfig{
			AuthorityHost:                        c.AuthorityHost,
			DisableInstanceDiscovery:             c.DisableInstanceDiscovery,
			DisableChallengeResourceVerification: c.DisableChallengeResourceVerification,
			CABundle:                             []byte(c.CABundle),
		}
	}
	if rl := spec.RateLimit; rl != nil {
		cfg.RequestsPerSecond = float64(rl.RequestsPerSecond)
		cfg.Burst = int(rl.Burst)
		// Only a cluster admin's connection may set the budget every connection to this vault host shares; a
		// VaultConnection's rateLimit limits its own requests only.
		cfg.SetsHostBudget = ownNamespace == ""
	}
	auth := spec.Auth
	switch {
	case auth == nil || (auth.ServicePrincipal == nil && auth.WorkloadIdentity == nil && auth.ManagedIdentity == nil):
		cfg.Auth = keyvault.AuthConfig{Method: keyvault.AuthDefault}
	case auth.ServicePrincipal != nil:
		sp := auth.ServicePrincipal
		cfg.Auth = keyvault.AuthConfig{TenantID: sp.TenantID, ClientID: sp.ClientID}
		if sp.ClientSecretRef != nil {
			value, err := r.secretValue(ctx, what, ownNamespace, sp.ClientSecretRef)
			if err != nil {
				return nil, err
			}
			cfg.Auth.Method, cfg.Auth.ClientSecret = keyvault.AuthClientSecret, string(value)
		} else {
			value, err := r.secretValue(ctx, what, ownNamespace, sp.ClientCertificateRef)
			if err != nil {
				return nil, err
			}
			cfg.Auth.Method, cfg.Auth.ClientCertificate = keyvault.AuthClientCertificate, value
		}
	case auth.ManagedIdentity != nil:
		cfg.Auth = keyvault.AuthConfig{Method: keyvault.AuthManagedIdentity, ClientID: auth.ManagedIdentity.ClientID}
	case auth.WorkloadIdentity != nil:
		a, err := r.workloadIdentity(ctx, what, ownNamespace, auth.WorkloadIdentity)
		if err != nil {
			return nil, err
		}
		cfg.Auth = *a
	}
	return cfg, nil
}

// workloadIdentity resolves a workloadIdentity auth. With a serviceAccountRef, that ServiceAccount's tokens are
// exchanged (in ownNamespace for a VaultConnection); without one, which only a ClusterVaultConnection
// (ownNamespace "") may do, the controller's own workload identity from its environment. The ServiceAccount's
// UID is part of AssertionKey, so a re-created ServiceAccount, or changed annotations (clientID, tenantID),
// rebuild the credential.
func (r *Resolver) workloadIdentity(ctx context.Context, what, ownNamespace string, wi *vaultcertv1.WorkloadIdentityAuth) (*keyvault.AuthConfig, error) {
	if wi.ServiceAccountRef == nil {
		if ownNamespace != "" {
			return nil, &Error{Reason: vaultcertv1.ReasonConnectionNotAllowed,
				Message: what + " uses workloadIdentity without serviceAccountRef; only a ClusterVaultConnection may use the controller's own identity"}
		}
		getenv := r.getenv
		if getenv == nil {
			getenv = os.Getenv
		}
		a := &keyvault.AuthConfig{Method: keyvault.AuthControllerWorkloadIdentity, ClientID: wi.ClientID, TenantID: wi.TenantID,
			TokenFile: getenv("AZURE_FEDERATED_TOKEN_FILE")}
		if a.ClientID == "" {
			a.ClientID = getenv("AZURE_CLIENT_ID")
		}
		if a.TenantID == "" {
			a.TenantID = getenv("AZURE_TENANT_ID")
		}
		var missing []string
		for _, m := range []struct{ name, value string }{{"AZURE_CLIENT_ID", a.ClientID}, {"AZURE_TENANT_ID", a.TenantID}, {"AZURE_FEDERATED_TOKEN_FILE", a.TokenFile}} {
			if m.value == "" {
				missing = append(missing, m.name)
			}
		}
		if len(missing) > 0 {
			return nil, &Error{Reason: vaultcertv1.ReasonConnectionNotReady, Message: fmt.Sprintf(
				"%s uses the controller's own workload identity, but the controller's pod has no %s: enable Azure workload identity for the controller (pod label azure.workload.identity/use=true, ServiceAccount annotation azure.workload.identity/client-id), or set spec.auth.workloadIdentity.serviceAccountRef",
				what, strings.Join(missing, ", "))}
		}
		a.AssertionKey = "controller:" + a.TokenFile
		return a, nil
	}
	ref := wi.ServiceAccountRef
	namespace, err := referenceNamespace(what, ownNamespace, ref.Namespace, fmt.Sprintf("serviceAccountRef %q", ref.Name))
	if err != nil {
		return nil, err
	}
	var sa corev1.ServiceAccount
	if err := r.readCredential(ctx, namespace, ref.Name, &sa, fmt.Sprintf(
		"%s: ServiceAccount %s/%s not found: create it, or fix spec.auth.workloadIdentity.serviceAccountRef", what, namespace, ref.Name)); err != nil {
		return nil, err
	}
	a := &keyvault.AuthConfig{Method: keyvault.AuthWorkloadIdentity, ClientID: wi.ClientID, TenantID: wi.TenantID}
	if a.ClientID == "" {
		a.ClientID = sa.Annotations[AnnotationWorkloadIdentityClientID]
	}
	if a.TenantID == "" {
		a.TenantID = sa.Annotations[AnnotationWorkloadIdentityTenantID]
	}
	var missing []string
	if a.ClientID == "" {
		missing = append(missing, fmt.Sprintf("spec.auth.workloadIdentity.clientID or the ServiceAccount's %s annotation", AnnotationWorkloadIdentityClientID))
	}
	if a.TenantID == "" {
		missing = append(missing, fmt.Sprintf("spec.auth.workloadIdentity.tenantID or the ServiceAccount's %s annotation", AnnotationWorkloadIdentityTenantID))
	}
	if len(missing) > 0 {
		return nil, &Error{Reason: vaultcertv1.ReasonConnectionNotReady, Message: fmt.Sprintf(
			"%s: workload identity through ServiceAccount %s/%s needs a client ID and a tenant ID: set %s", what, namespace, ref.Name, strings.Join(missing, ", and "))}
	}
	a.Assertion = newServiceAccountTokenSource(r.client, namespace, ref.Name).Token
	a.AssertionKey = fmt.Sprintf("serviceaccount:%s/%s/%s", namespace, ref.Name, sa.UID)
	r.read = append(r.read, "serviceaccount:"+namespace+"/"+ref.Name+"@"+sa.ResourceVersion)
	return a, nil
}

// readCredential reads a credential object (Secret or ServiceAccount) directly; a missing one is a
// ConnectionNotReady error with notFound as its message.
func (r *Resolver) readCredential(ctx context.Context, namespace, name string, obj client.Object, notFound string) error {
	err := r.apiReader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, obj)
	if apierrors.IsNotFound(err) {
		return &Error{Reason: vaultcertv1.ReasonConnectionNotReady, Message: notFound}
	}
	return err
}

// referenceNamespace is where a credential reference resolves: always ownNamespace for a VaultConnection
// (whatever the reference says), else the reference's own namespace, which a ClusterVaultConnection must give.
func referenceNamespace(what, ownNamespace, refNamespace, reference string) (string, error) {
	switch {
	case ownNamespace != "":
		return ownNamespace, nil
	case refNamespace == "":
		return "", &Error{Reason: vaultcertv1.ReasonConnectionNotReady, Message: fmt.Sprintf("%s: %s needs a namespace", what, reference)}
	}
	return refNamespace, nil
}

// secretValue reads one key of a credential Secret. A VaultConnection's references always resolve in its own
// namespace, whatever the reference says.
func (r *Resolver) secretValue(ctx context.Context, what, ownNamespace string, ref *vaultcertv1.SecretKeyReference) ([]byte, error) {
	namespace, err := referenceNamespace(what, ownNamespace, ref.Namespace, fmt.Sprintf("the reference to Secret %q", ref.Name))
	if err != nil {
		return nil, err
	}
	var secret corev1.Secret
	if err := r.readCredential(ctx, namespace, ref.Name, &secret, fmt.Sprintf("%s: credential Secret %s/%s not found", what, namespace, ref.Name)); err != nil {
		return nil, err
	}
	value := secret.Data[ref.Key]
	r.read = append(r.read, "secret:"+namespace+"/"+ref.Name+"@"+secret.ResourceVersion)
	if len(value) > maxCredentialBytes {
		return nil, &Error{Reason: vaultcertv1.ReasonConnectionNotReady,
			Message: fmt.Sprintf("%s: key %q of credential Secret %s/%s holds %d bytes; a client secret or certificate is at most %d", what, ref.Key, namespace, ref.Name, len(value), maxCredentialBytes)}
	}
	if len(value) == 0 {
		return nil, &Error{Reason: vaultcertv1.ReasonConnectionNotReady,
			Message: fmt.Sprintf("%s: credential Secret %s/%s has no key %q (or it is empty)", what, namespace, ref.Name, ref.Key)}
	}
	return value, nil
}

// maxCredentialBytes bounds a credential value: client secrets are tens of bytes, client certificates with their
// chain a few KiB.
const maxCredentialBytes = 64 << 10

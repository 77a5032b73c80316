package controllers

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/keyvault"
)

// connectionError is a problem with a connection itself (missing, not allowed, credentials unreadable). Reason is
// the VaultCertificate condition reason it maps to; the message says what to fix.
type connectionError struct {
	reason  string
	message string
}

func (e *connectionError) Error() string { return e.message }

// resolvedConnection is a connection ready to build a Key Vault client from.
type resolvedConnection struct {
	// key identifies the connection for the client factory's cache.
	key string
	// config is the vault, identity and cloud settings, with credential material read from its Secret.
	config keyvault.Config
}

// connectionResolver turns connection objects into keyvault.Config, enforcing the tenancy rules.
type connectionResolver struct {
	// client reads connections and namespaces (cached).
	client client.Client
	// apiReader reads credential Secrets directly: they are not labelled, so the label-filtered Secret cache
	// does not hold them.
	apiReader client.Reader
}

// forCertificate resolves the connection a VaultCertificate names and checks it may use it.
func (r *connectionResolver) forCertificate(ctx context.Context, vc *vaultcertv1.VaultCertificate) (*resolvedConnection, error) {
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
		return r.forCluster(ctx, &conn)
	default:
		var conn vaultcertv1.VaultConnection
		if err := r.client.Get(ctx, types.NamespacedName{Namespace: vc.Namespace, Name: ref.Name}, &conn); err != nil {
			return nil, notReadyIfMissing(err, fmt.Sprintf("VaultConnection %q not found in namespace %q: create it or fix spec.connectionRef", ref.Name, vc.Namespace))
		}
		return r.forNamespaced(ctx, &conn)
	}
}

func notReadyIfMissing(err error, message string) error {
	if apierrors.IsNotFound(err) {
		return &connectionError{reason: vaultcertv1.ReasonConnectionNotReady, message: message}
	}
	return err
}

// admits enforces a ClusterVaultConnection's namespaceSelector before any Key Vault call.
func (r *connectionResolver) admits(ctx context.Context, conn *vaultcertv1.ClusterVaultConnection, namespace string) error {
	sel := conn.Spec.NamespaceSelector
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		return nil
	}
	selector, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return &connectionError{reason: vaultcertv1.ReasonConnectionNotReady,
			message: fmt.Sprintf("ClusterVaultConnection %q has an invalid namespaceSelector: %v", conn.Name, err)}
	}
	var ns corev1.Namespace
	if err := r.client.Get(ctx, types.NamespacedName{Name: namespace}, &ns); err != nil {
		return err
	}
	if !selector.Matches(labels.Set(ns.Labels)) {
		return &connectionError{reason: vaultcertv1.ReasonConnectionNotAllowed,
			message: fmt.Sprintf("ClusterVaultConnection %q does not admit namespace %q: its namespaceSelector (%s) does not match the namespace's labels; ask the cluster admin to label the namespace or use a VaultConnection in this namespace", conn.Name, namespace, selector.String())}
	}
	return nil
}

// forNamespaced builds the config of a VaultConnection. It never uses the controller's identity and reads
// Secrets only in the connection's namespace.
func (r *connectionResolver) forNamespaced(ctx context.Context, conn *vaultcertv1.VaultConnection) (*resolvedConnection, error) {
	what := fmt.Sprintf("VaultConnection %s/%s", conn.Namespace, conn.Name)
	auth := conn.Spec.Auth
	if auth == nil || (auth.ServicePrincipal == nil && auth.WorkloadIdentity == nil && auth.ManagedIdentity == nil) {
		return nil, &connectionError{reason: vaultcertv1.ReasonConnectionNotReady,
			message: what + " sets no auth method; a VaultConnection must name its own identity (servicePrincipal or workloadIdentity)"}
	}
	if auth.ManagedIdentity != nil {
		// A managed identity belongs to the controller's pod: letting a namespace select it would lend it the
		// controller's identity.
		return nil, &connectionError{reason: vaultcertv1.ReasonConnectionNotAllowed,
			message: what + " uses managedIdentity, which is the controller's own pod identity; only a ClusterVaultConnection may use it"}
	}
	cfg, err := r.config(ctx, what, conn.Namespace, &conn.Spec)
	if err != nil {
		return nil, err
	}
	return &resolvedConnection{key: "VaultConnection/" + conn.Namespace + "/" + conn.Name, config: *cfg}, nil
}

// forCluster builds the config of a ClusterVaultConnection.
func (r *connectionResolver) forCluster(ctx context.Context, conn *vaultcertv1.ClusterVaultConnection) (*resolvedConnection, error) {
	cfg, err := r.config(ctx, "ClusterVaultConnection "+conn.Name, "", &conn.Spec.ConnectionSpec)
	if err != nil {
		return nil, err
	}
	return &resolvedConnection{key: "ClusterVaultConnection/" + conn.Name, config: *cfg}, nil
}

// config maps a connection spec to keyvault.Config. ownNamespace is the namespace references resolve in for a
// VaultConnection; "" for the cluster kind, whose references carry their namespace.
func (r *connectionResolver) config(ctx context.Context, what, ownNamespace string, spec *vaultcertv1.ConnectionSpec) (*keyvault.Config, error) {
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
		return nil, &connectionError{reason: vaultcertv1.ReasonConnectionNotReady,
			message: what + " uses workloadIdentity, which this version of vaultcert does not support yet; use servicePrincipal"}
	}
	return cfg, nil
}

// secretValue reads one key of a credential Secret. A VaultConnection's references always resolve in its own
// namespace, whatever the reference says.
func (r *connectionResolver) secretValue(ctx context.Context, what, ownNamespace string, ref *vaultcertv1.SecretKeyReference) ([]byte, error) {
	namespace := ref.Namespace
	if ownNamespace != "" {
		namespace = ownNamespace
	}
	if namespace == "" {
		return nil, &connectionError{reason: vaultcertv1.ReasonConnectionNotReady,
			message: fmt.Sprintf("%s: the reference to Secret %q needs a namespace", what, ref.Name)}
	}
	var secret corev1.Secret
	if err := r.apiReader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: ref.Name}, &secret); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &connectionError{reason: vaultcertv1.ReasonConnectionNotReady,
				message: fmt.Sprintf("%s: credential Secret %s/%s not found", what, namespace, ref.Name)}
		}
		return nil, err
	}
	value := secret.Data[ref.Key]
	if len(value) == 0 {
		return nil, &connectionError{reason: vaultcertv1.ReasonConnectionNotReady,
			message: fmt.Sprintf("%s: credential Secret %s/%s has no key %q (or it is empty)", what, namespace, ref.Name, ref.Key)}
	}
	return value, nil
}

// asConnectionError extracts a connectionError.
func asConnectionError(err error) (*connectionError, bool) {
	var ce *connectionError
	ok := errors.As(err, &ce)
	return ce, ok
}

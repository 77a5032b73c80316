package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/changefeed"
	"github.com/vaultcert/vaultcert/internal/connection"
	"github.com/vaultcert/vaultcert/internal/decide"
	"github.com/vaultcert/vaultcert/internal/hostpolicy"
	"github.com/vaultcert/vaultcert/internal/keyvault"
	"github.com/vaultcert/vaultcert/internal/shard"
)

// ReasonConnected is the connection Ready reason when the vault answered the credentials.
const ReasonConnected = "Connected"

// ConnectionReconciler sets Ready on VaultConnections and ClusterVaultConnections by asking the vault once.
type ConnectionReconciler struct {
	// Client reads and writes connections.
	client.Client
	// APIReader reads credential Secrets.
	APIReader client.Reader
	// Factory builds Key Vault clients; the client built here is the one certificates reuse.
	Factory ClientFactory
	// RecheckInterval is how often a connection is re-checked. A change to a credential Secret or
	// ServiceAccount the connection names re-checks it at once (see connection.CredentialWatcher).
	RecheckInterval time.Duration
	// HostPolicy lists the vault and authority hosts a VaultConnection may use; nothing is sent elsewhere.
	HostPolicy hostpolicy.Policy

	// Shard is the namespaces whose VaultConnections this instance checks; only shard 0 checks
	// ClusterVaultConnections, so one instance writes each status.
	Shard shard.Shard

	// Changes is the vault listing the VaultCertificate reconciler uses (nil when off): a deleted connection's
	// listing is dropped, and a connection whose certificates are read one by one says why.
	Changes *changefeed.Registry

	// credentials watches the Secrets and ServiceAccounts connections name; set by SetupWithManager.
	credentials *connection.CredentialWatcher
}

// +kubebuilder:rbac:groups=vaultcert.io,resources=vaultconnections;clustervaultconnections,verbs=get;list;watch
// +kubebuilder:rbac:groups=vaultcert.io,resources=vaultconnections/status;clustervaultconnections/status,verbs=get;update;patch

// namespacedConnectionReconciler reconciles VaultConnections.
type namespacedConnectionReconciler struct{ *ConnectionReconciler }

// clusterConnectionReconciler reconciles ClusterVaultConnections.
type clusterConnectionReconciler struct{ *ConnectionReconciler }

// Reconcile checks one VaultConnection.
func (r namespacedConnectionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if !r.Shard.Owns(req.Namespace) {
		return ctrl.Result{}, nil
	}
	var conn vaultcertv1.VaultConnection
	if err := r.Get(ctx, req.NamespacedName, &conn); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(connection.Namespaced(req.Namespace, req.Name))
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	// Watch what the connection names before reading it, so no change after this read goes unnoticed.
	r.credentials.TrackNamespaced(&conn)
	before := conn.DeepCopy()
	resolved, err := r.resolver().ForNamespaced(ctx, &conn)
	result := r.check(ctx, resolved, err, &conn.Status, conn.Generation)
	return r.patchStatus(ctx, &conn, before, before.Status, conn.Status, result)
}

// Reconcile checks one ClusterVaultConnection.
func (r clusterConnectionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var conn vaultcertv1.ClusterVaultConnection
	if err := r.Get(ctx, req.NamespacedName, &conn); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(connection.Cluster(req.Name))
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	// Every shard watches its credentials (its VaultCertificates may use it); shard 0 alone checks it and writes
	// its status. Every shard forgets it when it is deleted.
	r.credentials.TrackCluster(&conn)
	if !r.Shard.OwnsClusterScoped() {
		return ctrl.Result{}, nil
	}
	before := conn.DeepCopy()
	resolved, err := r.resolver().ForCluster(ctx, &conn)
	result := r.check(ctx, resolved, err, &conn.Status, conn.Generation)
	return r.patchStatus(ctx, &conn, before, before.Status, conn.Status, result)
}

// forget drops what the credential watcher and the client factory hold for a deleted connection.
func (r *ConnectionReconciler) forget(key connection.Key) {
	r.credentials.Forget(key)
	r.Factory.Forget(key.String())
	if r.Changes != nil {
		r.Changes.ForgetConnection(key.String())
	}
}

// resolver returns a connection resolver for one reconcile.
func (r *ConnectionReconciler) resolver() *connection.Resolver {
	return connection.NewResolver(r.Client, r.APIReader, r.credentials, r.HostPolicy)
}

// check asks the vault once (list one certificate) and sets Ready.
func (r *ConnectionReconciler) check(ctx context.Context, resolved *connection.Resolved, resolveErr error, st *vaultcertv1.ConnectionStatus, generation int64) ctrl.Result {
	st.ObservedGeneration = generation
	set := func(status metav1.ConditionStatus, reason, message string) {
		setCondition(&st.Conditions, generation, vaultcertv1.ConditionReady, status, reason, message)
	}
	if resolveErr != nil {
		f := classify(resolveErr, "the connection")
		set(metav1.ConditionFalse, f.reason, f.message)
		return ctrl.Result{RequeueAfter: r.RecheckInterval}
	}
	kv, err := r.Factory.Client(resolved.Key.String(), resolved.Config)
	if err != nil {
		set(metav1.ConditionFalse, vaultcertv1.ReasonConnectionNotReady, err.Error())
		return ctrl.Result{RequeueAfter: r.RecheckInterval}
	}
	err = kv.CheckAccess(ctx)
	var forbidden *keyvault.ForbiddenError
	switch {
	case err == nil:
		msg := fmt.Sprintf("%s answered the connection's credentials", resolved.Config.VaultURL)
		if r.Changes != nil {
			if why := r.Changes.Unavailable(resolved.Key.String()); why != "" {
				msg += "; " + why
			}
		}
		set(metav1.ConditionTrue, ReasonConnected, msg)
	case asForbidden(err, &forbidden) && forbidden.InnerCode != "ForbiddenByFirewall":
		// The identity authenticated; it may hold roles on single certificates only, which is a valid setup.
		set(metav1.ConditionTrue, ReasonConnected, fmt.Sprintf(
			"%s accepted the credentials but the identity may not list certificates (%v); certificates it may read individually will sync, "+
				"each read on its own at every refresh (assign 'Key Vault Certificate User' on the vault to let one list serve them all)", resolved.Config.VaultURL, err))
	default:
		f := classify(err, resolved.Config.VaultURL)
		set(metav1.ConditionFalse, f.reason, f.message)
		if f.retryAfter > 0 {
			return ctrl.Result{RequeueAfter: decide.Jitter(f.retryAfter, 0.2)}
		}
	}
	return ctrl.Result{RequeueAfter: decide.Jitter(r.RecheckInterval, decide.RefreshJitter)}
}

func asForbidden(err error, target **keyvault.ForbiddenError) bool { return errors.As(err, target) }

// patchStatus writes the status when it changed.
func (r *ConnectionReconciler) patchStatus(ctx context.Context, obj client.Object, before client.Object, old, now vaultcertv1.ConnectionStatus, result ctrl.Result) (ctrl.Result, error) {
	if equality.Semantic.DeepEqual(old, now) {
		return result, nil
	}
	if err := r.Status().Patch(ctx, obj, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	return result, nil
}

// SetupWithManager registers both connection reconcilers, and the credential watcher that re-checks a
// connection as soon as a Secret or ServiceAccount it names changes.
func (r *ConnectionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.RecheckInterval <= 0 {
		r.RecheckInterval = 10 * time.Minute
	}
	w, err := connection.CredentialWatcherFor(mgr)
	if err != nil {
		return err
	}
	r.credentials = w
	if err := ctrl.NewControllerManagedBy(mgr).Named("vaultconnection").
		For(&vaultcertv1.VaultConnection{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(w.Source(connection.QueueVaultConnection)).
		Complete(namespacedConnectionReconciler{r}); err != nil {
		return err
	}
	if err := ctrl.NewControllerManagedBy(mgr).Named("clustervaultconnection").
		For(&vaultcertv1.ClusterVaultConnection{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(w.Source(connection.QueueClusterVaultConnection)).
		Complete(clusterConnectionReconciler{r}); err != nil {
		return err
	}
	return mgr.Add(manager.RunnableFunc(r.sweepClients))
}

// clientSweepInterval is how often clients of connections that no longer exist are dropped.
const clientSweepInterval = 10 * time.Minute

// sweepClients drops, every clientSweepInterval, the Key Vault clients (credentials, tokens, per-vault state) of
// connections that no longer exist: a deletion is normally seen by the reconcilers, but a client built by a
// reconcile racing the deletion would otherwise stay for the life of the process.
func (r *ConnectionReconciler) sweepClients(ctx context.Context) error {
	t := time.NewTicker(clientSweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			r.Factory.Retain(func(key string) bool { return r.connectionExists(ctx, key) })
		}
	}
}

// connectionExists reports whether the connection a factory key names is still in the cache; on doubt it keeps.
func (r *ConnectionReconciler) connectionExists(ctx context.Context, key string) bool {
	k, ok := connection.Parse(key)
	if !ok {
		return true
	}
	var obj client.Object = &vaultcertv1.VaultConnection{}
	if k.Kind() == vaultcertv1.ClusterVaultConnectionKind {
		obj = &vaultcertv1.ClusterVaultConnection{}
	}
	return !apierrors.IsNotFound(r.Get(ctx, k.Request().NamespacedName, obj))
}

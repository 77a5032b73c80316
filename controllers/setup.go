package controllers

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/connection"
)

// SetupWithManager registers the reconciler, its index and its watches.
func (r *VaultCertificateReconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	registerMetrics(mgr.GetCache())
	credentials, err := connection.CredentialWatcherFor(mgr)
	if err != nil {
		return err
	}
	r.credentials = credentials
	if err := connection.IndexCertificates(context.Background(), mgr.GetFieldIndexer()); err != nil {
		return err
	}
	byConnection := func(key func(client.Object) string) handler.EventHandler {
		return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			var list vaultcertv1.VaultCertificateList
			if err := r.List(ctx, &list, client.MatchingFields{connection.CertificateIndex: key(o)}); err != nil {
				return nil
			}
			reqs := make([]reconcile.Request, 0, len(list.Items))
			for _, vc := range list.Items {
				reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: vc.Namespace, Name: vc.Name}})
			}
			return reqs
		})
	}
	b := ctrl.NewControllerManagedBy(mgr).
		Named("vaultcertificate").
		WithOptions(opts).
		For(&vaultcertv1.VaultCertificate{}, builder.WithPredicates(r.inShard(),
			predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		// The manager's cache holds only the metadata of Secrets labelled managed-by=vaultcert (CacheOptions), so
		// this watch sees vaultcert's Secrets, not every Secret in the cluster, and never their data; a deleted or
		// edited one is repaired.
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(secretToCertificate), builder.WithPredicates(r.inShard())).
		// A namespace whose labels change may stop (or start) matching a ClusterVaultConnection's
		// namespaceSelector: its certificates on ClusterVaultConnections are checked again at once.
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.clusterCertificatesIn),
			builder.WithPredicates(predicate.LabelChangedPredicate{})).
		Watches(&vaultcertv1.VaultConnection{}, byConnection(func(o client.Object) string {
			return connection.Namespaced(o.GetNamespace(), o.GetName()).String()
		}), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&vaultcertv1.ClusterVaultConnection{}, byConnection(func(o client.Object) string {
			return connection.Cluster(o.GetName()).String()
		}), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// A credential Secret or ServiceAccount a connection names changed: its certificates retry at once,
		// rather than at their next refresh.
		WatchesRawSource(credentials.Source(connection.QueueVaultCertificate))
	if r.Changes != nil {
		// The vault listing wakes the VaultCertificates whose certificate changed, and those that waited for it.
		b = b.WatchesRawSource(source.Channel(r.Changes.Events(), &handler.EnqueueRequestForObject{}))
	}
	return b.Complete(r)
}

// inShard passes events of namespaced objects in this instance's shard only.
func (r *VaultCertificateReconciler) inShard() predicate.Predicate {
	return predicate.NewPredicateFuncs(func(o client.Object) bool { return r.Shard.Owns(o.GetNamespace()) })
}

// secretToCertificate maps a managed Secret to the VaultCertificate named in its label.
func secretToCertificate(_ context.Context, o client.Object) []reconcile.Request {
	name := o.GetLabels()[vaultcertv1.LabelCertificate]
	if name == "" || o.GetLabels()[vaultcertv1.LabelManagedBy] != vaultcertv1.ManagedByValue {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
}

// clusterCertificatesIn lists the VaultCertificates of a namespace that use a ClusterVaultConnection.
func (r *VaultCertificateReconciler) clusterCertificatesIn(ctx context.Context, o client.Object) []reconcile.Request {
	var list vaultcertv1.VaultCertificateList
	if err := r.List(ctx, &list, client.InNamespace(o.GetName())); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for _, vc := range list.Items {
		if vc.Spec.ConnectionRef.Kind == vaultcertv1.ClusterVaultConnectionKind {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: vc.Namespace, Name: vc.Name}})
		}
	}
	return reqs
}

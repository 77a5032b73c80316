package controllers

import (
	"context"
	"sort"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/routes"
	"github.com/vaultcert/vaultcert/internal/shard"
)

// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses,verbs=get;list;watch
// +kubebuilder:rbac:groups=vaultcert.io,resources=vaultcertificates,verbs=create;update;patch;delete

// IngressShimReconciler is the Ingress shim: an Ingress annotated with a Key Vault certificate
// (vaultcert.io/certificate-name or vaultcert.io/keyvault-uri) gets one VaultCertificate per
// spec.tls[].secretName, named after the Secret and owned by the Ingress, kept in step with its annotations and
// TLS entries, and deleted when the annotation goes. docs/ingress.md has the annotations.
type IngressShimReconciler struct {
	client.Client
	// Recorder emits the shim's events on Ingresses.
	Recorder events.EventRecorder
	// Shard is the namespaces this instance serves; the zero value is all of them.
	Shard shard.Shard
}

// SetupWithManager registers the shim and its watches: Ingresses, the VaultCertificates they own (a spec change
// by someone else is undone; a HostsCovered change is told), and connections (a default marked, a vault changed).
func (r *IngressShimReconciler) SetupWithManager(mgr ctrl.Manager) error {
	inShard := predicate.NewPredicateFuncs(func(o client.Object) bool { return r.Shard.Owns(o.GetNamespace()) })
	return ctrl.NewControllerManagedBy(mgr).
		Named("ingress-shim").
		For(&networkingv1.Ingress{}, builder.WithPredicates(inShard,
			predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&vaultcertv1.VaultCertificate{}, builder.WithPredicates(inShard, predicate.Funcs{
			UpdateFunc: func(e event.UpdateEvent) bool { return hostsCoveredChanged(e.ObjectOld, e.ObjectNew) },
		})).
		// A VaultCertificate shared by several Ingresses goes with the one that made it: the others make their own.
		Watches(&vaultcertv1.VaultCertificate{}, handler.EnqueueRequestsFromMapFunc(r.ingressesNaming),
			builder.WithPredicates(inShard, predicate.Funcs{
				CreateFunc: func(event.CreateEvent) bool { return false },
				UpdateFunc: func(event.UpdateEvent) bool { return false },
			})).
		Watches(&vaultcertv1.VaultConnection{}, handler.EnqueueRequestsFromMapFunc(r.annotatedIngresses),
			builder.WithPredicates(inShard, predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Watches(&vaultcertv1.ClusterVaultConnection{}, handler.EnqueueRequestsFromMapFunc(r.annotatedIngresses),
			builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Complete(r)
}

// annotatedIngresses lists the Ingresses that ask for a certificate: in the connection's namespace for a
// VaultConnection, everywhere (in this shard) for a ClusterVaultConnection.
func (r *IngressShimReconciler) annotatedIngresses(ctx context.Context, o client.Object) []reconcile.Request {
	var list networkingv1.IngressList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for _, ing := range list.Items {
		if _, asked, _ := routes.Parse(ing.Annotations); asked && r.Shard.Owns(ing.Namespace) {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ing.Namespace, Name: ing.Name}})
		}
	}
	return reqs
}

// ingressesNaming lists the annotated Ingresses of a deleted VaultCertificate's namespace that name its Secret.
func (r *IngressShimReconciler) ingressesNaming(ctx context.Context, o client.Object) []reconcile.Request {
	vc, ok := o.(*vaultcertv1.VaultCertificate)
	if !ok {
		return nil
	}
	var list networkingv1.IngressList
	if err := r.List(ctx, &list, client.InNamespace(vc.Namespace)); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for _, ing := range list.Items {
		if _, asked, _ := routes.Parse(ing.Annotations); !asked {
			continue
		}
		if _, names := routes.IngressHosts(&ing)[vc.Spec.SecretName]; names {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ing.Namespace, Name: ing.Name}})
		}
	}
	return reqs
}

// Reconcile brings one Ingress's VaultCertificates in step with it.
func (r *IngressShimReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if !r.Shard.Owns(req.Namespace) {
		return ctrl.Result{}, nil
	}
	shim := r.shim()
	var ing networkingv1.Ingress
	if err := r.Get(ctx, req.NamespacedName, &ing); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		// Gone: garbage collection removes the VaultCertificates it owned; deleting them here does not wait for it.
		ing.Namespace, ing.Name = req.Namespace, req.Name
		return ctrl.Result{}, shim.removeAll(ctx, &ing)
	}
	if !ing.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	request, asked, err := routes.Parse(ing.Annotations)
	switch {
	case !asked:
		return ctrl.Result{}, shim.removeAll(ctx, &ing)
	case err != nil:
		// The last good VaultCertificates stay until the annotations are fixed.
		shim.warn(&ing, types.NamespacedName{}, &problem{vaultcertv1.EventInvalidAnnotations, err.Error()})
		return ctrl.Result{}, nil
	}
	conn, problem, err := shim.connectionFor(ctx, request, ing.Namespace, ing.Namespace)
	if err != nil {
		return ctrl.Result{}, err
	}
	if problem != nil {
		shim.warn(&ing, types.NamespacedName{}, problem)
		return ctrl.Result{}, nil
	}
	hosts := routes.IngressHosts(&ing)
	secrets := make([]string, 0, len(hosts))
	for secret := range hosts {
		secrets = append(secrets, secret)
	}
	sort.Strings(secrets)
	targets := make([]shimTarget, 0, len(secrets))
	for _, secret := range secrets {
		targets = append(targets, shimTarget{name: types.NamespacedName{Namespace: ing.Namespace, Name: secret},
			spec: routes.Spec(request, conn, secret, hosts[secret])})
	}
	if len(targets) == 0 {
		shim.warn(&ing, types.NamespacedName{}, problemf(vaultcertv1.EventInvalidAnnotations, "the Ingress names a Key Vault certificate but no spec.tls[].secretName to write it to"))
	}
	return ctrl.Result{}, shim.sync(ctx, &ing, targets, nil)
}

func (r *IngressShimReconciler) shim() *routeShim {
	return &routeShim{Client: r.Client, recorder: r.Recorder, kind: "Ingress", apiVersion: networkingv1.SchemeGroupVersion.String(),
		ownNamespaceOnly: true}
}

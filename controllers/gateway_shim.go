package controllers

import (
	"context"
	"fmt"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/routes"
	"github.com/vaultcert/vaultcert/internal/shard"
)

// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=gateways;referencegrants,verbs=get;list;watch

// GatewayShimReconciler is the Gateway API shim: a Gateway listener whose tls.options carry the Ingress shim's
// keys (vaultcert.io/certificate-name or vaultcert.io/keyvault-uri, the connection, the options) gets a
// VaultCertificate for each Secret in its tls.certificateRefs. A Secret in another namespace is served only when
// a ReferenceGrant there allows the Gateway, and only through a ClusterVaultConnection; that VaultCertificate has
// no owner reference (they cannot cross namespaces), so the shim deletes it itself when the Gateway stops asking
// or is deleted.
type GatewayShimReconciler struct {
	client.Client
	// Recorder emits the shim's events on Gateways.
	Recorder events.EventRecorder
	// Shard is the namespaces this instance serves (by the Gateway's namespace); the zero value is all of them.
	Shard shard.Shard
	// referenceGrants is whether the ReferenceGrant CRD is installed (else cross-namespace references are refused).
	referenceGrants bool
}

// gatewayKind is the route kind of the Gateway shim's VaultCertificates.
const gatewayKind = "Gateway"

// GatewayAPIInstalled reports whether the API server serves gateway.networking.k8s.io/v1 Gateways.
func GatewayAPIInstalled(mapper meta.RESTMapper) (bool, error) {
	return served(mapper, schema.GroupKind{Group: gatewayv1.GroupName, Kind: "Gateway"})
}

func served(mapper meta.RESTMapper, gk schema.GroupKind) (bool, error) {
	if _, err := mapper.RESTMapping(gk, gatewayv1.GroupVersion.Version); err != nil {
		if meta.IsNoMatchError(err) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// SetupWithManager registers the shim when the Gateway API CRDs are installed, and does nothing (no error)
// when they are not: installing them later needs a restart of vaultcert.
func (r *GatewayShimReconciler) SetupWithManager(mgr ctrl.Manager) error {
	installed, err := GatewayAPIInstalled(mgr.GetRESTMapper())
	if err != nil || !installed {
		if err == nil {
			mgr.GetLogger().Info("Gateway API CRDs not installed: the Gateway shim is off")
		}
		return err
	}
	if r.referenceGrants, err = served(mgr.GetRESTMapper(), schema.GroupKind{Group: gatewayv1.GroupName, Kind: "ReferenceGrant"}); err != nil {
		return err
	}
	inShard := predicate.NewPredicateFuncs(func(o client.Object) bool { return r.Shard.Owns(o.GetNamespace()) })
	b := ctrl.NewControllerManagedBy(mgr).
		Named("gateway-shim").
		For(&gatewayv1.Gateway{}, builder.WithPredicates(inShard,
			predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		// The shim's VaultCertificates, in any namespace, map back to their Gateway by annotation: a spec change
		// by someone else is undone, a HostsCovered change is told, and one whose Gateway was deleted while
		// vaultcert was down is found at start.
		Watches(&vaultcertv1.VaultCertificate{}, handler.EnqueueRequestsFromMapFunc(gatewayOf),
			builder.WithPredicates(predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool { return hostsCoveredChanged(e.ObjectOld, e.ObjectNew) }})).
		Watches(&vaultcertv1.VaultConnection{}, handler.EnqueueRequestsFromMapFunc(r.gatewaysIn(false)),
			builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Watches(&vaultcertv1.ClusterVaultConnection{}, handler.EnqueueRequestsFromMapFunc(r.gatewaysIn(true)),
			builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{})))
	if r.referenceGrants {
		// A grant given or taken back changes which cross-namespace Secrets are served.
		b = b.Watches(&gatewayv1.ReferenceGrant{}, handler.EnqueueRequestsFromMapFunc(r.gatewaysGranted),
			builder.WithPredicates(predicate.GenerationChangedPredicate{}))
	}
	return b.Complete(r)
}

// gatewayOf maps a shim VaultCertificate to its Gateway.
func gatewayOf(_ context.Context, o client.Object) []reconcile.Request {
	if o.GetLabels()[vaultcertv1.LabelRouteKind] != gatewayKind {
		return nil
	}
	kind, rest, _ := strings.Cut(o.GetAnnotations()[vaultcertv1.AnnotationRoute], "/")
	ns, name, ok := strings.Cut(rest, "/")
	if kind != gatewayKind || !ok || ns == "" || name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}}
}

// gatewaysIn lists the Gateways of the object's namespace, or of every namespace (in this shard) when all.
func (r *GatewayShimReconciler) gatewaysIn(all bool) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		var list gatewayv1.GatewayList
		opts := []client.ListOption{}
		if !all {
			opts = append(opts, client.InNamespace(o.GetNamespace()))
		}
		if err := r.List(ctx, &list, opts...); err != nil {
			return nil
		}
		var reqs []reconcile.Request
		for _, gw := range list.Items {
			if r.Shard.Owns(gw.Namespace) {
				reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: gw.Namespace, Name: gw.Name}})
			}
		}
		return reqs
	}
}

// gatewaysGranted lists the Gateways of the namespaces a ReferenceGrant lets refer to its namespace (those whose
// cross-namespace Secrets it gives or takes back), not every Gateway of the cluster.
func (r *GatewayShimReconciler) gatewaysGranted(ctx context.Context, o client.Object) []reconcile.Request {
	g, ok := o.(*gatewayv1.ReferenceGrant)
	if !ok {
		return nil
	}
	var reqs []reconcile.Request
	seen := map[string]bool{}
	for _, f := range g.Spec.From {
		ns := string(f.Namespace)
		if string(f.Group) != gatewayv1.GroupName || f.Kind != "Gateway" || seen[ns] {
			continue
		}
		seen[ns] = true
		var list gatewayv1.GatewayList
		if err := r.List(ctx, &list, client.InNamespace(ns)); err != nil {
			continue
		}
		for _, gw := range list.Items {
			if r.Shard.Owns(gw.Namespace) {
				reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: gw.Namespace, Name: gw.Name}})
			}
		}
	}
	return reqs
}

// Reconcile brings one Gateway's VaultCertificates in step with its listeners.
func (r *GatewayShimReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if !r.Shard.Owns(req.Namespace) {
		return ctrl.Result{}, nil
	}
	shim := r.shim()
	var gw gatewayv1.Gateway
	if err := r.Get(ctx, req.NamespacedName, &gw); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		// Gone: its VaultCertificates in other namespaces have no owner to be collected with.
		gw.Namespace, gw.Name = req.Namespace, req.Name
		return ctrl.Result{}, shim.removeAll(ctx, &gw)
	}
	if !gw.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, shim.removeAll(ctx, &gw)
	}
	targets, keep, err := r.targets(ctx, shim, &gw)
	if err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, shim.sync(ctx, &gw, targets, keep)
}

// targets reads every listener: the VaultCertificates they ask for (one per Secret; the hostnames of every
// listener serving it), and those to keep as they are because a listener's request cannot be acted on now.
func (r *GatewayShimReconciler) targets(ctx context.Context, shim *routeShim, gw *gatewayv1.Gateway) ([]shimTarget, map[types.NamespacedName]bool, error) {
	bySecret := map[types.NamespacedName]*shimTarget{}
	keep := map[types.NamespacedName]bool{}
	for _, l := range gw.Spec.Listeners {
		if l.TLS == nil || len(l.TLS.Options) == 0 {
			continue
		}
		keys := make(map[string]string, len(l.TLS.Options))
		for k, v := range l.TLS.Options {
			keys[string(k)] = string(v)
		}
		request, asked, err := routes.Parse(keys)
		if !asked {
			continue
		}
		secrets := listenerSecrets(gw, l)
		if err != nil {
			shim.warn(gw, types.NamespacedName{}, problemf(vaultcertv1.EventInvalidAnnotations, "listener %q tls.options: %v", l.Name, err))
			for _, secret := range secrets {
				// The last good VaultCertificate stays, but only where the Gateway may still refer: a bad option
				// must not keep one alive in a namespace whose grant was taken back.
				if refused, err := r.allowed(ctx, gw, secret); err != nil {
					return nil, nil, err
				} else if refused == nil {
					keep[secret] = true
				}
			}
			continue
		}
		var hosts []string
		if l.Hostname != nil {
			hosts = []string{string(*l.Hostname)}
		}
		for _, secret := range secrets {
			refused, err := r.allowed(ctx, gw, secret)
			if err != nil {
				return nil, nil, err
			}
			if refused != nil {
				// Not kept: without a grant (or with one taken back) vaultcert writes nothing there for this Gateway.
				refused.message = fmt.Sprintf("listener %q, Secret %s: %s", l.Name, secret, refused.message)
				shim.warn(gw, secret, refused)
				continue
			}
			conn, p, err := shim.connectionFor(ctx, request, secret.Namespace, gw.Namespace)
			if err != nil {
				return nil, nil, err
			}
			if p != nil {
				p.message = fmt.Sprintf("listener %q, Secret %s: %s", l.Name, secret, p.message)
				shim.warn(gw, secret, p)
				keep[secret] = true
				continue
			}
			spec := routes.Spec(request, conn, secret.Name, nil)
			if t, ok := bySecret[secret]; ok {
				if t.spec.CertificateName != spec.CertificateName || t.spec.ConnectionRef != spec.ConnectionRef || t.spec.Version != spec.Version {
					shim.warn(gw, secret, problemf(vaultcertv1.EventInvalidAnnotations, "listener %q asks for Key Vault certificate %q in Secret %s, which another listener fills with %q: the first listener's is kept",
						l.Name, spec.CertificateName, secret, t.spec.CertificateName))
				}
				mergeHosts(&t.spec, hosts)
				continue
			}
			mergeHosts(&spec, hosts)
			bySecret[secret] = &shimTarget{name: secret, spec: spec}
		}
	}
	names := make([]types.NamespacedName, 0, len(bySecret))
	for n := range bySecret {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return names[i].String() < names[j].String() })
	targets := make([]shimTarget, 0, len(names))
	for _, n := range names {
		targets = append(targets, *bySecret[n])
	}
	return targets, keep, nil
}

// listenerSecrets are the Secrets a listener's tls.certificateRefs name (other kinds are not vaultcert's).
func listenerSecrets(gw *gatewayv1.Gateway, l gatewayv1.Listener) []types.NamespacedName {
	var out []types.NamespacedName
	for _, ref := range l.TLS.CertificateRefs {
		if (ref.Group != nil && *ref.Group != "") || (ref.Kind != nil && *ref.Kind != "Secret") {
			continue
		}
		ns := gw.Namespace
		if ref.Namespace != nil && *ref.Namespace != "" {
			ns = string(*ref.Namespace)
		}
		out = append(out, types.NamespacedName{Namespace: ns, Name: string(ref.Name)})
	}
	return out
}

// allowed says why the Gateway may not have vaultcert fill secret (nil when it may): a Secret in another
// namespace needs a ReferenceGrant there from this Gateway's namespace to that Secret (or every Secret).
func (r *GatewayShimReconciler) allowed(ctx context.Context, gw *gatewayv1.Gateway, secret types.NamespacedName) (*problem, error) {
	if secret.Namespace == gw.Namespace {
		return nil, nil
	}
	if !r.referenceGrants {
		return problemf(vaultcertv1.EventRefNotPermitted, "the Secret is in another namespace and the ReferenceGrant CRD is not installed"), nil
	}
	var grants gatewayv1.ReferenceGrantList
	if err := r.List(ctx, &grants, client.InNamespace(secret.Namespace)); err != nil {
		return nil, err
	}
	for _, g := range grants.Items {
		if referenceGranted(&g, gw.Namespace, secret.Name) {
			return nil, nil
		}
	}
	return problemf(vaultcertv1.EventRefNotPermitted, "no ReferenceGrant in namespace %s allows Gateways in %s to refer to Secret %s: create one (from group %s, kind Gateway, namespace %s; to group \"\", kind Secret)",
		secret.Namespace, gw.Namespace, secret.Name, gatewayv1.GroupName, gw.Namespace), nil
}

// referenceGranted reports whether g lets Gateways of fromNamespace refer to the Secret named secret.
func referenceGranted(g *gatewayv1.ReferenceGrant, fromNamespace, secret string) bool {
	from := false
	for _, f := range g.Spec.From {
		if string(f.Group) == gatewayv1.GroupName && f.Kind == "Gateway" && string(f.Namespace) == fromNamespace {
			from = true
		}
	}
	if !from {
		return false
	}
	for _, t := range g.Spec.To {
		if t.Group == "" && t.Kind == "Secret" && (t.Name == nil || string(*t.Name) == secret) {
			return true
		}
	}
	return false
}

func (r *GatewayShimReconciler) shim() *routeShim {
	return &routeShim{Client: r.Client, recorder: r.Recorder, kind: gatewayKind, apiVersion: gatewayv1.GroupVersion.String()}
}

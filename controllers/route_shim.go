package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/connection"
	"github.com/vaultcert/vaultcert/internal/routes"
)

// routeShim is what the Ingress and Gateway shims share: it keeps the VaultCertificates a route asks for in step
// with it, deletes those it no longer asks for, never touches a VaultCertificate it did not make, and tells the
// route's owner what it did by events on the route.
//
// A shim's VaultCertificate carries the label vaultcert.io/route-kind and the annotation vaultcert.io/route
// (<kind>/<namespace>/<name>); in the route's namespace it is also owned by the route (controller reference), so
// garbage collection removes it with the route.
type routeShim struct {
	client.Client
	recorder events.EventRecorder
	// kind is the route's kind: Ingress or Gateway.
	kind string
	// apiVersion is the route's group and version, for owner references.
	apiVersion string
	// ownNamespaceOnly says the route's VaultCertificates are all in its namespace (Ingress), so only that
	// namespace is listed.
	ownNamespaceOnly bool
}

// shimTarget is one VaultCertificate a route asks for: named after its Secret, in the Secret's namespace.
type shimTarget struct {
	name types.NamespacedName
	spec vaultcertv1.VaultCertificateSpec
}

// routeKey is the value of vaultcert.io/route for a route.
func (s *routeShim) routeKey(route client.Object) string {
	return s.kind + "/" + route.GetNamespace() + "/" + route.GetName()
}

// isOurs reports whether the shim made vc for route. Anything else (made by hand, by another route, or by the
// other shim) is never changed or deleted.
func (s *routeShim) isOurs(vc *vaultcertv1.VaultCertificate, route client.Object) bool {
	return vc.Labels[vaultcertv1.LabelRouteKind] == s.kind && vc.Annotations[vaultcertv1.AnnotationRoute] == s.routeKey(route)
}

// made lists the VaultCertificates the shim made for route, in every namespace.
func (s *routeShim) made(ctx context.Context, route client.Object) ([]vaultcertv1.VaultCertificate, error) {
	var list vaultcertv1.VaultCertificateList
	opts := []client.ListOption{client.MatchingLabels{vaultcertv1.LabelRouteKind: s.kind}}
	if s.ownNamespaceOnly {
		opts = append(opts, client.InNamespace(route.GetNamespace()))
	}
	if err := s.List(ctx, &list, opts...); err != nil {
		return nil, err
	}
	var out []vaultcertv1.VaultCertificate
	for _, vc := range list.Items {
		if s.isOurs(&vc, route) {
			out = append(out, vc)
		}
	}
	return out, nil
}

// sync creates or updates the targets' VaultCertificates and deletes the route's others, except those in keep
// (targets whose request cannot be acted on now: their last good VaultCertificate stays).
func (s *routeShim) sync(ctx context.Context, route client.Object, targets []shimTarget, keep map[types.NamespacedName]bool) error {
	wanted := map[types.NamespacedName]bool{}
	var errs []error
	for _, t := range targets {
		wanted[t.name] = true
		if err := s.ensure(ctx, route, t); err != nil {
			errs = append(errs, err)
		}
	}
	made, err := s.made(ctx, route)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for i := range made {
		vc := &made[i]
		name := types.NamespacedName{Namespace: vc.Namespace, Name: vc.Name}
		if wanted[name] || keep[name] || !vc.DeletionTimestamp.IsZero() {
			continue
		}
		// Preconditions: not one made again, nor one whose owner just took it over (removed the shim's marks).
		if err := s.Delete(ctx, vc, client.Preconditions{UID: &vc.UID, ResourceVersion: &vc.ResourceVersion}); err != nil {
			if !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				errs = append(errs, err)
			}
			continue // a conflict brings the changed VaultCertificate back through the watch
		}
		s.recorder.Eventf(route, vc, corev1.EventTypeNormal, vaultcertv1.EventVaultCertificateDeleted, "DeleteVaultCertificate",
			"deleted VaultCertificate %s/%s: the %s no longer asks for Secret %s", vc.Namespace, vc.Name, s.kind, vc.Spec.SecretName)
	}
	return errors.Join(errs...)
}

// removeAll deletes every VaultCertificate the shim made for route (the route stopped asking, or is gone).
func (s *routeShim) removeAll(ctx context.Context, route client.Object) error {
	return s.sync(ctx, route, nil, nil)
}

// ensure creates t's VaultCertificate, or brings the shim's own one in step with t; another's is left alone and
// the route is told.
func (s *routeShim) ensure(ctx context.Context, route client.Object, t shimTarget) error {
	var existing vaultcertv1.VaultCertificate
	err := s.Get(ctx, t.name, &existing)
	switch {
	case apierrors.IsNotFound(err):
		vc := s.desired(route, t)
		if err := s.Create(ctx, vc, client.FieldOwner(vaultcertv1.FieldManager)); err != nil {
			if apierrors.IsAlreadyExists(err) {
				// Made meanwhile (the cache had not seen this shim's own create yet, or someone made it by hand):
				// the shim's own comes back through the watch; one made by hand is left alone.
				return nil
			}
			return err
		}
		s.recorder.Eventf(route, vc, corev1.EventTypeNormal, vaultcertv1.EventVaultCertificateCreated, "CreateVaultCertificate",
			"created VaultCertificate %s for Key Vault certificate %q into Secret %s", t.name, t.spec.CertificateName, t.spec.SecretName)
		return nil
	case err != nil:
		return err
	case !s.isOurs(&existing, route) && existing.Annotations[vaultcertv1.AnnotationRoute] != "" && sameRequest(existing.Spec, t.spec):
		return nil // another route asks for the same certificate in the same Secret: its VaultCertificate serves both
	case !s.isOurs(&existing, route):
		s.recorder.Eventf(route, &existing, corev1.EventTypeWarning, vaultcertv1.EventVaultCertificateConflict, "CreateVaultCertificate",
			"VaultCertificate %s already exists and was not made for this %s (by hand, or for %s); vaultcert leaves it as it is: "+
				"delete it to let this %s manage Secret %s, or use another secretName", t.name, s.kind, orNobody(existing.Annotations[vaultcertv1.AnnotationRoute]), s.kind, t.spec.SecretName)
		return nil
	}
	want := s.desired(route, t)
	if !equality.Semantic.DeepEqual(existing.Spec, want.Spec) || !equality.Semantic.DeepEqual(existing.OwnerReferences, want.OwnerReferences) {
		// The whole spec is the route's: an edit of the VaultCertificate itself is undone. The update carries the
		// resourceVersion read, so it never overwrites a change it did not see (a conflict is retried).
		updated := existing.DeepCopy()
		updated.Spec, updated.OwnerReferences = want.Spec, want.OwnerReferences
		if err := s.Update(ctx, updated, client.FieldOwner(vaultcertv1.FieldManager)); err != nil {
			return err
		}
		s.recorder.Eventf(route, &existing, corev1.EventTypeNormal, vaultcertv1.EventVaultCertificateUpdated, "UpdateVaultCertificate",
			"updated VaultCertificate %s to the %s's request", t.name, s.kind)
	}
	if c := meta.FindStatusCondition(existing.Status.Conditions, vaultcertv1.ConditionHostsCovered); c != nil && c.Status == metav1.ConditionFalse &&
		c.ObservedGeneration == existing.Generation {
		s.recorder.Eventf(route, &existing, corev1.EventTypeWarning, vaultcertv1.ReasonHostsNotCovered, "CheckHosts",
			"%s", eventNote(fmt.Sprintf("Secret %s/%s (VaultCertificate %s): %s", t.name.Namespace, t.spec.SecretName, t.name.Name, c.Message)))
	}
	return nil
}

// desired is t's VaultCertificate as the shim writes it.
func (s *routeShim) desired(route client.Object, t shimTarget) *vaultcertv1.VaultCertificate {
	vc := &vaultcertv1.VaultCertificate{
		TypeMeta: metav1.TypeMeta{APIVersion: vaultcertv1.GroupVersion.String(), Kind: "VaultCertificate"},
		ObjectMeta: metav1.ObjectMeta{Name: t.name.Name, Namespace: t.name.Namespace,
			Labels:      map[string]string{vaultcertv1.LabelRouteKind: s.kind},
			Annotations: map[string]string{vaultcertv1.AnnotationRoute: s.routeKey(route)},
		},
		Spec: t.spec,
	}
	if t.name.Namespace == route.GetNamespace() {
		// No blockOwnerDeletion: that would need update rights on the route's finalizers, and nothing waits for it.
		vc.OwnerReferences = []metav1.OwnerReference{{APIVersion: s.apiVersion, Kind: s.kind, Name: route.GetName(),
			UID: route.GetUID(), Controller: ptr.To(true)}}
	}
	return vc
}

// connectionFor is the connection a request of a route in routeNamespace uses for a Secret in namespace: the one
// it names, or the default ClusterVaultConnection. p, when set, says why the request cannot be acted on (for an
// event).
func (s *routeShim) connectionFor(ctx context.Context, req routes.Request, namespace, routeNamespace string) (ref vaultcertv1.ConnectionReference, p *problem, err error) {
	crossNamespace := namespace != routeNamespace
	if req.Connection != nil {
		ref = *req.Connection
	} else {
		var list vaultcertv1.ClusterVaultConnectionList
		if err := s.List(ctx, &list); err != nil {
			return ref, nil, err
		}
		var defaults []string
		for _, c := range list.Items {
			if c.Annotations[vaultcertv1.AnnotationDefaultConnection] == "true" {
				defaults = append(defaults, c.Name)
			}
		}
		sort.Strings(defaults)
		switch len(defaults) {
		case 0:
			return ref, problemf(vaultcertv1.ReasonConnectionNotReady, "no connection named: set %s (a VaultConnection in this namespace) or %s, or mark one ClusterVaultConnection with %s: \"true\"",
				vaultcertv1.AnnotationConnection, vaultcertv1.AnnotationClusterConnection, vaultcertv1.AnnotationDefaultConnection), nil
		case 1:
			ref = vaultcertv1.ConnectionReference{Kind: vaultcertv1.ClusterVaultConnectionKind, Name: defaults[0]}
		default:
			return ref, problemf(vaultcertv1.ReasonConnectionNotReady, "no connection named, and ClusterVaultConnections %s are all marked %s: mark one, or name the connection with %s",
				strings.Join(defaults, ", "), vaultcertv1.AnnotationDefaultConnection, vaultcertv1.AnnotationClusterConnection), nil
		}
	}
	if ref.Kind == vaultcertv1.VaultConnectionKind && crossNamespace {
		return ref, problemf(vaultcertv1.ReasonConnectionNotAllowed, "VaultConnection %q cannot serve a Secret in another namespace (a VaultConnection serves its own namespace only): use %s",
			ref.Name, vaultcertv1.AnnotationClusterConnection), nil
	}
	if crossNamespace {
		// The grant lets the route refer to the Secret; what fills it must be something the route's own namespace
		// may read too, or the route would serve a certificate its namespace may not have.
		var conn vaultcertv1.ClusterVaultConnection
		if err := s.Get(ctx, types.NamespacedName{Name: ref.Name}, &conn); err != nil {
			if apierrors.IsNotFound(err) {
				return ref, problemf(vaultcertv1.ReasonConnectionNotReady, "ClusterVaultConnection %q not found", ref.Name), nil
			}
			return ref, nil, err
		}
		if err := connection.Admits(ctx, s.Client, &conn, routeNamespace); err != nil {
			var denied *connection.Error
			if !errors.As(err, &denied) {
				return ref, nil, err
			}
			return ref, problemf(vaultcertv1.ReasonConnectionNotAllowed, "%s (the route's namespace must be admitted too, to fill a Secret in another namespace)", denied.Message), nil
		}
	}
	if req.VaultURL == "" {
		return ref, nil, nil
	}
	vaultURL, found, err := s.connectionVault(ctx, ref, namespace)
	switch {
	case err != nil:
		return ref, nil, err
	case !found:
		return ref, problemf(vaultcertv1.ReasonConnectionNotReady, "%s %q not found, so the vault of %s cannot be checked: create the connection", ref.Kind, ref.Name, vaultcertv1.AnnotationKeyVaultURI), nil
	case !routes.SameVault(req.VaultURL, vaultURL):
		return ref, problemf(vaultcertv1.EventInvalidAnnotations, "%s names vault %s, but %s %q uses %s: name a connection to that vault", vaultcertv1.AnnotationKeyVaultURI,
			req.VaultURL, ref.Kind, ref.Name, vaultURL), nil
	}
	return ref, nil, nil
}

// connectionVault reads a connection's vaultURL.
func (s *routeShim) connectionVault(ctx context.Context, ref vaultcertv1.ConnectionReference, namespace string) (string, bool, error) {
	var (
		obj      client.Object
		vaultURL func() string
	)
	if ref.Kind == vaultcertv1.ClusterVaultConnectionKind {
		c := &vaultcertv1.ClusterVaultConnection{}
		obj, vaultURL = c, func() string { return c.Spec.VaultURL }
		namespace = ""
	} else {
		c := &vaultcertv1.VaultConnection{}
		obj, vaultURL = c, func() string { return c.Spec.VaultURL }
	}
	if err := s.Get(ctx, types.NamespacedName{Namespace: namespace, Name: ref.Name}, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return "", false, nil
		}
		return "", false, err
	}
	return vaultURL(), true, nil
}

// problem is why (part of) a route cannot be acted on: an event reason and its note.
type problem struct{ reason, message string }

func problemf(reason, format string, args ...any) *problem {
	return &problem{reason: reason, message: fmt.Sprintf(format, args...)}
}

// warn tells the route's owner about p. For a problem with one Secret, secret names its VaultCertificate as the
// event's related object: the events API folds events of the same object, related object, reason and action into
// one series (keeping the first note), so each Secret's problem and each kind of problem needs its own.
func (s *routeShim) warn(route client.Object, secret types.NamespacedName, p *problem) {
	var related runtime.Object
	if secret.Name != "" {
		related = &vaultcertv1.VaultCertificate{
			TypeMeta:   metav1.TypeMeta{APIVersion: vaultcertv1.GroupVersion.String(), Kind: "VaultCertificate"},
			ObjectMeta: metav1.ObjectMeta{Namespace: secret.Namespace, Name: secret.Name}}
	}
	s.recorder.Eventf(route, related, corev1.EventTypeWarning, p.reason, "SyncVaultCertificates", "%s", eventNote(p.message))
}

// maxEventNote is the longest event note the events API accepts (1 KiB); longer ones are refused and lost.
const maxEventNote = 1024

// eventNote keeps a note within maxEventNote.
func eventNote(s string) string { return truncate(s, maxEventNote) }

// hostsCoveredChanged passes a VaultCertificate event to the shim when the shim may have to act or tell: a spec
// change, a deletion, or a change of its HostsCovered condition (not every status write).
func hostsCoveredChanged(oldObj, newObj client.Object) bool {
	o, ok1 := oldObj.(*vaultcertv1.VaultCertificate)
	n, ok2 := newObj.(*vaultcertv1.VaultCertificate)
	if !ok1 || !ok2 {
		return true
	}
	if o.Generation != n.Generation || !n.DeletionTimestamp.IsZero() {
		return true
	}
	oc := meta.FindStatusCondition(o.Status.Conditions, vaultcertv1.ConditionHostsCovered)
	nc := meta.FindStatusCondition(n.Status.Conditions, vaultcertv1.ConditionHostsCovered)
	if oc == nil || nc == nil {
		return oc != nc
	}
	return oc.Status != nc.Status || oc.Message != nc.Message
}

// sameRequest reports whether two shim specs fill a Secret alike (hosts aside: each route has its own).
func sameRequest(a, b vaultcertv1.VaultCertificateSpec) bool {
	a.Hosts, b.Hosts = nil, nil
	return equality.Semantic.DeepEqual(a, b)
}

func orNobody(route string) string {
	if route == "" {
		return "no route"
	}
	return route
}

// mergeHosts adds hosts to a target's spec.hosts, sorted and without duplicates.
func mergeHosts(spec *vaultcertv1.VaultCertificateSpec, hosts []string) {
	spec.Hosts = routes.SortedHosts(append(slices.Clone(spec.Hosts), hosts...))
	if len(spec.Hosts) == 0 {
		spec.Hosts = nil
	}
}

package connection

import (
	"context"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
)

// The credential watcher lists and watches the Secrets and ServiceAccounts connections name, one object at a
// time (a metadata.name field selector), metadata only.
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get;list;watch

// Queue names of the controllers the credential watcher feeds (CredentialWatcher.Source).
const (
	// QueueVaultConnection is the queue of the VaultConnection controller.
	QueueVaultConnection = string(vaultcertv1.VaultConnectionKind)
	// QueueClusterVaultConnection is the queue of the ClusterVaultConnection controller.
	QueueClusterVaultConnection = string(vaultcertv1.ClusterVaultConnectionKind)
	// QueueVaultCertificate is the queue of the VaultCertificate controller.
	QueueVaultCertificate = "VaultCertificate"
)

// CertificateIndex indexes VaultCertificates by the connection they use (Key.String():
// "VaultConnection/ns/name" or "ClusterVaultConnection/name"), so a connection change wakes exactly its
// certificates. The manager's cache must have it (IndexCertificates) before a CredentialWatcher enqueues
// certificates.
const CertificateIndex = "vaultcert.io/connection"

// IndexCertificates adds CertificateIndex to a cache (the manager's field indexer).
func IndexCertificates(ctx context.Context, indexer client.FieldIndexer) error {
	return indexer.IndexField(ctx, &vaultcertv1.VaultCertificate{}, CertificateIndex, func(o client.Object) []string {
		return []string{Of(o.(*vaultcertv1.VaultCertificate)).String()}
	})
}

// credentialRef is one object a connection reads credentials from.
type credentialRef struct {
	// resource is "secrets" or "serviceaccounts".
	resource  string
	namespace string
	name      string
}

// String names the object in logs: "<resource>/<namespace>/<name>".
func (r credentialRef) String() string { return r.resource + "/" + r.namespace + "/" + r.name }

// credentialRefs lists the Secrets and ServiceAccounts a connection spec reads, resolved as Resolver resolves
// them: a VaultConnection's references (ownNamespace set) always in its own namespace, a
// ClusterVaultConnection's (ownNamespace "") in the namespace they name. References without a namespace are
// skipped: the resolver rejects them before reading anything.
func credentialRefs(ownNamespace string, spec *vaultcertv1.ConnectionSpec) []credentialRef {
	auth := spec.Auth
	if auth == nil {
		return nil
	}
	in := func(namespace string) string {
		if ownNamespace != "" {
			return ownNamespace
		}
		return namespace
	}
	var refs []credentialRef
	add := func(resource, namespace, name string) {
		if namespace = in(namespace); namespace != "" && name != "" {
			refs = append(refs, credentialRef{resource: resource, namespace: namespace, name: name})
		}
	}
	if sp := auth.ServicePrincipal; sp != nil {
		if ref := sp.ClientSecretRef; ref != nil {
			add("secrets", ref.Namespace, ref.Name)
		}
		if ref := sp.ClientCertificateRef; ref != nil {
			add("secrets", ref.Namespace, ref.Name)
		}
	}
	if wi := auth.WorkloadIdentity; wi != nil && wi.ServiceAccountRef != nil {
		add("serviceaccounts", wi.ServiceAccountRef.Namespace, wi.ServiceAccountRef.Name)
	}
	return refs
}

// CredentialWatcher makes credential changes take effect at once: it watches exactly the Secrets and
// ServiceAccounts that connections name (never all of them), and when one is created, changed or deleted it
// enqueues the connections that name it and the VaultCertificates that use those connections. Each watched
// object has its own metadata-only informer (field selector metadata.name=<name> in its namespace), started
// when the first connection names it and stopped when the last one stops naming it; it never holds a
// credential's value. The connection reconcilers tell it what each connection names (TrackNamespaced,
// TrackCluster, Forget); a nil *CredentialWatcher watches nothing.
type CredentialWatcher struct {
	meta   metadata.Interface
	reader client.Reader // the manager's cache: VaultCertificates by CertificateIndex
	log    logr.Logger

	mu sync.Mutex
	// base is cancelled when the manager stops; every informer runs under it.
	base    context.Context
	stopAll context.CancelFunc
	watches map[credentialRef]*refWatch
	// lastRead is the object last read from the API server for a watched reference (credential_reader.go).
	lastRead map[credentialRef]client.Object
	// users maps a connection key ("VaultConnection/ns/name", "ClusterVaultConnection/name") to what it names.
	users  map[Key][]credentialRef
	queues map[string]workqueue.TypedRateLimitingInterface[reconcile.Request]
}

// newCredentialWatcher returns a watcher; Start stops its informers when the manager stops.
func newCredentialWatcher(meta metadata.Interface, reader client.Reader, log logr.Logger) *CredentialWatcher {
	base, cancel := context.WithCancel(context.Background())
	return &CredentialWatcher{
		meta: meta, reader: reader, log: log,
		base: base, stopAll: cancel,
		watches:  map[credentialRef]*refWatch{},
		lastRead: map[credentialRef]client.Object{},
		users:    map[Key][]credentialRef{},
		queues:   map[string]workqueue.TypedRateLimitingInterface[reconcile.Request]{},
	}
}

// watchers holds the credential watcher of each manager, shared by the connection and VaultCertificate
// controllers, which are set up separately.
var watchers = struct {
	sync.Mutex
	m map[ctrl.Manager]*CredentialWatcher
}{m: map[ctrl.Manager]*CredentialWatcher{}}

// CredentialWatcherFor returns mgr's credential watcher, creating it and adding it to mgr on first use. It
// lists VaultCertificates through mgr's client by CertificateIndex.
func CredentialWatcherFor(mgr ctrl.Manager) (*CredentialWatcher, error) {
	watchers.Lock()
	defer watchers.Unlock()
	if w, ok := watchers.m[mgr]; ok {
		return w, nil
	}
	meta, err := metadata.NewForConfig(mgr.GetConfig())
	if err != nil {
		return nil, err
	}
	w := newCredentialWatcher(meta, mgr.GetClient(), mgr.GetLogger().WithName("credential-watch"))
	if err := mgr.Add(w); err != nil {
		return nil, err
	}
	watchers.m[mgr] = w
	return w, nil
}

// Start implements manager.Runnable: it waits for the manager to stop, then stops every informer.
func (w *CredentialWatcher) Start(ctx context.Context) error {
	<-ctx.Done()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopAll()
	w.watches = map[credentialRef]*refWatch{}
	w.lastRead = map[credentialRef]client.Object{}
	return nil
}

// Source returns the controller-runtime source through which the watcher enqueues into one controller
// (QueueVaultConnection, QueueClusterVaultConnection or QueueVaultCertificate).
func (w *CredentialWatcher) Source(queue string) source.Source {
	return source.Func(func(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.queues[queue] = q
		return nil
	})
}

// TrackNamespaced records the credential objects a VaultConnection names (always in its own namespace). Call it
// before resolving the connection, so that no change after that read goes unnoticed.
func (w *CredentialWatcher) TrackNamespaced(conn *vaultcertv1.VaultConnection) {
	w.track(Namespaced(conn.Namespace, conn.Name), credentialRefs(conn.Namespace, &conn.Spec))
}

// TrackCluster records the credential objects a ClusterVaultConnection names. Call it before resolving the
// connection, so that no change after that read goes unnoticed.
func (w *CredentialWatcher) TrackCluster(conn *vaultcertv1.ClusterVaultConnection) {
	w.track(Cluster(conn.Name), credentialRefs("", &conn.Spec.ConnectionSpec))
}

// Forget records that a connection was deleted: it names nothing any more.
func (w *CredentialWatcher) Forget(key Key) {
	w.track(key, nil)
}

// track records what the connection connKey names (nil when it was deleted), starting informers for objects
// no connection named before and stopping those no connection names any more. A nil watcher does nothing.
func (w *CredentialWatcher) track(connKey Key, refs []credentialRef) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(refs) == 0 {
		delete(w.users, connKey)
	} else {
		w.users[connKey] = refs
	}
	if w.base.Err() != nil {
		return // the manager is stopping
	}
	named := map[credentialRef]bool{}
	for _, rs := range w.users {
		for _, r := range rs {
			named[r] = true
		}
	}
	for r := range named {
		if _, ok := w.watches[r]; !ok {
			w.watches[r] = w.startInformer(r)
		}
	}
	for r, rw := range w.watches {
		if !named[r] {
			rw.cancel()
			delete(w.watches, r)
			delete(w.lastRead, r)
			w.log.V(1).Info("stopped watching a credential object", "object", r.String())
		}
	}
}

// watching returns the watched objects, sorted (tests, debugging).
func (w *CredentialWatcher) watching() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.watches))
	for r := range w.watches {
		out = append(out, r.String())
	}
	sort.Strings(out)
	return out
}

// synced reports whether the informer of r has listed its object (tests).
func (w *CredentialWatcher) synced(r credentialRef) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	rw, ok := w.watches[r]
	return ok && rw.informer.HasSynced()
}

// refWatch is the informer of one watched object.
type refWatch struct {
	cancel   context.CancelFunc
	informer cache.SharedIndexInformer
}

// startInformer runs a metadata-only informer for one object; called with w.mu held.
func (w *CredentialWatcher) startInformer(r credentialRef) *refWatch {
	ctx, cancel := context.WithCancel(w.base)
	gvr := schema.GroupVersionResource{Version: "v1", Resource: r.resource}
	inf := metadatainformer.NewFilteredMetadataInformer(w.meta, gvr, r.namespace, 0, cache.Indexers{},
		func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", r.name).String()
		}).Informer()
	log := w.log.WithValues("object", r.String())
	// Listing can be refused (namespaced install mode, a namespace outside it): the connection then reports
	// the unreadable credential itself, so the retries of the informer are logged at debug level only.
	_ = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		log.V(1).Info("watching a credential object failed; retrying", "error", err.Error())
	})
	// The field selector limits the informer to the named object; events are checked by name as well, so that
	// an event about any other object can never count as a credential change.
	named := func(obj any) bool {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		m, ok := obj.(metav1.Object)
		return ok && m.GetName() == r.name && m.GetNamespace() == r.namespace
	}
	_, _ = inf.AddEventHandler(cache.FilteringResourceEventHandler{FilterFunc: named, Handler: cache.ResourceEventHandlerDetailedFuncs{
		// The initial list is what the connection has just read; only later events are changes.
		AddFunc: func(_ any, initial bool) {
			if !initial {
				w.changed(r, "created")
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(metav1.Object)
			n, ok2 := newObj.(metav1.Object)
			if !ok1 || !ok2 || o.GetResourceVersion() != n.GetResourceVersion() {
				w.changed(r, "changed")
			}
		},
		DeleteFunc: func(any) { w.changed(r, "deleted") },
	}})
	go inf.RunWithContext(ctx)
	log.V(1).Info("watching a credential object")
	return &refWatch{cancel: cancel, informer: inf}
}

// changed enqueues the connections that name r and the VaultCertificates that use them.
func (w *CredentialWatcher) changed(r credentialRef, what string) {
	w.mu.Lock()
	var conns []Key
	for key, rs := range w.users {
		for _, x := range rs {
			if x == r {
				conns = append(conns, key)
				break
			}
		}
	}
	queues := make(map[string]workqueue.TypedRateLimitingInterface[reconcile.Request], len(w.queues))
	for k, q := range w.queues {
		queues[k] = q
	}
	w.mu.Unlock()

	slices.SortFunc(conns, func(a, b Key) int { return strings.Compare(a.String(), b.String()) })
	w.log.V(1).Info("credential object "+what+"; re-checking the connections that use it", "object", r.String(), "connections", conns)
	for _, key := range conns {
		if q := queues[string(key.kind)]; q != nil {
			q.Add(key.Request())
		}
		q := queues[QueueVaultCertificate]
		if q == nil {
			continue
		}
		var list vaultcertv1.VaultCertificateList
		if err := w.reader.List(w.base, &list, client.MatchingFields{CertificateIndex: key.String()}); err != nil {
			w.log.Error(err, "listing the VaultCertificates of a connection failed", "connection", key)
			continue
		}
		for _, vc := range list.Items {
			q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: vc.Namespace, Name: vc.Name}})
		}
	}
}

package connection

import (
	"context"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
)

func TestCredentialRefs(t *testing.T) {
	secretRef := func(ns, name string) *vaultcertv1.SecretKeyReference {
		return &vaultcertv1.SecretKeyReference{Namespace: ns, Name: name, Key: "k"}
	}
	for _, tc := range []struct {
		name  string
		own   string
		auth  *vaultcertv1.ConnectionAuth
		wants []credentialRef
	}{
		{name: "controller identity", auth: nil},
		{name: "managed identity", auth: &vaultcertv1.ConnectionAuth{ManagedIdentity: &vaultcertv1.ManagedIdentityAuth{ClientID: "c"}}},
		{name: "client secret of a VaultConnection: always its own namespace", own: "team",
			auth:  &vaultcertv1.ConnectionAuth{ServicePrincipal: &vaultcertv1.ServicePrincipalAuth{ClientSecretRef: secretRef("kube-system", "s")}},
			wants: []credentialRef{{"secrets", "team", "s"}}},
		{name: "client certificate of a ClusterVaultConnection",
			auth:  &vaultcertv1.ConnectionAuth{ServicePrincipal: &vaultcertv1.ServicePrincipalAuth{ClientCertificateRef: secretRef("creds", "c")}},
			wants: []credentialRef{{"secrets", "creds", "c"}}},
		{name: "cluster reference without namespace: rejected by the resolver, not watched",
			auth: &vaultcertv1.ConnectionAuth{ServicePrincipal: &vaultcertv1.ServicePrincipalAuth{ClientSecretRef: secretRef("", "s")}}},
		{name: "ServiceAccount", own: "team",
			auth: &vaultcertv1.ConnectionAuth{WorkloadIdentity: &vaultcertv1.WorkloadIdentityAuth{
				ServiceAccountRef: &vaultcertv1.ServiceAccountReference{Name: "app"}}},
			wants: []credentialRef{{"serviceaccounts", "team", "app"}}},
		{name: "the controller's own workload identity",
			auth: &vaultcertv1.ConnectionAuth{WorkloadIdentity: &vaultcertv1.WorkloadIdentityAuth{ClientID: "c"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := credentialRefs(tc.own, &vaultcertv1.ConnectionSpec{Auth: tc.auth})
			if !reflect.DeepEqual(got, tc.wants) {
				t.Fatalf("got %v, want %v", got, tc.wants)
			}
		})
	}
}

// requestLog records the URL of every request a client sends: a wrapper around the real transport to the
// envtest API server (rest.Config.Wrap), not a fake.
type requestLog struct {
	mu   sync.Mutex
	urls []url.URL
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (l *requestLog) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		l.mu.Lock()
		l.urls = append(l.urls, *r.URL)
		l.mu.Unlock()
		return rt.RoundTrip(r)
	})
}

// to returns the recorded requests whose path ends in /resource (lists and watches of it).
func (l *requestLog) to(resource string) []url.URL {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []url.URL
	for _, u := range l.urls {
		if strings.HasSuffix(u.Path, "/"+resource) {
			out = append(out, u)
		}
	}
	return out
}

// addLog records every request the watcher adds to a queue, duplicates included (the queues themselves
// de-duplicate), so a test sees each enqueue.
type addLog struct {
	mu   sync.Mutex
	adds map[string][]string
	n    int
}

// take returns what was added since the last take, sorted per queue, and forgets it.
func (l *addLog) take() map[string][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.adds
	for _, v := range out {
		slices.Sort(v)
	}
	l.adds, l.n = nil, 0
	return out
}

// total returns how many requests were added since the last take.
func (l *addLog) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// recordingQueue is a real workqueue that also records each Add in an addLog.
type recordingQueue struct {
	workqueue.TypedRateLimitingInterface[reconcile.Request]
	name string
	log  *addLog
}

func (q recordingQueue) Add(r reconcile.Request) {
	q.log.mu.Lock()
	if q.log.adds == nil {
		q.log.adds = map[string][]string{}
	}
	q.log.adds[q.name] = append(q.log.adds[q.name], r.String())
	q.log.n++
	q.log.mu.Unlock()
	q.TypedRateLimitingInterface.Add(r)
}

// informerKeys returns the keys of the objects the informer of r holds.
func informerKeys(w *CredentialWatcher, r credentialRef) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	rw, ok := w.watches[r]
	if !ok {
		return nil
	}
	keys := rw.informer.GetStore().ListKeys()
	sort.Strings(keys)
	return keys
}

// informerVersion returns the resourceVersion of r in its informer, "" when the informer does not hold it.
func informerVersion(w *CredentialWatcher, r credentialRef) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	rw, ok := w.watches[r]
	if !ok {
		return ""
	}
	item, exists, err := rw.informer.GetStore().GetByKey(r.namespace + "/" + r.name)
	if err != nil || !exists {
		return ""
	}
	return item.(metav1.Object).GetResourceVersion()
}

// The watcher starts one informer per named object, shares it between connections, stops it when no
// connection names the object, and on a change enqueues the connections and their certificates. Everything
// runs against the envtest API server: a real metadata client and a real cache indexing VaultCertificates by
// connection, as the manager's does.
func TestCredentialWatcher(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := envtestClient(t)
	ns := createNamespace(t, c, "watch")
	opsNS := createNamespace(t, c, "watch-ops")
	secret := func(name, value string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string][]byte{"clientSecret": []byte(value)}}
	}
	creds, other := secret("creds", "one"), secret("other", "one")
	mustCreate(t, c, creds)
	mustCreate(t, c, other)
	mustCreate(t, c, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: opsNS, Name: "app"}})
	cert := func(name, conn string) *vaultcertv1.VaultCertificate {
		return &vaultcertv1.VaultCertificate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: vaultcertv1.VaultCertificateSpec{ConnectionRef: vaultcertv1.ConnectionReference{Name: conn},
				CertificateName: name, SecretName: name + "-tls"}}
	}
	for _, vc := range []*vaultcertv1.VaultCertificate{cert("web", "a"), cert("api", "a"), cert("other", "c")} {
		mustCreate(t, c, vc)
	}
	connA, connB, shared := Namespaced(ns, "a"), Namespaced(ns, "b"), Cluster("shared")

	// The watcher's reader: a real cache with the connection index, as the manager's.
	certs, err := cache.New(envtestConfig(t), cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := IndexCertificates(ctx, certs); err != nil {
		t.Fatal(err)
	}
	go func() { _ = certs.Start(ctx) }()
	if !certs.WaitForCacheSync(ctx) {
		t.Fatal("the VaultCertificate cache did not sync")
	}
	waitFor(t, "the cache to hold the certificates of connection a", func() bool {
		var list vaultcertv1.VaultCertificateList
		return certs.List(ctx, &list, client.MatchingFields{CertificateIndex: connA.String()}) == nil && len(list.Items) == 2
	})

	requests := &requestLog{}
	metaConfig := envtestConfig(t)
	metaConfig.Wrap(requests.wrap)
	meta, err := metadata.NewForConfig(metaConfig)
	if err != nil {
		t.Fatal(err)
	}
	w := newCredentialWatcher(meta, certs, logr.Discard())
	watcherCtx, stop := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- w.Start(watcherCtx) }()
	adds := &addLog{}
	for _, name := range []string{QueueVaultConnection, QueueClusterVaultConnection, QueueVaultCertificate} {
		q := recordingQueue{TypedRateLimitingInterface: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]()),
			name: name, log: adds}
		t.Cleanup(q.ShutDown)
		if err := w.Source(name).Start(watcherCtx, q); err != nil {
			t.Fatal(err)
		}
	}

	ref := credentialRef{"secrets", ns, "creds"}
	saRef := credentialRef{"serviceaccounts", opsNS, "app"}
	w.track(connA, []credentialRef{ref})
	w.track(connB, []credentialRef{ref})
	w.track(shared, []credentialRef{ref, saRef})
	if got, want := w.watching(), []string{ref.String(), saRef.String()}; !reflect.DeepEqual(got, want) {
		t.Fatalf("watching %v, want %v", got, want)
	}
	waitFor(t, "the informers' initial lists", func() bool { return w.synced(ref) && w.synced(saRef) })

	// Only the named object is listed and watched, never the namespace's other Secrets: the informer holds
	// creds alone, and every request for Secrets asked the API server for metadata.name=creds in ns.
	if got, want := informerKeys(w, ref), []string{ns + "/creds"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("the informer of %s holds %v, want %v", ref, got, want)
	}
	waitFor(t, "a watch of the Secret", func() bool {
		for _, u := range requests.to("secrets") {
			if u.Query().Get("watch") == "true" {
				return true
			}
		}
		return false
	})
	for resource, want := range map[string]credentialRef{"secrets": ref, "serviceaccounts": saRef} {
		urls := requests.to(resource)
		if len(urls) == 0 {
			t.Errorf("no list or watch of %s recorded", resource)
		}
		for _, u := range urls {
			if u.Path != "/api/v1/namespaces/"+want.namespace+"/"+resource || u.Query().Get("fieldSelector") != "metadata.name="+want.name {
				t.Errorf("request %s, want %s of namespace %s with field selector metadata.name=%s", u.String(), resource, want.namespace, want.name)
			}
		}
	}
	// The initial list is not a change.
	if n := adds.total(); n != 0 {
		t.Fatalf("%d requests enqueued after the initial list: %v", n, adds.take())
	}

	// A change of another Secret in the namespace enqueues nothing; a change of creds wakes the three
	// connections and the certificates of each. (Were the other Secret watched, its event would come first on
	// the watch, and its requests would show up here or in the next step.)
	other.Data["clientSecret"] = []byte("two")
	if err := c.Update(ctx, other); err != nil {
		t.Fatal(err)
	}
	creds.Data["clientSecret"] = []byte("two")
	if err := c.Update(ctx, creds); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		QueueVaultConnection:        {ns + "/a", ns + "/b"},
		QueueClusterVaultConnection: {"/shared"},
		QueueVaultCertificate:       {ns + "/api", ns + "/web"},
	}
	waitFor(t, "the change to be enqueued", func() bool { return adds.total() >= 5 })
	if got := adds.take(); !reflect.DeepEqual(got, want) {
		t.Errorf("after the change enqueued %v, want %v", got, want)
	}

	// The informer lives while any connection names the object; a deletion wakes the connection left.
	w.track(connA, nil)
	w.track(shared, []credentialRef{saRef})
	if got, want := w.watching(), []string{ref.String(), saRef.String()}; !reflect.DeepEqual(got, want) {
		t.Fatalf("watching %v, want %v", got, want)
	}
	if err := c.Delete(ctx, creds); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deletion to be enqueued", func() bool { return adds.total() >= 1 })
	if got, want := adds.take(), map[string][]string{QueueVaultConnection: {ns + "/b"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("after the deletion enqueued %v, want %v", got, want)
	}
	// So does its re-creation.
	mustCreate(t, c, secret("creds", "three"))
	waitFor(t, "the creation to be enqueued", func() bool { return adds.total() >= 1 })
	if got, want := adds.take(), map[string][]string{QueueVaultConnection: {ns + "/b"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("after the re-creation enqueued %v, want %v", got, want)
	}

	w.track(connB, nil)
	w.track(shared, nil)
	if got := w.watching(); len(got) != 0 {
		t.Fatalf("still watching %v", got)
	}

	stop()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	// After the manager stopped nothing new is watched.
	w.track(connA, []credentialRef{ref})
	if got := w.watching(); len(got) != 0 {
		t.Fatalf("watching %v after stop", got)
	}
}

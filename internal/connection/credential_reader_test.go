package connection

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// getCounter wraps a real client.Reader of the envtest API server and counts the Gets of each object.
type getCounter struct {
	client.Reader
	mu   sync.Mutex
	gets map[string]int
}

func (c *getCounter) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c.mu.Lock()
	if c.gets == nil {
		c.gets = map[string]int{}
	}
	c.gets[fmt.Sprintf("%T %s", obj, key)]++
	c.mu.Unlock()
	return c.Reader.Get(ctx, key, obj, opts...)
}

// count returns how many Gets of the object of obj's type at key reached the API server.
func (c *getCounter) count(obj client.Object, key client.ObjectKey) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gets[fmt.Sprintf("%T %s", obj, key)]
}

// The credential reader reads a watched Secret or ServiceAccount from the API server once, then again only
// after the watcher's informer saw it change; a deleted object is NotFound from the API server; objects the
// watcher does not watch are always read through.
func TestCredentialReader(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c := envtestClient(t)
	ns := createNamespace(t, c, "reader")
	mustCreate(t, c, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "creds"}, Data: map[string][]byte{"clientSecret": []byte("first")}})
	mustCreate(t, c, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "plain"}, Data: map[string][]byte{"k": []byte("v")}})
	mustCreate(t, c, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}})
	mustCreate(t, c, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings"}})

	meta, err := metadata.NewForConfig(envtestConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	w := newCredentialWatcher(meta, nil, logr.Discard()) // no queues: changes enqueue nothing, the reader is unused
	stopped := make(chan error, 1)
	go func() { stopped <- w.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Error(err)
		}
	})
	api := &getCounter{Reader: c}
	r := credentialReader{watcher: w, api: api}

	secretKey := types.NamespacedName{Namespace: ns, Name: "creds"}
	secretRef := credentialRef{"secrets", ns, "creds"}
	saKey := types.NamespacedName{Namespace: ns, Name: "app"}
	saRef := credentialRef{"serviceaccounts", ns, "app"}
	conn := Namespaced(ns, "vault")
	w.track(conn, []credentialRef{secretRef, saRef})
	waitFor(t, "the informers' initial lists", func() bool { return w.synced(secretRef) && w.synced(saRef) })

	getSecret := func(wantReads int) (*corev1.Secret, error) {
		t.Helper()
		var s corev1.Secret
		err := r.Get(ctx, secretKey, &s)
		if n := api.count(&s, secretKey); n != wantReads {
			t.Fatalf("%d reads of Secret %s from the API server, want %d", n, secretKey, wantReads)
		}
		return &s, err
	}
	wantValue := func(s *corev1.Secret, err error, value string) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if got := string(s.Data["clientSecret"]); got != value {
			t.Fatalf("clientSecret %q, want %q", got, value)
		}
	}

	// The first Get reads from the API server, later ones do not.
	s, err := getSecret(1)
	wantValue(s, err, "first")
	s.Data["clientSecret"] = []byte("changed by the caller") // a caller's copy is its own
	s, err = getSecret(1)
	wantValue(s, err, "first")
	s, err = getSecret(1)
	wantValue(s, err, "first")
	for range 3 {
		var sa corev1.ServiceAccount
		if err := r.Get(ctx, saKey, &sa); err != nil || sa.Name != "app" || sa.UID == "" {
			t.Fatalf("%+v %v", sa.ObjectMeta, err)
		}
	}
	if n := api.count(&corev1.ServiceAccount{}, saKey); n != 1 {
		t.Fatalf("%d reads of ServiceAccount %s from the API server, want 1", n, saKey)
	}

	// A change through the API server: once the informer saw the new resourceVersion, the next Get reads the
	// new data, and later ones do not read again.
	var current corev1.Secret
	if err := c.Get(ctx, secretKey, &current); err != nil {
		t.Fatal(err)
	}
	current.Data["clientSecret"] = []byte("second")
	if err := c.Update(ctx, &current); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the informer to see the change", func() bool { return informerVersion(w, secretRef) == current.ResourceVersion })
	s, err = getSecret(2)
	wantValue(s, err, "second")
	if s.ResourceVersion != current.ResourceVersion {
		t.Fatalf("resourceVersion %s, want %s", s.ResourceVersion, current.ResourceVersion)
	}
	s, err = getSecret(2)
	wantValue(s, err, "second")

	// Deleted: Get returns NotFound from the API server, every time.
	if err := c.Delete(ctx, &current); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the informer to see the deletion", func() bool { return informerVersion(w, secretRef) == "" })
	if _, err := getSecret(3); !apierrors.IsNotFound(err) {
		t.Fatalf("want NotFound, got %v", err)
	}
	if _, err := getSecret(4); !apierrors.IsNotFound(err) {
		t.Fatalf("want NotFound, got %v", err)
	}

	// Objects the watcher does not watch are always read through: another Secret, another kind, and a
	// ServiceAccount no connection names any more.
	for range 2 {
		var plain corev1.Secret
		if err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: "plain"}, &plain); err != nil || string(plain.Data["k"]) != "v" {
			t.Fatal(plain.Data, err)
		}
		var cm corev1.ConfigMap
		if err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: "settings"}, &cm); err != nil {
			t.Fatal(err)
		}
	}
	if n := api.count(&corev1.Secret{}, types.NamespacedName{Namespace: ns, Name: "plain"}); n != 2 {
		t.Fatalf("%d reads of an unwatched Secret, want 2", n)
	}
	if n := api.count(&corev1.ConfigMap{}, types.NamespacedName{Namespace: ns, Name: "settings"}); n != 2 {
		t.Fatalf("%d reads of a ConfigMap, want 2", n)
	}
	w.track(conn, nil)
	for range 2 {
		var sa corev1.ServiceAccount
		if err := r.Get(ctx, saKey, &sa); err != nil {
			t.Fatal(err)
		}
	}
	if n := api.count(&corev1.ServiceAccount{}, saKey); n != 3 {
		t.Fatalf("%d reads of a ServiceAccount no longer watched, want 3", n)
	}
	// Without a watcher, everything is read through.
	direct := credentialReader{api: api}
	var sa corev1.ServiceAccount
	if err := direct.Get(ctx, saKey, &sa); err != nil {
		t.Fatal(err)
	}
	if n := api.count(&sa, saKey); n != 4 {
		t.Fatalf("%d reads without a watcher, want 4", n)
	}
}

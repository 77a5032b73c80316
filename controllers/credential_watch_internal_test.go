package controllers

import (
	"context"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	metadatafake "k8s.io/client-go/metadata/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
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

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// drain returns the requests in q, waiting until it holds want of them.
func drain(t *testing.T, q workqueue.TypedRateLimitingInterface[reconcile.Request], want int) []string {
	t.Helper()
	waitFor(t, "queued requests", func() bool { return q.Len() >= want })
	var out []string
	for q.Len() > 0 {
		r, _ := q.Get()
		q.Done(r)
		out = append(out, r.String())
	}
	slices.Sort(out)
	return out
}

// The watcher starts one informer per named object, shares it between connections, stops it when no
// connection names the object, and on a change enqueues the connections and their certificates.
func TestCredentialWatcher(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := vaultcertv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	meta := metadatafake.NewSimpleMetadataClient(metadatafake.NewTestScheme())
	secrets := schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	obj := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "creds", ResourceVersion: "1"}}
	if err := meta.Tracker().Create(secrets, obj, "team"); err != nil {
		t.Fatal(err)
	}
	cert := func(ns, name, conn string) *vaultcertv1.VaultCertificate {
		return &vaultcertv1.VaultCertificate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: vaultcertv1.VaultCertificateSpec{ConnectionRef: vaultcertv1.ConnectionReference{Name: conn}}}
	}
	reader := fake.NewClientBuilder().WithScheme(scheme).
		WithIndex(&vaultcertv1.VaultCertificate{}, connectionIndex, func(o client.Object) []string {
			return []string{connectionKeyOf(o.(*vaultcertv1.VaultCertificate))}
		}).
		WithObjects(cert("team", "web", "a"), cert("team", "api", "a"), cert("team", "other", "c")).Build()

	w := newCredentialWatcher(meta, reader, logr.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- w.Start(ctx) }()
	queues := map[string]workqueue.TypedRateLimitingInterface[reconcile.Request]{}
	for _, name := range []string{queueVaultConnection, queueClusterVaultConnection, queueVaultCertificate} {
		q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
		t.Cleanup(q.ShutDown)
		queues[name] = q
		if err := w.source(name).Start(ctx, q); err != nil {
			t.Fatal(err)
		}
	}

	ref := credentialRef{"secrets", "team", "creds"}
	w.track("VaultConnection/team/a", []credentialRef{ref})
	w.track("VaultConnection/team/b", []credentialRef{ref})
	w.track("ClusterVaultConnection/shared", []credentialRef{ref, {"serviceaccounts", "ops", "app"}})
	if got := w.watching(); !reflect.DeepEqual(got, []string{"secrets/team/creds", "serviceaccounts/ops/app"}) {
		t.Fatalf("watching %v", got)
	}
	waitFor(t, "the informer's initial list", func() bool { return w.synced(ref) })
	// Only the named object is listed and watched, never the namespace's other Secrets.
	seen := 0
	for _, a := range meta.Actions() {
		if a.GetResource() != secrets {
			continue
		}
		var fs string
		switch a := a.(type) {
		case clienttesting.ListAction:
			fs = a.GetListRestrictions().Fields.String()
		case clienttesting.WatchAction:
			fs = a.GetWatchRestrictions().Fields.String()
		default:
			continue
		}
		seen++
		if fs != "metadata.name=creds" || a.GetNamespace() != "team" {
			t.Errorf("%s of secrets in %q with field selector %q, want metadata.name=creds in team", a.GetVerb(), a.GetNamespace(), fs)
		}
	}
	if seen == 0 {
		t.Error("no list or watch of secrets recorded")
	}
	// The initial list is not a change.
	for name, q := range queues {
		if q.Len() != 0 {
			t.Fatalf("%s queue has %d requests after the initial list", name, q.Len())
		}
	}

	// A change wakes the three connections and the certificates of each.
	obj.ResourceVersion = "2"
	if err := meta.Tracker().Update(secrets, obj, "team"); err != nil {
		t.Fatal(err)
	}
	if got, want := drain(t, queues[queueVaultConnection], 2), []string{"team/a", "team/b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("VaultConnections %v, want %v", got, want)
	}
	if got, want := drain(t, queues[queueClusterVaultConnection], 1), []string{"/shared"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ClusterVaultConnections %v, want %v", got, want)
	}
	if got, want := drain(t, queues[queueVaultCertificate], 2), []string{"team/api", "team/web"}; !reflect.DeepEqual(got, want) {
		t.Errorf("VaultCertificates %v, want %v", got, want)
	}

	// The informer lives while any connection names the object.
	w.track("VaultConnection/team/a", nil)
	w.track("ClusterVaultConnection/shared", []credentialRef{{"serviceaccounts", "ops", "app"}})
	if got := w.watching(); !reflect.DeepEqual(got, []string{"secrets/team/creds", "serviceaccounts/ops/app"}) {
		t.Fatalf("watching %v", got)
	}
	if err := meta.Tracker().Delete(secrets, "team", "creds"); err != nil {
		t.Fatal(err)
	}
	if got, want := drain(t, queues[queueVaultConnection], 1), []string{"team/b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after delete: VaultConnections %v, want %v", got, want)
	}
	w.track("VaultConnection/team/b", nil)
	w.track("ClusterVaultConnection/shared", nil)
	if got := w.watching(); len(got) != 0 {
		t.Fatalf("still watching %v", got)
	}

	cancel()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	// After the manager stopped nothing new is watched.
	w.track("VaultConnection/team/a", []credentialRef{ref})
	if got := w.watching(); len(got) != 0 {
		t.Fatalf("watching %v after stop", got)
	}
}

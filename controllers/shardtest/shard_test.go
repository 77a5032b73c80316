// Package shardtest runs several shards of the controller against one API server and one fake Key Vault: its own
// envtest, since the controllers suite runs an unsharded controller that would reconcile everything.
package shardtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/controllers"
	"github.com/vaultcert/vaultcert/internal/fakevault"
	"github.com/vaultcert/vaultcert/internal/hostpolicy"
	"github.com/vaultcert/vaultcert/internal/keyvault"
	"github.com/vaultcert/vaultcert/internal/shard"
)

const (
	testClientID     = "11111111-2222-3333-4444-555555555555"
	testClientSecret = "shard-test-secret"
	shardCount       = 3
	perShard         = 3
)

var (
	scheme = runtime.NewScheme()
	cfg    *rest.Config
	k8s    client.Client
	vault  *fakevault.Server
)

func TestMain(m *testing.M) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: run `make test`")
		os.Exit(1)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	must(clientgoscheme.AddToScheme(scheme))
	must(vaultcertv1.AddToScheme(scheme))
	env := &envtest.Environment{CRDDirectoryPaths: []string{filepath.Join("..", "..", "config", "crd", "bases")}, ErrorIfCRDPathMissing: true}
	var err error
	cfg, err = env.Start()
	must(err)
	defer func() { _ = env.Stop() }()
	vault, err = fakevault.Start(fakevault.Options{})
	must(err)
	defer vault.Close()
	vault.AddClientSecret(testClientID, testClientSecret)
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	must(err)
	return m.Run()
}

// skipNameValidation lets several managers in one process register controllers of the same name.
var skipNameValidation = true

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// startShard runs shard index of shardCount: its own manager, reconcilers and Key Vault client factory, as one
// Deployment of the chart would. The returned function stops it and waits until it has stopped.
func startShard(t *testing.T, index int) (stop func()) {
	t.Helper()
	s := shard.Shard{Index: index, Count: shardCount}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Cache: controllers.CacheOptions(nil), Client: controllers.ClientOptions(),
		Metrics: metricsserver.Options{BindAddress: "0"}, Controller: config.Controller{SkipNameValidation: &skipNameValidation}})
	if err != nil {
		t.Fatal(err)
	}
	hosts := hostpolicy.Default()
	hosts.VaultDomains = append(hosts.VaultDomains, "127.0.0.1:*")
	hosts.AuthorityHosts = append(hosts.AuthorityHosts, "127.0.0.1:*")
	factory := keyvault.NewFactory(keyvault.FactoryOptions{})
	if err := (&controllers.VaultCertificateReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(),
		Recorder: mgr.GetEventRecorder("vaultcert"), Factory: factory, HostPolicy: hosts, TerminalRetry: 2 * time.Second, Shard: s,
	}).SetupWithManager(mgr, controller.Options{MaxConcurrentReconciles: 2}); err != nil {
		t.Fatal(err)
	}
	if err := (&controllers.ConnectionReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Factory: factory,
		RecheckInterval: time.Minute, HostPolicy: hosts, Shard: s}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("shard %d: %v", index, err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// namespacesPerShard creates perShard namespaces for each shard (names chosen by their hash), each with a
// VaultConnection and a VaultCertificate of its own certificate, and returns them by shard.
func namespacesPerShard(t *testing.T) [][]string {
	t.Helper()
	byShard := make([][]string, shardCount)
	for i := 0; ; i++ {
		full := true
		for _, nss := range byShard {
			full = full && len(nss) == perShard
		}
		if full {
			return byShard
		}
		ns := fmt.Sprintf("shard-test-%d", i)
		sh := shard.Of(ns, shardCount)
		if len(byShard[sh]) == perShard {
			continue
		}
		byShard[sh] = append(byShard[sh], ns)
		createWorkload(t, ns)
	}
}

func createWorkload(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	cert := "cert-" + ns
	if _, err := vault.Seed(fakevault.CertSpec{Name: cert, KeyType: "EC"}); err != nil {
		t.Fatal(err)
	}
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kv-credentials", Namespace: ns}, StringData: map[string]string{"clientSecret": testClientSecret}},
		&vaultcertv1.VaultConnection{ObjectMeta: metav1.ObjectMeta{Name: "vault", Namespace: ns}, Spec: vaultcertv1.ConnectionSpec{
			VaultURL: vault.URL(),
			Auth: &vaultcertv1.ConnectionAuth{ServicePrincipal: &vaultcertv1.ServicePrincipalAuth{TenantID: vault.TenantID(), ClientID: testClientID,
				ClientSecretRef: &vaultcertv1.SecretKeyReference{Name: "kv-credentials", Key: "clientSecret"}}},
			Cloud: &vaultcertv1.CloudConfig{AuthorityHost: vault.AuthorityHost(), CABundle: string(vault.CAPEM())},
		}},
		&vaultcertv1.VaultCertificate{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}, Spec: vaultcertv1.VaultCertificateSpec{
			ConnectionRef: vaultcertv1.ConnectionReference{Name: "vault"}, CertificateName: cert, SecretName: "web-tls"}},
	} {
		if err := k8s.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
}

// handled reports whether ns/web is Ready and acted on the refresh annotation value stamp ("" for any sync).
func handled(t *testing.T, ns, stamp string) bool {
	t.Helper()
	var vc vaultcertv1.VaultCertificate
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "web"}, &vc); err != nil {
		t.Fatal(err)
	}
	ready := meta.IsStatusConditionTrue(vc.Status.Conditions, vaultcertv1.ConditionReady)
	return ready && vc.Status.LastRefreshRequest == stamp
}

func waitHandled(t *testing.T, namespaces []string, stamp string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for _, ns := range namespaces {
		for !handled(t, ns, stamp) {
			if time.Now().After(deadline) {
				t.Fatalf("%s was not handled (refresh %q) in time", ns, stamp)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func refreshAll(t *testing.T, byShard [][]string, stamp string) {
	t.Helper()
	for _, nss := range byShard {
		for _, ns := range nss {
			patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, vaultcertv1.AnnotationRefresh, stamp)
			obj := &vaultcertv1.VaultCertificate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}}
			if err := k8s.Patch(context.Background(), obj, client.RawPatch("application/merge-patch+json", []byte(patch))); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestShardsSplitTheCertificates: three shards sync every VaultCertificate between them. With shard 1 stopped,
// the other two act on a refresh for their own namespaces and never for shard 1's (no certificate is reconciled
// by two shards); started again, shard 1 catches up (none is left to no shard).
func TestShardsSplitTheCertificates(t *testing.T) {
	stops := make([]func(), shardCount)
	for i := range shardCount {
		stops[i] = startShard(t, i)
	}
	byShard := namespacesPerShard(t)
	for _, nss := range byShard {
		waitHandled(t, nss, "")
	}

	stops[1]()
	refreshAll(t, byShard, "while-shard-1-is-down")
	waitHandled(t, append(append([]string{}, byShard[0]...), byShard[2]...), "while-shard-1-is-down")
	// The others are done with their own; give any wrong-shard reconcile the time those took, then look.
	time.Sleep(2 * time.Second)
	for _, ns := range byShard[1] {
		if handled(t, ns, "while-shard-1-is-down") {
			t.Errorf("%s (shard 1) was reconciled while shard 1 was stopped: another shard took it", ns)
		}
	}

	startShard(t, 1)
	waitHandled(t, byShard[1], "while-shard-1-is-down")
}

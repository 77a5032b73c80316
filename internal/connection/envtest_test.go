package connection

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
)

// The tests that need Kubernetes use a real kube-apiserver and etcd (envtest), never a fake client. The control
// plane starts with the first test that asks for it (envtestConfig) and stops after the last test; without
// KUBEBUILDER_ASSETS those tests skip, so `go test ./internal/...` runs without one.

var (
	envOnce sync.Once
	env     *envtest.Environment
	envCfg  *rest.Config
	envErr  error
	// nsSeq numbers the namespaces the tests create.
	nsSeq atomic.Int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	if env != nil {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}
	os.Exit(code)
}

// envtestConfig returns a copy of the envtest API server's config (so a test may wrap its transport), starting
// the control plane on first use; the test skips when KUBEBUILDER_ASSETS is unset.
func envtestConfig(t *testing.T) *rest.Config {
	t.Helper()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("needs a kube-apiserver and etcd: KUBEBUILDER_ASSETS is not set; run `make test` (it provides them through hack/envtest-assets.sh)")
	}
	envOnce.Do(func() {
		// Clients and caches default to client-go's scheme; vaultcert's kinds join the built-in ones there.
		if envErr = vaultcertv1.AddToScheme(scheme.Scheme); envErr != nil {
			return
		}
		e := &envtest.Environment{
			CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
			ErrorIfCRDPathMissing: true,
		}
		envCfg, envErr = e.Start()
		if envErr == nil {
			env = e
		}
	})
	if envErr != nil {
		t.Fatalf("starting envtest: %v", envErr)
	}
	return rest.CopyConfig(envCfg)
}

// envtestClient returns a direct (uncached) client of the envtest API server, for the built-in kinds and
// vaultcert's.
func envtestClient(t *testing.T) client.Client {
	t.Helper()
	c, err := client.New(envtestConfig(t), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// createNamespace creates a namespace no other test uses and returns its name.
func createNamespace(t *testing.T, c client.Client, prefix string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano()%100000, nsSeq.Add(1))
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	return name
}

// mustCreate creates obj through the API server.
func mustCreate(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s/%s: %v", obj, obj.GetNamespace(), obj.GetName(), err)
	}
}

// waitFor polls cond for up to 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

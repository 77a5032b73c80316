package controllers

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
)

// Helpers of the internal tests that need Kubernetes: they use the suite's envtest API server (SuiteRESTConfig,
// set by TestMain in suite_test.go), never a fake client.

// internalNSSeq numbers the namespaces the internal tests create.
var internalNSSeq atomic.Int64

// envtestConfig returns a copy of the suite's API server config, so a test may wrap its transport.
func envtestConfig(t *testing.T) *rest.Config {
	t.Helper()
	if SuiteRESTConfig == nil {
		t.Fatal("SuiteRESTConfig is not set: TestMain (suite_test.go) starts envtest and sets it")
	}
	return rest.CopyConfig(SuiteRESTConfig)
}

// envtestScheme holds the built-in kinds and vaultcert's.
func envtestScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := vaultcertv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

// envtestClient returns a direct (uncached) client of the suite's API server.
func envtestClient(t *testing.T) client.Client {
	t.Helper()
	c, err := client.New(envtestConfig(t), client.Options{Scheme: envtestScheme(t)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// createNamespace creates a namespace no other test uses and returns its name.
func createNamespace(t *testing.T, c client.Client, prefix string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano()%100000, internalNSSeq.Add(1))
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

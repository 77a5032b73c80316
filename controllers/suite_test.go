package controllers_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/controllers"
	"github.com/vaultcert/vaultcert/internal/fakevault"
	"github.com/vaultcert/vaultcert/internal/keyvault"
)

// The integration suite: a real kube-apiserver and etcd (envtest), the fake Key Vault spoken to through the
// real Azure SDK, and the real reconcilers in a manager configured as main.go configures it.
var (
	k8s    client.Client // direct client, no cache: what a user's kubectl sees
	vault  *fakevault.Server
	scheme = runtime.NewScheme()
	nsSeq  atomic.Int64
)

const (
	testClientID     = "11111111-2222-3333-4444-555555555555"
	testClientSecret = "test-client-secret-value"
	// waitTimeout bounds every wait for the controller; polls return as soon as the condition holds.
	waitTimeout = 30 * time.Second
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: run `make test` (it provides kube-apiserver and etcd through hack/envtest-assets.sh)")
		return 1
	}
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true), zap.Level(zapcore.Level(zapLevel()))))
	must(clientgoscheme.AddToScheme(scheme))
	must(vaultcertv1.AddToScheme(scheme))

	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	must(err)
	defer func() { _ = env.Stop() }()

	vault, err = fakevault.Start(fakevault.Options{})
	must(err)
	defer vault.Close()
	vault.AddClientSecret(testClientID, testClientSecret)

	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	must(err)

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:  scheme,
		Cache:   controllers.CacheOptions(nil),
		Metrics: metricsserver.Options{BindAddress: "0"},
	})
	must(err)
	factory := keyvault.NewFactory(keyvault.FactoryOptions{})
	must((&controllers.VaultCertificateReconciler{
		Client:        mgr.GetClient(),
		APIReader:     mgr.GetAPIReader(),
		Recorder:      mgr.GetEventRecorder("vaultcert"),
		Factory:       factory,
		TerminalRetry: 2 * time.Second,
	}).SetupWithManager(mgr, controller.Options{
		MaxConcurrentReconciles: 4,
		RateLimiter:             workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](100*time.Millisecond, 2*time.Second),
	}))
	must((&controllers.ConnectionReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Factory: factory, RecheckInterval: time.Minute,
	}).SetupWithManager(mgr))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	code := m.Run()
	cancel()
	must(<-done)
	return code
}

func zapLevel() int8 {
	if os.Getenv("VAULTCERT_TEST_VERBOSE") != "" {
		return -2
	}
	return 2 // errors only: keep `make test` output readable
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// newNamespace creates a fresh namespace for one test, so tests never see each other's objects.
func newNamespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	name := fmt.Sprintf("t%d-%d", time.Now().UnixNano()%100000, nsSeq.Add(1))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return name
}

// uniqueName makes a Key Vault certificate name no other test uses.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, nsSeq.Add(1))
}

// cloudConfig points a connection at the fake vault: its authority, its CA, and the challenge resource check
// off (the fake's host is 127.0.0.1, not *.vault.azure.net).
func cloudConfig() *vaultcertv1.CloudConfig {
	return &vaultcertv1.CloudConfig{
		AuthorityHost:                        vault.AuthorityHost(),
		DisableInstanceDiscovery:             true,
		DisableChallengeResourceVerification: true,
		CABundle:                             string(vault.CAPEM()),
	}
}

// newConnection creates a VaultConnection with a service principal secret in namespace ns.
func newConnection(t *testing.T, ns string) string {
	t.Helper()
	ctx := context.Background()
	cred := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kv-credentials", Namespace: ns},
		StringData: map[string]string{"clientSecret": testClientSecret}}
	if err := k8s.Create(ctx, cred); err != nil {
		t.Fatal(err)
	}
	conn := &vaultcertv1.VaultConnection{
		ObjectMeta: metav1.ObjectMeta{Name: "vault", Namespace: ns},
		Spec: vaultcertv1.ConnectionSpec{
			VaultURL: vault.URL(),
			Auth: &vaultcertv1.ConnectionAuth{ServicePrincipal: &vaultcertv1.ServicePrincipalAuth{
				TenantID: vault.TenantID(), ClientID: testClientID,
				ClientSecretRef: &vaultcertv1.SecretKeyReference{Name: "kv-credentials", Key: "clientSecret"},
			}},
			Cloud: cloudConfig(),
		},
	}
	if err := k8s.Create(ctx, conn); err != nil {
		t.Fatal(err)
	}
	return conn.Name
}

// newCertificate creates a VaultCertificate reading certName through the namespace's VaultConnection.
func newCertificate(t *testing.T, ns, certName string, mutate ...func(*vaultcertv1.VaultCertificate)) *vaultcertv1.VaultCertificate {
	t.Helper()
	vc := &vaultcertv1.VaultCertificate{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: vaultcertv1.VaultCertificateSpec{
			ConnectionRef:   vaultcertv1.ConnectionReference{Name: "vault"},
			CertificateName: certName,
			SecretName:      "web-tls",
		},
	}
	for _, m := range mutate {
		m(vc)
	}
	if err := k8s.Create(context.Background(), vc); err != nil {
		t.Fatal(err)
	}
	return vc
}

// eventually polls cond until it returns true or the timeout passes; the last explanation is reported.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	var why string
	for {
		var ok bool
		if ok, why = cond(); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// getCert reads a VaultCertificate.
func getCert(t *testing.T, ns, name string) *vaultcertv1.VaultCertificate {
	t.Helper()
	var vc vaultcertv1.VaultCertificate
	if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &vc); err != nil {
		t.Fatal(err)
	}
	return &vc
}

// waitReady waits until Ready has the given status and reason for the current generation, and returns the object.
func waitReady(t *testing.T, ns, name string, status metav1.ConditionStatus, reason string) *vaultcertv1.VaultCertificate {
	t.Helper()
	var vc *vaultcertv1.VaultCertificate
	eventually(t, fmt.Sprintf("%s/%s Ready=%s %s", ns, name, status, reason), func() (bool, string) {
		vc = getCert(t, ns, name)
		c := meta.FindStatusCondition(vc.Status.Conditions, vaultcertv1.ConditionReady)
		if c == nil {
			return false, "no Ready condition"
		}
		return c.Status == status && c.Reason == reason && c.ObservedGeneration == vc.Generation,
			fmt.Sprintf("Ready=%s %s: %s", c.Status, c.Reason, c.Message)
	})
	return vc
}

// waitSecretVersion waits until the Secret holds the given Key Vault version.
func waitSecretVersion(t *testing.T, ns, name, version string) *corev1.Secret {
	t.Helper()
	var s *corev1.Secret
	eventually(t, fmt.Sprintf("Secret %s/%s at version %s", ns, name, version), func() (bool, string) {
		s = getSecret(t, ns, name)
		if s == nil {
			return false, "no Secret"
		}
		return s.Annotations[vaultcertv1.AnnotationVersion] == version, "version " + s.Annotations[vaultcertv1.AnnotationVersion]
	})
	return s
}

// getSecret reads a Secret, or nil when it does not exist.
func getSecret(t *testing.T, ns, name string) *corev1.Secret {
	t.Helper()
	var s corev1.Secret
	err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &s)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return &s
}

// refresh asks for an immediate refresh, as a user would with kubectl annotate.
func refresh(t *testing.T, ns, name string) {
	t.Helper()
	vc := getCert(t, ns, name)
	patch := client.MergeFrom(vc.DeepCopy())
	if vc.Annotations == nil {
		vc.Annotations = map[string]string{}
	}
	vc.Annotations[vaultcertv1.AnnotationRefresh] = fmt.Sprint(time.Now().UnixNano())
	if err := k8s.Patch(context.Background(), vc, patch); err != nil {
		t.Fatal(err)
	}
}

package controllers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	uberzap "go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/controllers"
	"github.com/vaultcert/vaultcert/internal/changefeed"
	"github.com/vaultcert/vaultcert/internal/fakevault"
	"github.com/vaultcert/vaultcert/internal/hostpolicy"
	"github.com/vaultcert/vaultcert/internal/keyvault"
	"github.com/vaultcert/vaultcert/internal/logsafety"
)

// The integration suite: a real kube-apiserver and etcd (envtest), the fake Key Vault spoken to through the
// real Azure SDK, and the real reconcilers in a manager configured as main.go configures it.
var (
	k8s    client.Client // direct client, no cache: what a user's kubectl sees
	vault  *fakevault.Server
	scheme = runtime.NewScheme()
	nsSeq  atomic.Int64
	// changes is the suite controller's vault listing; the Event Grid test notifies it as the webhook does.
	changes *changefeed.Registry
	// vaultClockOffset shifts the fake vault's clock (validity, pending durations, AutoRenew), so a test
	// can issue a certificate "in the past" and let AutoRenew come due; see setVaultClock.
	vaultClockOffset atomic.Int64
)

// vaultNow is the fake vault's clock: real time plus vaultClockOffset.
func vaultNow() time.Time { return time.Now().Add(time.Duration(vaultClockOffset.Load())) }

const (
	testClientID     = "11111111-2222-3333-4444-555555555555"
	testClientSecret = "test-client-secret-value"
	// waitTimeout bounds every wait for the controller; polls return as soon as the condition holds.
	waitTimeout = 30 * time.Second
)

// Shared with the identity and hygiene tests.
var (
	// clusterIssuer is the envtest API server's ServiceAccount token issuer; the fake authority knows its
	// signing keys (read from the API server's OIDC discovery), as Entra ID does for a real cluster.
	clusterIssuer string
	// logs receives every log line of the manager at the highest verbosity, whatever the stderr level, so
	// tests (hygiene) can inspect what the controller logs.
	logs = &logBuffer{}
)

// logBuffer is a concurrency-safe log sink.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything logged so far.
func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: run `make test` (it provides kube-apiserver and etcd through hack/envtest-assets.sh)")
		return 1
	}
	// stderr at error level (readable `make test`), and a buffer at the highest verbosity for the tests.
	capture := zapcore.NewCore(zapcore.NewJSONEncoder(uberzap.NewDevelopmentEncoderConfig()), zapcore.AddSync(logs), zapcore.Level(-127))
	// logsafety.SafeLogger as in main.go: the hygiene test checks what reaches the sinks through it.
	logf.SetLogger(logsafety.SafeLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true), zap.Level(zapcore.Level(zapLevel())),
		zap.RawZapOpts(uberzap.WrapCore(func(c zapcore.Core) zapcore.Core { return zapcore.NewTee(c, capture) })))))
	must(clientgoscheme.AddToScheme(scheme))
	must(vaultcertv1.AddToScheme(scheme))
	must(gatewayv1.Install(scheme))
	gatewayCRDs, err := gatewayAPICRDs()
	must(err)

	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		CRDInstallOptions:     envtest.CRDInstallOptions{Paths: gatewayCRDs},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	must(err)
	defer func() { _ = env.Stop() }()

	vault, err = fakevault.Start(fakevault.Options{Now: vaultNow})
	must(err)
	defer vault.Close()
	vault.AddClientSecret(testClientID, testClientSecret)
	clusterIssuer, err = trustClusterIssuer(cfg, vault)
	must(err)

	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	must(err)

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:  scheme,
		Cache:   controllers.CacheOptions(nil),
		Client:  controllers.ClientOptions(),
		Metrics: metricsserver.Options{BindAddress: "0"},
	})
	must(err)
	factory := keyvault.NewFactory(keyvault.FactoryOptions{})
	// Refreshes are answered from vault listings, as in production.
	changes = changefeed.NewRegistry(changefeed.Options{})
	must(mgr.Add(changes))
	must((&controllers.VaultCertificateReconciler{
		Client:        mgr.GetClient(),
		APIReader:     mgr.GetAPIReader(),
		Recorder:      mgr.GetEventRecorder("vaultcert"),
		Factory:       factory,
		HostPolicy:    loopbackHostPolicy(),
		TerminalRetry: 2 * time.Second,
		// Pending Key Vault operations are polled this often (production: Key Vault's Retry-After, 10 s).
		IssuancePollInterval: 200 * time.Millisecond,
		Changes:              changes,
	}).SetupWithManager(mgr, controller.Options{
		MaxConcurrentReconciles: 4,
		RateLimiter:             workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](100*time.Millisecond, 2*time.Second),
	}))
	must((&controllers.ConnectionReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Factory: factory, RecheckInterval: time.Minute,
		HostPolicy: loopbackHostPolicy(), Changes: changes,
	}).SetupWithManager(mgr))

	must((&controllers.IngressShimReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("vaultcert")}).SetupWithManager(mgr))
	must((&controllers.GatewayShimReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("vaultcert")}).SetupWithManager(mgr))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	code := m.Run()
	cancel()
	must(<-done)
	return code
}

// gatewayAPICRDs are the Gateway and ReferenceGrant CRDs of the Gateway API module go.mod pins (standard
// channel), read from the module cache as `go list` finds it.
func gatewayAPICRDs() ([]string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		return nil, fmt.Errorf("locating the sigs.k8s.io/gateway-api module: %w", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard")
	return []string{filepath.Join(dir, "gateway.networking.k8s.io_gateways.yaml"), filepath.Join(dir, "gateway.networking.k8s.io_referencegrants.yaml")}, nil
}

// trustClusterIssuer reads the API server's ServiceAccount issuer and signing keys from its OIDC discovery
// endpoints (/.well-known/openid-configuration, /openid/v1/jwks) and registers them with the fake authority,
// which then verifies ServiceAccount tokens exchanged for Entra ID tokens as Entra ID does.
func trustClusterIssuer(cfg *rest.Config, v *fakevault.Server) (string, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return "", err
	}
	host := strings.TrimSuffix(cfg.Host, "/")
	if !strings.Contains(host, "://") {
		host = "https://" + host
	}
	get := func(path string) ([]byte, error) {
		resp, err := hc.Get(host + path)
		if err != nil {
			return nil, err
		}
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != 200 {
			return nil, fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		return body, nil
	}
	doc, err := get("/.well-known/openid-configuration")
	if err != nil {
		return "", err
	}
	var discovery struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(doc, &discovery); err != nil || discovery.Issuer == "" {
		return "", fmt.Errorf("OIDC discovery without issuer: %s", doc)
	}
	jwks, err := get("/openid/v1/jwks")
	if err != nil {
		return "", err
	}
	return discovery.Issuer, v.AddFederatedIssuer(discovery.Issuer, jwks)
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

// cloudConfig points a connection at the suite's fake vault.
func cloudConfig() *vaultcertv1.CloudConfig { return cloudConfigFor(vault) }

// cloudConfigFor points a connection at a fake vault: its authority and its CA. Challenge resource verification
// and instance discovery stay on, as a VaultConnection must keep them: the fake names a challenge resource its
// host passes, and the controller skips discovery itself for an allowed authority that is not Azure's.
func cloudConfigFor(srv *fakevault.Server) *vaultcertv1.CloudConfig {
	return &vaultcertv1.CloudConfig{AuthorityHost: srv.AuthorityHost(), CABundle: string(srv.CAPEM())}
}

// clusterCloudConfig is cloudConfigFor for a ClusterVaultConnection, whose admin turns instance discovery off
// for an authority that is not Entra ID's own (the controller does it itself only for VaultConnections).
func clusterCloudConfig(srv *fakevault.Server) *vaultcertv1.CloudConfig {
	c := cloudConfigFor(srv)
	c.DisableInstanceDiscovery = true
	return c
}

// loopbackHostPolicy allows every fake vault a test starts on 127.0.0.1 (each listens on its own port), and
// nothing else on the machine: tenancy tests point connections at other ports and hosts to see them refused.
func loopbackHostPolicy() hostpolicy.Policy {
	p := hostpolicy.Default()
	p.VaultDomains = append(p.VaultDomains, "127.0.0.1:*")
	p.AuthorityHosts = append(p.AuthorityHosts, "127.0.0.1:*")
	return p
}

// newConnection creates a VaultConnection "vault" with a service principal secret in namespace ns.
func newConnection(t *testing.T, ns string) string {
	t.Helper()
	connectionTo(t, k8s, ns, vault)
	return "vault"
}

// connectionTo creates, in namespace ns, a VaultConnection named "vault" to the fake vault srv with a service
// principal secret, through the client c (the suite's API server or the chaos test's own).
func connectionTo(t *testing.T, c client.Client, ns string, srv *fakevault.Server) {
	t.Helper()
	ctx := context.Background()
	cred := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kv-credentials", Namespace: ns},
		StringData: map[string]string{"clientSecret": testClientSecret}}
	if err := c.Create(ctx, cred); err != nil {
		t.Fatal(err)
	}
	conn := &vaultcertv1.VaultConnection{
		ObjectMeta: metav1.ObjectMeta{Name: "vault", Namespace: ns},
		Spec: vaultcertv1.ConnectionSpec{
			VaultURL: srv.URL(),
			Auth: &vaultcertv1.ConnectionAuth{ServicePrincipal: &vaultcertv1.ServicePrincipalAuth{
				TenantID: srv.TenantID(), ClientID: testClientID,
				ClientSecretRef: &vaultcertv1.SecretKeyReference{Name: "kv-credentials", Key: "clientSecret"},
			}},
			Cloud: cloudConfigFor(srv),
		},
	}
	if err := c.Create(ctx, conn); err != nil {
		t.Fatal(err)
	}
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

// kvReads is how many times Key Vault was asked for cert's metadata or key material (a first sync reads the key
// material, a refresh the metadata).
func kvReads(cert string) int {
	return vault.CountFor(fakevault.OpGetCertificate, cert) + vault.CountFor(fakevault.OpGetSecret, cert)
}

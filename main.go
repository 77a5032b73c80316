// Command vaultcert is the vaultcert controller: it keeps Azure Key Vault certificates in Kubernetes TLS Secrets.
package main

import (
	"flag"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/controllers"
	"github.com/vaultcert/vaultcert/internal/keyvault"
)

func main() {
	var (
		metricsAddr, probeAddr, namespaces string
		leaderElect                        bool
		leaderElectionNamespace            string
		concurrency                        int
		kubeQPS                            float64
		kubeBurst                          int
		minRetry, maxRetry, terminalRetry  time.Duration
		connectionRecheck                  time.Duration
		vaultRPS                           float64
		vaultBurst                         int
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint; \"0\" disables it.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz probes.")
	flag.BoolVar(&leaderElect, "leader-elect", inCluster(), "Elect a leader so only one replica reconciles (default on inside a cluster).")
	flag.StringVar(&leaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader election Lease (default: the pod's namespace).")
	flag.StringVar(&namespaces, "namespaces", "", "Comma-separated namespaces to watch; empty watches all namespaces.")
	flag.IntVar(&concurrency, "concurrent-reconciles", 4, "VaultCertificates reconciled in parallel.")
	flag.Float64Var(&kubeQPS, "kube-api-qps", 50, "Queries per second to the Kubernetes API server.")
	flag.IntVar(&kubeBurst, "kube-api-burst", 100, "Burst of queries to the Kubernetes API server.")
	flag.DurationVar(&minRetry, "min-retry-delay", time.Second, "First retry delay after a transient failure (doubles per failure).")
	flag.DurationVar(&maxRetry, "max-retry-delay", 5*time.Minute, "Longest retry delay after transient failures.")
	flag.DurationVar(&terminalRetry, "terminal-retry-delay", 5*time.Minute, "Retry delay after a failure that needs a fix (not found, access denied, invalid certificate).")
	flag.DurationVar(&connectionRecheck, "connection-recheck-interval", 10*time.Minute, "How often a connection's Ready is re-checked against the vault.")
	flag.Float64Var(&vaultRPS, "vault-requests-per-second", 0, "Default client-side budget per vault (0: built-in default below Key Vault's limit); a connection's rateLimit overrides it.")
	flag.IntVar(&vaultBurst, "vault-burst", 0, "Default burst per vault (0: built-in default).")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	// SafeLogger drops client-go's request/response body dumps (V(8)), which would hold Secret data.
	ctrl.SetLogger(controllers.SafeLogger(zap.New(zap.UseFlagOptions(&opts))))
	log := ctrl.Log.WithName("setup")

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(vaultcertv1.AddToScheme(scheme))

	restConfig := ctrl.GetConfigOrDie()
	restConfig.QPS, restConfig.Burst = float32(kubeQPS), kubeBurst
	restConfig.UserAgent = "vaultcert"

	var watched []string
	for _, ns := range strings.Split(namespaces, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			watched = append(watched, ns)
		}
	}
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                        scheme,
		Cache:                         controllers.CacheOptions(watched),
		Metrics:                       metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:        probeAddr,
		LeaderElection:                leaderElect,
		LeaderElectionID:              "vaultcert.vaultcert.io",
		LeaderElectionNamespace:       leaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       ptr(30 * time.Second),
	})
	if err != nil {
		log.Error(err, "cannot create the manager")
		os.Exit(1)
	}

	factory := keyvault.NewFactory(keyvault.FactoryOptions{
		Governor:  keyvault.NewGovernor(keyvault.GovernorOptions{RequestsPerSecond: vaultRPS, Burst: vaultBurst}),
		UserAgent: "vaultcert",
	})
	certs := &controllers.VaultCertificateReconciler{
		Client:        mgr.GetClient(),
		APIReader:     mgr.GetAPIReader(),
		Recorder:      mgr.GetEventRecorder("vaultcert"),
		Factory:       factory,
		TerminalRetry: terminalRetry,
	}
	if err := certs.SetupWithManager(mgr, controller.Options{
		MaxConcurrentReconciles: concurrency,
		RateLimiter:             workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](minRetry, maxRetry),
	}); err != nil {
		log.Error(err, "cannot set up the VaultCertificate controller")
		os.Exit(1)
	}
	conns := &controllers.ConnectionReconciler{
		Client:          mgr.GetClient(),
		APIReader:       mgr.GetAPIReader(),
		Factory:         factory,
		RecheckInterval: connectionRecheck,
	}
	if err := conns.SetupWithManager(mgr); err != nil {
		log.Error(err, "cannot set up the connection controllers")
		os.Exit(1)
	}
	utilruntime.Must(mgr.AddHealthzCheck("healthz", healthz.Ping))
	utilruntime.Must(mgr.AddReadyzCheck("readyz", healthz.Ping))

	log.Info("starting vaultcert")
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "manager stopped with an error")
		os.Exit(1)
	}
}

// inCluster reports whether the process runs in a pod, where leader election defaults on.
func inCluster() bool {
	return os.Getenv("KUBERNETES_SERVICE_HOST") != ""
}

func ptr[T any](v T) *T { return &v }

// Command vaultcert is the vaultcert controller: it keeps Azure Key Vault certificates in Kubernetes TLS Secrets.
package main

import (
	"context"
	"flag"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/controllers"
	"github.com/vaultcert/vaultcert/internal/changefeed"
	"github.com/vaultcert/vaultcert/internal/eventgrid"
	"github.com/vaultcert/vaultcert/internal/hostpolicy"
	"github.com/vaultcert/vaultcert/internal/keyvault"
	"github.com/vaultcert/vaultcert/internal/logsafety"
	"github.com/vaultcert/vaultcert/internal/shard"
)

func main() {
	var (
		metricsAddr, probeAddr, namespaces string
		pprofAddr                          string
		leaderElect                        bool
		leaderElectionNamespace            string
		concurrency                        int
		kubeQPS                            float64
		kubeBurst                          int
		minRetry, maxRetry, terminalRetry  time.Duration
		connectionRecheck                  time.Duration
		vaultRPS                           float64
		vaultBurst                         int
		vaultDomains, authorityHosts       string
		clusterID                          string
		issuanceDailyLimit                 int
		vaultListing                       bool
		shards                             shard.Shard
		events                             eventgrid.Config
		listingMaxCertificates             int
		listingMaxTotal                    int
		ingressShim, gatewayShim           bool
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint; \"0\" disables it.")
	flag.StringVar(&pprofAddr, "pprof-bind-address", "0", "Address of Go's /debug/pprof profiles (heap, CPU) for diagnosing memory and CPU; \"0\" (default) disables it. Never expose it outside the pod.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz probes.")
	flag.BoolVar(&leaderElect, "leader-elect", inCluster(), "Elect a leader so only one replica reconciles (default on inside a cluster).")
	flag.StringVar(&leaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader election Lease (default: the pod's namespace).")
	flag.StringVar(&namespaces, "namespaces", "", "Comma-separated namespaces to watch; empty watches all namespaces.")
	flag.IntVar(&concurrency, "concurrent-reconciles", 16, "VaultCertificates reconciled in parallel (most of a reconcile waits on the API server or Key Vault).")
	flag.Float64Var(&kubeQPS, "kube-api-qps", 300, "Queries per second to the Kubernetes API server (a first sync costs about three: a Secret read, a Secret create, a status patch).")
	flag.IntVar(&kubeBurst, "kube-api-burst", 600, "Burst of queries to the Kubernetes API server.")
	flag.DurationVar(&minRetry, "min-retry-delay", time.Second, "First retry delay after a transient failure (doubles per failure).")
	flag.DurationVar(&maxRetry, "max-retry-delay", 5*time.Minute, "Longest retry delay after transient failures.")
	flag.DurationVar(&terminalRetry, "terminal-retry-delay", 5*time.Minute, "Retry delay after a failure that needs a fix (not found, access denied, invalid certificate).")
	flag.DurationVar(&connectionRecheck, "connection-recheck-interval", 10*time.Minute, "How often a connection's Ready is re-checked against the vault.")
	flag.Float64Var(&vaultRPS, "vault-requests-per-second", 0, "Default client-side budget per vault host, shared by every connection to it (0: built-in default below Key Vault's limit); a ClusterVaultConnection's rateLimit overrides it for its vault, a VaultConnection's only limits itself.")
	flag.IntVar(&vaultBurst, "vault-burst", 0, "Default burst per vault (0: built-in default).")
	flag.StringVar(&vaultDomains, strings.TrimPrefix(hostpolicy.FlagVaultDomains, "--"), strings.Join(hostpolicy.DefaultVaultDomains, ","),
		"Comma-separated vault domains a namespaced VaultConnection may use: a vault host must equal one or end with \".\" plus one; \"host:port\" for another port than 443, \"host:*\" for any. ClusterVaultConnections are not restricted.")
	flag.StringVar(&authorityHosts, strings.TrimPrefix(hostpolicy.FlagAuthorityHosts, "--"), strings.Join(hostpolicy.DefaultAuthorityHosts, ","),
		"Comma-separated Entra ID authority hosts a namespaced VaultConnection may use (cloud.authorityHost). ClusterVaultConnections are not restricted.")
	flag.StringVar(&clusterID, "cluster-id", "", "Names this cluster in the owner tags of Key Vault certificates vaultcert creates (spec.issuance), so clusters sharing a vault never manage each other's; must not change. Default: the UID of the kube-system namespace.")
	flag.IntVar(&issuanceDailyLimit, "issuance-daily-limit", 5, "New versions vaultcert requests per certificate in 24 hours at most (spec.issuance); past it, it stops until the spec or the vaultcert.io/renew annotation changes.")
	flag.IntVar(&shards.Index, "shard-index", 0, "This instance's shard, from 0 to --shard-count-1: it reconciles the namespaces whose name hashes (FNV-1a) to it.")
	flag.IntVar(&shards.Count, "shard-count", 1, "Shards the cluster's VaultCertificates are split into by a hash of their namespace; each shard elects its own leader.")
	events.AddFlags(flag.CommandLine)
	flag.BoolVar(&vaultListing, "vault-listing", true, "Detect changed certificates from one listing of each vault per refresh interval (25 certificates a call) instead of reading each certificate; identities that may not list fall back to per-certificate reads.")
	flag.IntVar(&listingMaxCertificates, "vault-listing-max-certificates", changefeed.DefaultMaxCertificates, "Most certificates one vault listing may hold; a larger vault is read per certificate.")
	flag.IntVar(&listingMaxTotal, "vault-listing-max-total", changefeed.DefaultMaxTotal, "Most vault listing entries kept over all connections (bounds memory).")
	flag.BoolVar(&ingressShim, "ingress-shim", true, "Create a VaultCertificate for each TLS Secret of an Ingress annotated with vaultcert.io/certificate-name or vaultcert.io/keyvault-uri (docs/ingress.md).")
	flag.BoolVar(&gatewayShim, "gateway-shim", true, "The same for Gateway API listeners whose tls.options carry those keys; off on its own when the Gateway API CRDs are not installed.")
	// Errors are logged once, without a stack trace (a reconcile failure is not a bug); --zap-stacktrace-level
	// brings traces back.
	opts := zap.Options{StacktraceLevel: zapcore.PanicLevel}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	memoryLimit := setMemoryLimit()
	// logsafety.SafeLogger drops client-go's request/response body dumps (V(8)), which would hold Secret data.
	ctrl.SetLogger(logsafety.SafeLogger(zap.New(zap.UseFlagOptions(&opts))))
	log := ctrl.Log.WithName("setup")
	if memoryLimit > 0 {
		log.Info("Go memory limit set from the container's", "bytes", memoryLimit)
	}
	if err := shards.Validate(); err != nil {
		log.Error(err, "invalid shard")
		os.Exit(1)
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(vaultcertv1.AddToScheme(scheme))
	utilruntime.Must(gatewayv1.Install(scheme))

	restConfig := ctrl.GetConfigOrDie()
	restConfig.QPS, restConfig.Burst = float32(kubeQPS), kubeBurst
	restConfig.UserAgent = "vaultcert"

	watched := splitList(namespaces)
	hosts := hostpolicy.Policy{VaultDomains: splitList(vaultDomains), AuthorityHosts: splitList(authorityHosts)}
	if err := hosts.Validate(); err != nil {
		log.Error(err, "invalid host allow-list", "flags", []string{hostpolicy.FlagVaultDomains, hostpolicy.FlagAuthorityHosts})
		os.Exit(1)
	}
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                        scheme,
		Cache:                         controllers.CacheOptions(watched),
		Client:                        controllers.ClientOptions(),
		Metrics:                       metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:        probeAddr,
		PprofBindAddress:              pprofAddr,
		LeaderElection:                leaderElect,
		LeaderElectionID:              shards.LeaderElectionID("vaultcert.vaultcert.io"),
		LeaderElectionNamespace:       leaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       ptr(30 * time.Second),
	})
	if err != nil {
		log.Error(err, "cannot create the manager")
		os.Exit(1)
	}

	if clusterID == "" {
		clusterID = defaultClusterID(mgr.GetAPIReader())
	}
	factory := keyvault.NewFactory(keyvault.FactoryOptions{
		Governor:  keyvault.NewGovernor(keyvault.GovernorOptions{RequestsPerSecond: vaultRPS, Burst: vaultBurst}),
		UserAgent: "vaultcert",
	})
	var changes *changefeed.Registry
	if vaultListing {
		changes = changefeed.NewRegistry(changefeed.Options{MaxCertificates: listingMaxCertificates, MaxTotal: listingMaxTotal})
		utilruntime.Must(mgr.Add(changes))
	}
	switch {
	case events.Addr != "" && changes == nil:
		log.Error(nil, "--eventgrid-bind-address needs --vault-listing: certificate events wake VaultCertificates through it")
		os.Exit(1)
	case events.Addr != "" && shards.Count > 1:
		log.Error(nil, "--eventgrid-bind-address with --shard-count > 1 is not supported yet: a shard would acknowledge events for another shard's certificates")
		os.Exit(1)
	}
	webhook, err := events.Server(func(n eventgrid.Notification) {
		changes.Notify(n.VaultHost, n.Vault, n.Certificate, n.Version)
	}, ctrl.Log.WithName("eventgrid"))
	if err != nil {
		log.Error(err, "cannot set up the Event Grid webhook")
		os.Exit(1)
	}
	if webhook != nil {
		utilruntime.Must(mgr.Add(webhook))
	}
	certs := &controllers.VaultCertificateReconciler{
		Client:        mgr.GetClient(),
		APIReader:     mgr.GetAPIReader(),
		Recorder:      mgr.GetEventRecorder("vaultcert"),
		Factory:       factory,
		HostPolicy:    hosts,
		TerminalRetry: terminalRetry,
		ClusterID:     clusterID,
		// Issuance stops after this many requested versions per certificate per day.
		IssuanceDailyLimit: issuanceDailyLimit,
		Changes:            changes,
		Shard:              shards,
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
		HostPolicy:      hosts,
		RecheckInterval: connectionRecheck,
		Changes:         changes,
		Shard:           shards,
	}
	if err := conns.SetupWithManager(mgr); err != nil {
		log.Error(err, "cannot set up the connection controllers")
		os.Exit(1)
	}
	if ingressShim {
		shim := &controllers.IngressShimReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("vaultcert"), Shard: shards}
		if err := shim.SetupWithManager(mgr); err != nil {
			log.Error(err, "cannot set up the Ingress shim")
			os.Exit(1)
		}
	}
	if gatewayShim {
		shim := &controllers.GatewayShimReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("vaultcert"), Shard: shards}
		if err := shim.SetupWithManager(mgr); err != nil {
			log.Error(err, "cannot set up the Gateway shim")
			os.Exit(1)
		}
	}
	utilruntime.Must(mgr.AddHealthzCheck("healthz", healthz.Ping))
	utilruntime.Must(mgr.AddReadyzCheck("readyz", healthz.Ping))

	log.Info("starting vaultcert")
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "manager stopped with an error")
		os.Exit(1)
	}
}

// defaultClusterID is the kube-system namespace's UID: stable for the cluster's life and the same for every
// replica. Without it (no read access) the owner tags carry no cluster, and namespace, name and UID still tell
// owners apart.
func defaultClusterID(api client.Reader) string {
	var ns corev1.Namespace
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := api.Get(ctx, client.ObjectKey{Name: "kube-system"}, &ns); err != nil {
		ctrl.Log.WithName("setup").Error(err, "cannot read the kube-system namespace for --cluster-id; owner tags will name no cluster")
		return ""
	}
	return string(ns.UID)
}

// splitList splits a comma-separated flag value, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// inCluster reports whether the process runs in a pod, where leader election defaults on.
func inCluster() bool {
	return os.Getenv("KUBERNETES_SERVICE_HOST") != ""
}

func ptr[T any](v T) *T { return &v }

// setMemoryLimit sets Go's soft memory limit to 90 % of VAULTCERT_MEMORY_LIMIT (the container's memory limit in
// bytes, which the chart passes from the pod's resources) unless GOMEMLIMIT is set, so the garbage collector works
// harder near the limit instead of the kernel killing the pod. It returns the limit set, or 0.
func setMemoryLimit() int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	limit, err := strconv.ParseInt(os.Getenv("VAULTCERT_MEMORY_LIMIT"), 10, 64)
	if err != nil || limit <= 0 {
		return 0
	}
	soft := limit / 10 * 9
	debug.SetMemoryLimit(soft)
	return soft
}

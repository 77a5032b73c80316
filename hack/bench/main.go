// Command bench measures vaultcert at scale, with nothing from Azure: N VaultCertificates on one fake Key Vault in
// limit mode (the service's budget over a sliding window, 4,000 requests per 10 s by default), a real kube-apiserver
// and etcd (envtest), and the real vaultcert binary as a subprocess, so its peak RSS is the process's own.
//
// It prints the time until all N are Ready, the shortest time the vault's budget allows for the calls that took,
// their ratio, Key Vault calls per certificate cold and per refresh in steady state (every VaultCertificate
// annotated with vaultcert.io/refresh, nothing changed in the vault) and per refresh after a rotation, the 429s
// received, and the controller's peak RSS (VmHWM). Then, unless -memory=false, the memory phase (memory.go): the
// controller's RSS with 1,000 labelled 1 MiB junk Secrets and with 10,000 unrelated Secrets, against its RSS
// without them. It is a benchmark, not a test: it asserts nothing beyond "everything became Ready" (the memory
// phase prints PASS or FAIL against its 10 % target). `make bench` runs it; BENCH_ARGS passes flags.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/hack/internal/localcluster"
	"github.com/vaultcert/vaultcert/internal/fakevault"
	"github.com/vaultcert/vaultcert/internal/hostpolicy"
)

const (
	benchClientID     = "00000000-0000-4000-8000-0000000000be"
	benchClientSecret = "bench-client-secret"
	benchNamespace    = "bench"
)

// options are the command's flags.
type options struct {
	n           int
	limit       int
	window      time.Duration
	binary      string
	concurrency int
	vaultRPS    float64
	vaultBurst  int
	timeout     time.Duration
	keyType     string
	logPath     string
	extraArgs   string
	memory      bool
	junkSecrets int
	junkSize    byteSize
	unrelated   int
	// refreshInterval and steadyWindow shape the interval phase (intervalRefresh); steadyWindow 0 skips it.
	refreshInterval time.Duration
	steadyWindow    time.Duration
	// events is how many certificates the rotation phases rotate (eventCertificates); 0 skips them.
	events int
	// storm and stormLimit shape the storm phase (stormPhase); storm 0 skips it.
	storm      int
	stormLimit int
	// heapProfile, when set, is where the controller's heap profile is saved after the phases (before memory).
	heapProfile string
	// controllerEnv are more environment variables for the controller, e.g. VAULTCERT_MEMORY_LIMIT.
	controllerEnv string
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 1000, "Number of VaultCertificates (and Key Vault certificates).")
	flag.IntVar(&o.limit, "limit", 4000, "The fake vault's budget: requests admitted per window (Key Vault: 4,000 per 10 s).")
	flag.DurationVar(&o.window, "window", 10*time.Second, "The fake vault's sliding window.")
	flag.StringVar(&o.binary, "binary", "bin/vaultcert", "The vaultcert binary to run (make bench builds it).")
	flag.IntVar(&o.concurrency, "concurrent-reconciles", 0, "Passed to vaultcert --concurrent-reconciles (0: vaultcert's default).")
	flag.Float64Var(&o.vaultRPS, "vault-requests-per-second", 0, "Passed to vaultcert --vault-requests-per-second (0: vaultcert's default).")
	flag.IntVar(&o.vaultBurst, "vault-burst", 0, "Passed to vaultcert --vault-burst (0: vaultcert's default).")
	flag.DurationVar(&o.timeout, "timeout", 15*time.Minute, "How long to wait for each phase.")
	flag.StringVar(&o.keyType, "key-type", "EC", "Key type of the seeded certificates (EC or RSA; RSA makes seeding slow).")
	flag.StringVar(&o.logPath, "log", "", "Write vaultcert's log here (default: a temporary file, deleted).")
	flag.StringVar(&o.extraArgs, "controller-args", "", "More vaultcert flags, space-separated, e.g. \"--kube-api-qps=500 --kube-api-burst=1000\".")
	flag.BoolVar(&o.memory, "memory", true, "Run the memory phase after the others (-memory=false skips it).")
	flag.IntVar(&o.junkSecrets, "junk-secrets", 1000, "Memory phase: Secrets labelled managed-by=vaultcert, of -junk-secret-size random bytes each.")
	o.junkSize = 1 << 20
	flag.Var(&o.junkSize, "junk-secret-size", "Memory phase: data in each junk Secret, e.g. 1MiB (the API server's maximum), 512KiB.")
	flag.IntVar(&o.unrelated, "unrelated-secrets", 10000, "Memory phase: Secrets without the label, of 1 KiB each.")
	flag.DurationVar(&o.refreshInterval, "refresh-interval", time.Minute, "Interval phase: every VaultCertificate's spec.refreshInterval (1m is the minimum).")
	flag.IntVar(&o.events, "events", 100, "Rotation phases: certificates rotated with an Event Grid delivery each, then again with polling alone (0 skips them).")
	flag.StringVar(&o.controllerEnv, "controller-env", "", "More environment for vaultcert, space-separated KEY=VALUE, e.g. \"VAULTCERT_MEMORY_LIMIT=167772160\" (a 160 MiB container limit, as the chart passes it).")
	flag.StringVar(&o.heapProfile, "heap-profile", "", "Save the controller's heap profile here after the phases, before the memory phase (read it with `go tool pprof -top -sample_index=inuse_space FILE`).")
	flag.IntVar(&o.storm, "storm", 5000, "Storm phase: certificates rotated and refreshed at once (at most -n; 0 skips the phase).")
	flag.IntVar(&o.stormLimit, "storm-limit", 1000, "Storm phase: the vault's budget per -window during the storm (below the storm's demand).")
	flag.DurationVar(&o.steadyWindow, "steady-window", 2*time.Minute, "Interval phase: how long the calls are counted once refreshes run by the clock (0 skips the phase).")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench failed:", err)
		os.Exit(1)
	}
}

// phase is the vault's counts over one phase of the run.
type phase struct {
	name     string
	elapsed  time.Duration
	counts   map[string]int
	calls    int // every request that reached the vault, throttled ones included
	admitted int // calls - 429s
	throttle int
}

func run(o options) error {
	ctx, stop := signalContext()
	defer stop()
	if _, err := os.Stat(o.binary); err != nil {
		return fmt.Errorf("%s: %w (run `make build` first)", o.binary, err)
	}
	work, err := os.MkdirTemp("", "vaultcert-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	fmt.Printf("control plane: starting kube-apiserver + etcd\n")
	// The bench's own client must not be the bottleneck.
	cluster, err := localcluster.Start(work, "bench-admin", 1000, 2000)
	if err != nil {
		return err
	}
	defer func() { _ = cluster.Stop() }()
	k8s, kubeconfigPath := cluster.Client, cluster.KubeconfigPath

	vault, err := fakevault.Start(fakevault.Options{})
	if err != nil {
		return err
	}
	defer vault.Close()
	vault.AddClientSecret(benchClientID, benchClientSecret)
	fmt.Printf("fake vault: seeding %d %s certificates\n", o.n, o.keyType)
	names := make([]string, o.n)
	if err := parallel(o.n, func(i int) error {
		names[i] = fmt.Sprintf("cert-%05d", i)
		_, err := vault.Seed(fakevault.CertSpec{Name: names[i], KeyType: o.keyType, ChainDepth: 1 + i%3})
		return err
	}); err != nil {
		return err
	}
	// A binary from before the host allow-lists (--allowed-vault-domains) reaches the fake only through a
	// ClusterVaultConnection that skips instance discovery and challenge verification (see setUp).
	help, _ := exec.Command(o.binary, "--help").CombinedOutput()
	legacy := !strings.Contains(string(help), strings.TrimPrefix(hostpolicy.FlagVaultDomains, "--"))
	connection, err := setUp(ctx, k8s, vault, legacy)
	if err != nil {
		return err
	}
	vault.SetLimitWindow(o.window)
	vault.SetLimit(o.limit, true)
	vault.ResetCounts()

	metricsAddr, err := freeAddr()
	if err != nil {
		return err
	}
	args := []string{"--leader-elect=false", "--metrics-bind-address=" + metricsAddr, "--health-probe-bind-address=0", "--zap-log-level=info"}
	if !legacy {
		args = append(args, hostpolicy.FlagVaultDomains+"="+strings.Join(append(hostpolicy.DefaultVaultDomains, vault.URL()), ","),
			hostpolicy.FlagAuthorityHosts+"="+strings.Join(append(hostpolicy.DefaultAuthorityHosts, vault.AuthorityHost()), ","))
	}
	if o.concurrency > 0 {
		args = append(args, "--concurrent-reconciles="+strconv.Itoa(o.concurrency))
	}
	if o.vaultRPS > 0 {
		args = append(args, fmt.Sprintf("--vault-requests-per-second=%g", o.vaultRPS))
	}
	if o.vaultBurst > 0 {
		args = append(args, "--vault-burst="+strconv.Itoa(o.vaultBurst))
	}
	eventAddr := ""
	if o.events > 0 && strings.Contains(string(help), "eventgrid-bind-address") {
		if eventAddr, err = freeAddr(); err != nil {
			return err
		}
		secrets, err := eventSecretsFile(work)
		if err != nil {
			return err
		}
		args = append(args, "--eventgrid-bind-address="+eventAddr, "--eventgrid-secrets-file="+secrets)
	}
	pprofAddr := ""
	if o.heapProfile != "" {
		if pprofAddr, err = freeAddr(); err != nil {
			return err
		}
		args = append(args, "--pprof-bind-address="+pprofAddr)
	}
	args = append(args, strings.Fields(o.extraArgs)...)
	controller := exec.Command(o.binary, args...)
	controller.Env = append(append(os.Environ(), "KUBECONFIG="+kubeconfigPath), strings.Fields(o.controllerEnv)...)
	logPath := o.logPath
	if logPath == "" {
		logPath = filepath.Join(work, "vaultcert.log")
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	controller.Stdout, controller.Stderr = logFile, logFile
	fmt.Printf("controller: %s %s\n", o.binary, strings.Join(args, " "))
	if err := controller.Start(); err != nil {
		return err
	}
	controllerStarted := time.Now()
	exited := make(chan error, 1)
	go func() { exited <- controller.Wait() }()
	defer func() {
		_ = controller.Process.Signal(syscall.SIGTERM)
		<-exited
	}()
	alive := func() error {
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("vaultcert exited: %v (log: %s)", err, logPath)
		default:
			return nil
		}
	}

	// The API server's own floor for the cold sync's writes, measured before the controller has any work.
	fmt.Printf("API server: %d Secret creates and %d patches at full speed\n", o.n, o.n)
	apiMin, err := apiServerMinimum(ctx, k8s, o.n)
	if err != nil {
		return err
	}

	// Cold start: the clock runs from the first create to the last Ready.
	fmt.Printf("cold: creating %d VaultCertificates\n", o.n)
	cpuBefore := cpuTime(controller.Process.Pid)
	start := time.Now()
	if err := parallel(o.n, func(i int) error {
		return k8s.Create(ctx, &vaultcertv1.VaultCertificate{
			ObjectMeta: metav1.ObjectMeta{Name: names[i], Namespace: benchNamespace},
			Spec: vaultcertv1.VaultCertificateSpec{
				ConnectionRef:   connection,
				CertificateName: names[i],
				SecretName:      names[i] + "-tls",
			},
		})
	}); err != nil {
		return err
	}
	created := time.Since(start)
	if err := waitAll(ctx, k8s, o.n, o.timeout, alive, func(vc *vaultcertv1.VaultCertificate) bool {
		c := meta.FindStatusCondition(vc.Status.Conditions, vaultcertv1.ConditionReady)
		return c != nil && c.Status == metav1.ConditionTrue
	}); err != nil {
		return err
	}
	cold := measure("cold start", time.Since(start), vault)
	cpuCold := cpuTime(controller.Process.Pid) - cpuBefore

	// Steady state: every VaultCertificate asks Key Vault again; nothing changed there.
	refreshed, err := refreshAll(ctx, k8s, vault, names, o, alive, "steady refresh")
	if err != nil {
		return err
	}

	// Rotation: a new version of every certificate, then a refresh of all.
	for _, name := range names {
		if _, err := vault.Rotate(name); err != nil {
			return err
		}
	}
	rotated, err := refreshAll(ctx, k8s, vault, names, o, alive, "refresh after rotation")
	if err != nil {
		return err
	}
	if err := waitAll(ctx, k8s, o.n, o.timeout, alive, func(vc *vaultcertv1.VaultCertificate) bool {
		v, err := vault.Latest(vc.Spec.CertificateName)
		return err == nil && vc.Status.Version == v.Version
	}); err != nil {
		return err
	}

	// Rotation by event while the other VaultCertificates refresh at the default interval.
	var (
		rotations  rotationLatencies
		eventCerts *eventCertificates
	)
	if eventAddr != "" {
		if eventCerts, err = setUpEventCertificates(ctx, k8s, vault, o, alive); err != nil {
			return err
		}
		// Quiet means quiet: the reconciles the earlier phases' Secret writes queued are done first.
		if err := waitQueueEmpty(ctx, metricsAddr, o.timeout, alive); err != nil {
			return err
		}
		fmt.Printf("rotation by event: %d VaultCertificates, the others at the default interval\n", o.events)
		if rotations.byEventQuiet, err = eventCerts.rotateByEvent(ctx, k8s, vault, o, eventAddr, alive); err != nil {
			return err
		}
	}

	// Steady state by the clock: what users pay when refresh intervals elapse and nothing changed.
	var interval phase
	if o.steadyWindow > 0 {
		if interval, err = intervalRefresh(ctx, k8s, vault, names, o, alive); err != nil {
			return err
		}
	}

	// Rotation by event again while every VaultCertificate refreshes every interval, then by polling alone.
	if eventCerts != nil {
		fmt.Printf("rotation by event: %d VaultCertificates, the others refreshing every %s\n", o.events, o.refreshInterval)
		if rotations.byEventLoaded, err = eventCerts.rotateByEvent(ctx, k8s, vault, o, eventAddr, alive); err != nil {
			return err
		}
		if rotations.byPolling, err = eventCerts.rotateByPolling(ctx, k8s, vault, o, alive); err != nil {
			return err
		}
	}

	var storm stormResult
	if o.storm > 0 {
		if storm, err = stormPhase(ctx, k8s, vault, names, o, alive); err != nil {
			return err
		}
	}

	// The figures of the phases above, before the memory phase adds to them.
	hwm, rss := procStatus(controller.Process.Pid, "VmHWM"), procStatus(controller.Process.Pid, "VmRSS")
	cpuTotal, running := cpuTime(controller.Process.Pid), time.Since(controllerStarted)
	sums, metricsErr := scrape(metricsAddr)
	if pprofAddr != "" {
		if err := saveHeapProfile(pprofAddr, o.heapProfile); err != nil {
			return err
		}
		fmt.Printf("heap profile: %s\n", o.heapProfile)
	}
	var memory []memoryState
	if o.memory {
		if memory, err = memoryPhase(ctx, k8s, controller.Process.Pid, metricsAddr, o, alive); err != nil {
			return err
		}
	}
	report(o, created, cold, refreshed, rotated, hwm, rss)
	fmt.Printf("| the API server's own minimum for the cold sync's writes (%d Secret creates + %d patches, 16 writers) | %s; ratio (time to all Ready / it) %.2f |\n",
		o.n, o.n, apiMin.Round(time.Millisecond), float64(cold.elapsed)/float64(max(apiMin, time.Millisecond)))
	reportInterval(o, interval)
	reportRotations(o, rotations)
	reportStorm(o, storm)
	fmt.Printf("| controller CPU, cold sync / whole run before the memory phase | %.1f s (%.2f cores on average) / %.1f s over %s (%.2f cores) |\n",
		cpuCold.Seconds(), cpuCold.Seconds()/cold.elapsed.Seconds(), cpuTotal.Seconds(), running.Round(time.Second), cpuTotal.Seconds()/running.Seconds())
	where(sums, metricsErr)
	reportMemory(memory)
	return nil
}

// freeAddr returns a free loopback address for the controller's metrics endpoint.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitQueueEmpty waits until the VaultCertificate work queue has been empty for three scrapes in a row.
func waitQueueEmpty(ctx context.Context, metricsAddr string, timeout time.Duration, alive func() error) error {
	deadline := time.Now().Add(timeout)
	for empty := 0; empty < 3; {
		sums, err := scrape(metricsAddr)
		if err != nil {
			return err
		}
		if sums["workqueue_depth"] == 0 {
			empty++
		} else {
			empty = 0
		}
		if err := alive(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the work queue still holds %.0f items after %s", sums["workqueue_depth"], timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return nil
}

// saveHeapProfile saves the controller's heap profile (after a garbage collection, so it shows live memory).
func saveHeapProfile(addr, path string) error {
	resp, err := http.Get("http://" + addr + "/debug/pprof/heap?gc=1")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("heap profile: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// scrape reads the controller's metrics endpoint and sums each metric over its series. Work-queue and reconcile
// metrics count the VaultCertificate controller's only.
func scrape(addr string) (map[string]float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	sums := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		name, rest, _ := strings.Cut(line, " ")
		labels := ""
		if i := strings.Index(name, "{"); i >= 0 {
			name, labels = name[:i], name[i:]
		}
		if strings.Contains(name, "workqueue") && !strings.Contains(labels, `name="vaultcertificate"`) {
			continue
		}
		if strings.HasPrefix(name, "controller_runtime_reconcile") && !strings.Contains(labels, `controller="vaultcertificate"`) {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err == nil {
			sums[name] += v
		}
	}
	return sums, nil
}

// where prints where the controller's time went over the run (its metrics before the memory phase): mean
// reconcile time, mean wait in the work queue and mean Key Vault request latency.
func where(sums map[string]float64, err error) {
	if err != nil {
		fmt.Printf("\n(metrics unavailable: %v)\n", err)
		return
	}
	mean := func(base string) string {
		c := sums[base+"_count"]
		if c == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.1f ms over %.0f", 1000*sums[base+"_sum"]/c, c)
	}
	fmt.Printf("\nwhere the time went (controller metrics, the phases above):\n")
	fmt.Printf("  VaultCertificate reconcile:        %s reconciles\n", mean("controller_runtime_reconcile_time_seconds"))
	fmt.Printf("  wait in the work queue:            %s items\n", mean("workqueue_queue_duration_seconds"))
	fmt.Printf("  Key Vault request:                 %s requests\n", mean("vaultcert_keyvault_request_duration_seconds"))
}

// setUp creates the namespace and a connection with a service principal to the fake vault, and returns the
// reference the VaultCertificates use. The connection is a VaultConnection, as a namespace team would write; for a
// legacy binary (one without the host allow-lists) it is a ClusterVaultConnection skipping instance discovery and
// challenge verification, which that binary needs to reach the fake and which only a ClusterVaultConnection may set.
func setUp(ctx context.Context, k8s client.Client, vault *fakevault.Server, legacy bool) (vaultcertv1.ConnectionReference, error) {
	ref := vaultcertv1.ConnectionReference{Name: "vault"}
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNamespace}}); err != nil {
		return ref, err
	}
	if err := k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kv-credentials", Namespace: benchNamespace},
		StringData: map[string]string{"clientSecret": benchClientSecret}}); err != nil {
		return ref, err
	}
	spec := vaultcertv1.ConnectionSpec{
		VaultURL: vault.URL(),
		Auth: &vaultcertv1.ConnectionAuth{ServicePrincipal: &vaultcertv1.ServicePrincipalAuth{
			TenantID: vault.TenantID(), ClientID: benchClientID,
			ClientSecretRef: &vaultcertv1.SecretKeyReference{Name: "kv-credentials", Key: "clientSecret"},
		}},
		// The controller is started with the fake allowed (--allowed-vault-domains and
		// --allowed-authority-hosts), as an admin would allow a private vault.
		Cloud: &vaultcertv1.CloudConfig{AuthorityHost: vault.AuthorityHost(), CABundle: string(vault.CAPEM())},
	}
	if !legacy {
		return ref, k8s.Create(ctx, &vaultcertv1.VaultConnection{ObjectMeta: metav1.ObjectMeta{Name: ref.Name, Namespace: benchNamespace}, Spec: spec})
	}
	ref.Kind = vaultcertv1.ClusterVaultConnectionKind
	spec.Auth.ServicePrincipal.ClientSecretRef.Namespace = benchNamespace
	spec.Cloud.DisableInstanceDiscovery, spec.Cloud.DisableChallengeResourceVerification = true, true
	return ref, k8s.Create(ctx, &vaultcertv1.ClusterVaultConnection{ObjectMeta: metav1.ObjectMeta{Name: ref.Name},
		Spec: vaultcertv1.ClusterVaultConnectionSpec{ConnectionSpec: spec}})
}

// annotateRefresh annotates the named VaultCertificates with vaultcert.io/refresh (the time at), as a user would.
func annotateRefresh(ctx context.Context, k8s client.Client, names []string, at time.Time) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, vaultcertv1.AnnotationRefresh, strconv.FormatInt(at.UnixNano(), 10))
	return parallel(len(names), func(i int) error {
		obj := &vaultcertv1.VaultCertificate{ObjectMeta: metav1.ObjectMeta{Namespace: benchNamespace, Name: names[i]}}
		return k8s.Patch(ctx, obj, client.RawPatch("application/merge-patch+json", []byte(patch)))
	})
}

// refreshAll resets the vault's counts, annotates every VaultCertificate with vaultcert.io/refresh and waits
// until the vault has seen a GetCertificate for each, then until the calls stop growing.
func refreshAll(ctx context.Context, k8s client.Client, vault *fakevault.Server, names []string, o options,
	alive func() error, what string) (phase, error) {
	fmt.Printf("%s: annotating %d VaultCertificates with %s\n", what, len(names), vaultcertv1.AnnotationRefresh)
	vault.ResetCounts()
	start := time.Now()
	if err := annotateRefresh(ctx, k8s, names, start); err != nil {
		return phase{}, err
	}
	deadline := time.Now().Add(o.timeout)
	for {
		done := 0
		for _, n := range names {
			if vault.CountFor(fakevault.OpGetCertificate, n) > 0 {
				done++
			}
		}
		if done == len(names) {
			break
		}
		if err := alive(); err != nil {
			return phase{}, err
		}
		if time.Now().After(deadline) {
			return phase{}, fmt.Errorf("%s: only %d of %d certificates were read within %s", what, done, len(names), o.timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	elapsed := time.Since(start)
	// Stragglers (a secret read after a new version) finish within a moment; wait until the count is stable.
	last := -1
	for {
		c := fakevault.VaultRequests(vault.Counts())
		if c == last {
			break
		}
		last = c
		time.Sleep(time.Second)
	}
	return measure(what, elapsed, vault), nil
}

// intervalRefresh sets every VaultCertificate's refreshInterval to o.refreshInterval, lets one interval and a
// margin pass (the spec change makes each read its certificate once, then they refresh by the clock), and counts
// the vault's calls over o.steadyWindow: the steady state users pay for, with nothing changed in the vault.
func intervalRefresh(ctx context.Context, k8s client.Client, vault *fakevault.Server, names []string, o options,
	alive func() error) (phase, error) {
	fmt.Printf("interval refresh: refreshInterval %s on %d VaultCertificates, then counting for %s\n", o.refreshInterval, len(names), o.steadyWindow)
	if err := parallel(len(names), func(i int) error {
		patch := fmt.Sprintf(`{"spec":{"refreshInterval":%q}}`, o.refreshInterval.String())
		obj := &vaultcertv1.VaultCertificate{ObjectMeta: metav1.ObjectMeta{Namespace: benchNamespace, Name: names[i]}}
		return k8s.Patch(ctx, obj, client.RawPatch("application/merge-patch+json", []byte(patch)))
	}); err != nil {
		return phase{}, err
	}
	sleep := func(d time.Duration) error {
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(time.Second) {
			if err := alive(); err != nil {
				return err
			}
		}
		return nil
	}
	if err := sleep(o.refreshInterval + o.refreshInterval/2); err != nil {
		return phase{}, err
	}
	vault.ResetCounts()
	start := time.Now()
	if err := sleep(o.steadyWindow); err != nil {
		return phase{}, err
	}
	return measure("interval refresh", time.Since(start), vault), nil
}

// reportInterval prints the interval phase: calls per certificate per refresh, where each certificate refreshes
// window/interval times.
func reportInterval(o options, p phase) {
	if p.name == "" {
		return
	}
	refreshes := float64(o.n) * p.elapsed.Seconds() / o.refreshInterval.Seconds()
	fmt.Printf("| Key Vault calls per certificate per refresh, refresh intervals elapsing (%s, counted over %s) | %.3f (%s) |\n",
		o.refreshInterval, p.elapsed.Round(time.Second), float64(p.calls)/refreshes, breakdown(p.counts))
	fmt.Printf("| 429s received, refresh intervals elapsing | %d |\n", p.throttle)
}

// waitAll polls the VaultCertificates until n satisfy ok.
func waitAll(ctx context.Context, k8s client.Client, n int, timeout time.Duration, alive func() error, ok func(*vaultcertv1.VaultCertificate) bool) error {
	deadline := time.Now().Add(timeout)
	lastPrint := time.Now()
	for {
		var list vaultcertv1.VaultCertificateList
		if err := k8s.List(ctx, &list, client.InNamespace(benchNamespace)); err != nil {
			return err
		}
		good := 0
		for i := range list.Items {
			if ok(&list.Items[i]) {
				good++
			}
		}
		if good == n {
			return nil
		}
		if err := alive(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d VaultCertificates got there within %s", good, n, timeout)
		}
		if time.Since(lastPrint) > 5*time.Second {
			fmt.Printf("  %d/%d\n", good, n)
			lastPrint = time.Now()
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// measure reads the vault's counts for a phase.
func measure(name string, elapsed time.Duration, vault *fakevault.Server) phase {
	counts := vault.Counts()
	p := phase{name: name, elapsed: elapsed, counts: counts, calls: fakevault.VaultRequests(counts), throttle: counts[fakevault.OpThrottled]}
	p.admitted = p.calls - p.throttle
	return p
}

// report prints the results as a Markdown table (docs/benchmarks.md takes it verbatim).
func report(o options, created time.Duration, cold, refreshed, rotated phase, hwm, rss string) {
	rate := float64(o.limit) / o.window.Seconds()
	minimum := time.Duration(float64(cold.admitted) / rate * float64(time.Second))
	n := float64(o.n)
	fmt.Printf("\n## vaultcert bench: %d VaultCertificates, vault budget %d requests per %s (%.0f/s)\n\n", o.n, o.limit, o.window, rate)
	fmt.Printf("| measure | value |\n|---|---|\n")
	fmt.Printf("| time to all Ready (cold, from the first create; creating took %s) | %s |\n", created.Round(time.Millisecond), cold.elapsed.Round(time.Millisecond))
	fmt.Printf("| minimum the vault's budget allows for the %d calls admitted | %s |\n", cold.admitted, minimum.Round(time.Millisecond))
	fmt.Printf("| ratio (time to all Ready / minimum) | %.2f |\n", float64(cold.elapsed)/float64(max(minimum, time.Millisecond)))
	fmt.Printf("| Key Vault calls per certificate, cold | %.2f (%s) |\n", float64(cold.calls)/n, breakdown(cold.counts))
	fmt.Printf("| 429s received, cold | %d |\n", cold.throttle)
	fmt.Printf("| Key Vault calls per certificate, steady-state refresh | %.2f (%s), all read in %s |\n", float64(refreshed.calls)/n, breakdown(refreshed.counts), refreshed.elapsed.Round(time.Millisecond))
	fmt.Printf("| 429s received, steady-state refresh | %d |\n", refreshed.throttle)
	fmt.Printf("| Key Vault calls per certificate, refresh after a rotation | %.2f (%s), all read in %s |\n", float64(rotated.calls)/n, breakdown(rotated.counts), rotated.elapsed.Round(time.Millisecond))
	fmt.Printf("| 429s received, refresh after a rotation | %d |\n", rotated.throttle)
	fmt.Printf("| controller peak RSS (VmHWM) / RSS at the end | %s / %s |\n", hwm, rss)
}

// breakdown lists the vault operations of a phase.
func breakdown(counts map[string]int) string {
	var parts []string
	for op, c := range counts {
		if op != fakevault.OpToken && op != fakevault.OpDiscovery && c > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", op, c))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// procStatus reads one size field of /proc/<pid>/status, e.g. "VmHWM" -> "59.8 MiB".
func procStatus(pid int, field string) string {
	kb, err := procKB(pid, field)
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return fmt.Sprintf("%.1f MiB", float64(kb)/1024)
}

// procKB reads one size field of /proc/<pid>/status in KiB, e.g. "VmRSS".
func procKB(pid int, field string) (int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// cpuTime is the CPU time (user and system) the process has used: /proc/<pid>/stat's utime and stime, in clock
// ticks of 1/100 s (Linux's USER_HZ on every architecture Go builds the controller for). Zero when unreadable.
func cpuTime(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; the fields after its closing parenthesis start at field 3.
	end := strings.LastIndexByte(string(data), ')')
	if end < 0 {
		return 0
	}
	fields := strings.Fields(string(data[end+1:]))
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// parallel runs f(0..n-1) on 16 goroutines and returns the first error.
func parallel(n int, f func(int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

// signalContext is cancelled on SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

package controllers_test

import (
	"context"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/controllers"
	"github.com/vaultcert/vaultcert/internal/changefeed"
	"github.com/vaultcert/vaultcert/internal/fakevault"
	"github.com/vaultcert/vaultcert/internal/keyvault"
)

// startVault starts a fake vault of the test's own, so its pauses, limits and faults touch nothing else.
func startVault(t *testing.T) *fakevault.Server {
	t.Helper()
	srv, err := fakevault.Start(fakevault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	srv.AddClientSecret(testClientID, testClientSecret)
	return srv
}

// TestThrottleOneEventPerPause: a 429 on a vault serving several certificates pauses the whole vault. Every
// certificate waits for the pause instead of hammering the vault, keeps its Secret and Ready=True, and the
// user gets one Warning event for the pause, not one per certificate per try.
func TestThrottleOneEventPerPause(t *testing.T) {
	const certs = 5
	srv := startVault(t)
	ns := newNamespace(t, nil)
	connectionTo(t, k8s, ns, srv)
	for i := range certs {
		name := fmt.Sprintf("web-%d", i)
		if _, err := srv.Seed(fakevault.CertSpec{Name: name, KeyType: "EC"}); err != nil {
			t.Fatal(err)
		}
		newCertificate(t, ns, name, func(vc *vaultcertv1.VaultCertificate) {
			vc.Name, vc.Spec.SecretName = name, name+"-tls"
		})
	}
	before := map[string]string{}
	for i := range certs {
		name := fmt.Sprintf("web-%d", i)
		waitReady(t, ns, name, metav1.ConditionTrue, vaultcertv1.ReasonSynced)
		before[name] = getSecret(t, ns, name+"-tls").ResourceVersion
	}

	// The next read is throttled for 3 s; then every certificate is refreshed at once.
	srv.ResetCounts()
	srv.InjectFault(fakevault.Fault{Operation: fakevault.OpGetCertificate, Status: 429, RetryAfter: "3", Times: 1})
	for i := range certs {
		refresh(t, ns, fmt.Sprintf("web-%d", i))
	}
	// Every certificate met the pause (its Ready says so) without losing Ready=True.
	for i := range certs {
		name := fmt.Sprintf("web-%d", i)
		eventually(t, name+" reports the pause", func() (bool, string) {
			c := meta.FindStatusCondition(getCert(t, ns, name).Status.Conditions, vaultcertv1.ConditionReady)
			if c.Status != metav1.ConditionTrue {
				t.Fatalf("%s lost Ready=True while throttled: %s %s", name, c.Reason, c.Message)
			}
			return strings.Contains(c.Message, "throttling") || srv.CountFor(fakevault.OpGetCertificate, name) > 0, c.Message
		})
	}
	// After the pause every certificate reads Key Vault again and is back to its plain Synced message.
	for i := range certs {
		name := fmt.Sprintf("web-%d", i)
		eventually(t, name+" synced after the pause", func() (bool, string) {
			c := meta.FindStatusCondition(getCert(t, ns, name).Status.Conditions, vaultcertv1.ConditionReady)
			return c.Status == metav1.ConditionTrue && !strings.Contains(c.Message, "throttling") &&
				srv.CountFor(fakevault.OpGetCertificate, name) > 0, c.Message
		})
		if rv := getSecret(t, ns, name+"-tls").ResourceVersion; rv != before[name] {
			t.Errorf("Secret %s-tls was rewritten (resourceVersion %s -> %s); throttling must leave it untouched", name, before[name], rv)
		}
	}
	if got := srv.Count(fakevault.OpThrottled); got != 1 {
		t.Errorf("the vault answered %d 429s, want 1: calls during the pause must not be sent", got)
	}
	var warnings []string
	eventually(t, "the pause's Warning event", func() (bool, string) {
		var list eventsv1.EventList
		if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		warnings = warnings[:0]
		for _, e := range list.Items {
			if e.Type == corev1.EventTypeWarning && e.Reason == vaultcertv1.ReasonThrottled {
				warnings = append(warnings, e.Regarding.Name+": "+e.Note)
			}
		}
		return len(warnings) > 0, "no Throttled event yet"
	})
	if len(warnings) != 1 {
		t.Errorf("want one Warning event for the pause, got %d:\n%s", len(warnings), strings.Join(warnings, "\n"))
	}
}

// chaosConfig sizes the chaos run: VAULTCERT_CHAOS_CERTS (default 200, 60 with -short), VAULTCERT_CHAOS_SECONDS
// (default 40, 15 with -short) and VAULTCERT_CHAOS_SEED (default: the clock; logged so a failure can be replayed).
func chaosConfig(t *testing.T) (certs int, chaos time.Duration, seed uint64) {
	certs, secs := 200, 40
	if testing.Short() {
		certs, secs = 60, 15
	}
	atoi := func(name string, def int) int {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				t.Fatalf("%s=%q: want a positive integer", name, v)
			}
			return n
		}
		return def
	}
	certs, secs = atoi("VAULTCERT_CHAOS_CERTS", certs), atoi("VAULTCERT_CHAOS_SECONDS", secs)
	seed = uint64(time.Now().UnixNano())
	if v := os.Getenv("VAULTCERT_CHAOS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("VAULTCERT_CHAOS_SEED=%q: %v", v, err)
		}
		seed = n
	}
	return certs, time.Duration(secs) * time.Second, seed
}

// chaosController is one run of the controller (a manager with both reconcilers and its own Key Vault client
// factory and governor), as one process of vaultcert would be.
type chaosController struct {
	cancel context.CancelFunc
	done   chan error
	// changes answers refreshes from vault listings and takes the chaos's certificate events, as in production.
	changes *changefeed.Registry
}

// startChaosController starts a controller against the chaos API server whose clock runs ahead by skew: a
// controller started hours later finds every refresh due by the clock, which the vault listing answers.
func startChaosController(t *testing.T, cfg *rest.Config, skew time.Duration) *chaosController {
	t.Helper()
	now := func() time.Time { return time.Now().Add(skew) }
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  controllers.CacheOptions(nil),
		Client:                 controllers.ClientOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// Faults are the point here: their reconcile errors would bury `make test`'s output.
		Logger: logr.Discard(),
		// The suite's manager registered the same controller names in this process.
		Controller: config.Controller{SkipNameValidation: ptrTo(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	factory := keyvault.NewFactory(keyvault.FactoryOptions{})
	changes := changefeed.NewRegistry(changefeed.Options{Now: now})
	if err := mgr.Add(changes); err != nil {
		t.Fatal(err)
	}
	if err := (&controllers.VaultCertificateReconciler{
		Client:        mgr.GetClient(),
		APIReader:     mgr.GetAPIReader(),
		Recorder:      mgr.GetEventRecorder("vaultcert"),
		Factory:       factory,
		HostPolicy:    loopbackHostPolicy(),
		TerminalRetry: 2 * time.Second,
		Now:           now,
		Changes:       changes,
	}).SetupWithManager(mgr, controller.Options{
		MaxConcurrentReconciles: 8,
		RateLimiter:             workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](100*time.Millisecond, 3*time.Second),
	}); err != nil {
		t.Fatal(err)
	}
	if err := (&controllers.ConnectionReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Factory: factory, RecheckInterval: time.Minute,
		HostPolicy: loopbackHostPolicy(),
	}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &chaosController{cancel: cancel, done: make(chan error, 1), changes: changes}
	go func() { c.done <- mgr.Start(ctx) }()
	return c
}

// stop stops the controller and waits for it to finish.
func (c *chaosController) stop(t *testing.T) {
	t.Helper()
	c.cancel()
	if err := <-c.done; err != nil {
		t.Errorf("controller stopped with an error: %v", err)
	}
}

func ptrTo[T any](v T) *T { return &v }

// invariantWatcher watches every state of every managed Secret and records each one that breaks a promise
// vaultcert makes about the Secrets it writes.
type invariantWatcher struct {
	srv *fakevault.Server

	mu         sync.Mutex
	states     int
	violations []string
	// highest is, per Secret, the creation index (in the fake) of the newest version it has held.
	highest map[string]int
}

// check records one observed state of a Secret.
func (w *invariantWatcher) check(ev watch.Event) {
	s, ok := ev.Object.(*corev1.Secret)
	if !ok {
		return
	}
	key := s.Namespace + "/" + s.Name
	w.mu.Lock()
	defer w.mu.Unlock()
	w.states++
	bad := func(format string, args ...any) {
		w.violations = append(w.violations, fmt.Sprintf("%s (resourceVersion %s): %s", key, s.ResourceVersion, fmt.Sprintf(format, args...)))
	}
	if ev.Type == watch.Deleted {
		bad("deleted")
		return
	}
	crt, keyPEM, ca := s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey], s.Data["ca.crt"]
	if len(crt) == 0 || len(keyPEM) == 0 || len(ca) == 0 {
		bad("empty value: tls.crt %d bytes, tls.key %d bytes, ca.crt %d bytes", len(crt), len(keyPEM), len(ca))
		return
	}
	// The standard library, not the code under test, judges the pair and the chain.
	pair, err := tls.X509KeyPair(crt, keyPEM)
	if err != nil {
		bad("tls.key does not match the leaf in tls.crt: %v", err)
		return
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		bad("leaf: %v", err)
		return
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		bad("ca.crt holds no certificate")
		return
	}
	for _, der := range pair.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			bad("intermediate: %v", err)
			return
		}
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		bad("chain does not verify against ca.crt: %v", err)
		return
	}
	name, version := s.Annotations[vaultcertv1.AnnotationCertificateName], s.Annotations[vaultcertv1.AnnotationVersion]
	versions, err := w.srv.Versions(name)
	if err != nil {
		bad("certificate %q: %v", name, err)
		return
	}
	idx := -1
	for i, v := range versions {
		if v.Version == version {
			idx = i
			if pemThumbprint(leaf) != v.Thumbprint {
				bad("holds the leaf %s but claims version %s (thumbprint %s)", pemThumbprint(leaf), version, v.Thumbprint)
			}
		}
	}
	if idx < 0 {
		bad("version %q is not a version of %q", version, name)
		return
	}
	if prev, seen := w.highest[key]; seen && idx < prev {
		bad("went back from version #%d to older version #%d (%s)", prev, idx, version)
	}
	w.highest[key] = max(w.highest[key], idx)
}

// pemThumbprint is the SHA-1 thumbprint as the fake reports it.
func pemThumbprint(c *x509.Certificate) string {
	return fmt.Sprintf("%X", sha1.Sum(c.Raw))
}

// watch follows every change of the managed Secrets from resourceVersion rv until ctx ends. A RetryWatcher
// resumes from the last seen resourceVersion after a dropped connection, so no state is skipped.
func (w *invariantWatcher) watch(ctx context.Context, t *testing.T, cs kubernetes.Interface, rv string) <-chan struct{} {
	selector := vaultcertv1.LabelManagedBy + "=" + vaultcertv1.ManagedByValue
	rw, err := watchtools.NewRetryWatcherWithContext(ctx, rv, &toolscache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = selector
			return cs.CoreV1().Secrets("").Watch(ctx, o)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer rw.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-rw.ResultChan():
				if !ok {
					return
				}
				if ev.Type == watch.Error {
					w.mu.Lock()
					w.violations = append(w.violations, fmt.Sprintf("watch error: %v", ev.Object))
					w.mu.Unlock()
					continue
				}
				if ev.Type != watch.Bookmark {
					w.check(ev)
				}
			}
		}
	}()
	return done
}

// chaosMonkey breaks the vault at random (seeded) while the controller works: throttling in limit mode with
// and without Retry-After, 429/500/503, resets, timeouts, malformed JSON, truncated PFX, and new versions
// (some with a key that does not match), each followed by a user's refresh.
type chaosMonkey struct {
	t   *testing.T
	rng *rand.Rand
	srv *fakevault.Server
	k8s client.Client
	vcs []chaosCert
	mu  sync.Mutex
	log map[string]int // what was injected, by kind
	// corrupt holds the certificates whose latest version has a key that does not match.
	corrupt map[string]bool
	// events is the running controller's change registry (nil while it is stopped): half the rotations are
	// announced to it as an Event Grid delivery would be, instead of a user's refresh annotation.
	events atomic.Pointer[changefeed.Registry]
}

// chaosCert locates one VaultCertificate and its Key Vault certificate.
type chaosCert struct{ ns, name, cert string }

func (m *chaosMonkey) count(what string) { m.log[what]++ }

// run breaks something every 50-150 ms until ctx ends.
func (m *chaosMonkey) run(ctx context.Context) {
	limitUntil := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(50+m.rng.IntN(100)) * time.Millisecond):
		}
		m.mu.Lock()
		if time.Now().After(limitUntil) {
			// Limit mode phases of 1-4 s: off, or a budget of 40-120 requests per second (the service's sliding
			// window, shortened to 1 s), with or without Retry-After.
			switch m.rng.IntN(3) {
			case 0:
				m.srv.SetLimit(0, false)
			case 1:
				m.srv.SetLimit(40+m.rng.IntN(80), true)
				m.count("limit mode with Retry-After")
			case 2:
				m.srv.SetLimit(40+m.rng.IntN(80), false)
				m.count("limit mode without Retry-After")
			}
			limitUntil = time.Now().Add(time.Duration(1000+m.rng.IntN(3000)) * time.Millisecond)
		}
		ops := []string{fakevault.OpGetCertificate, fakevault.OpGetSecret, fakevault.OpListCertificates, ""}
		op := ops[m.rng.IntN(len(ops))]
		times := 1 + m.rng.IntN(3)
		// Per tick (10-12 a second): a fault about one time in four, so a share of the requests fail, not all of
		// them; a hung request (held until the SDK's 30 s per-try timeout) about once in 20 s.
		p := m.rng.IntN(1000)
		if p < 250 && len(m.srv.Faults()) >= 3 {
			p = 250 + m.rng.IntN(750)
		}
		switch {
		case p < 40:
			m.srv.InjectFault(fakevault.Fault{Operation: op, Status: 500, Times: times})
			m.count("500")
		case p < 80:
			m.srv.InjectFault(fakevault.Fault{Operation: op, Status: 503, Times: times})
			m.count("503")
		case p < 110:
			ra := ""
			if m.rng.IntN(2) == 0 {
				ra = "1"
			}
			m.srv.InjectFault(fakevault.Fault{Operation: op, Status: 429, RetryAfter: ra, Times: times})
			m.count("429")
		case p < 150:
			m.srv.InjectFault(fakevault.Fault{Operation: op, Kind: fakevault.FaultReset, Times: times})
			m.count("reset")
		case p < 155:
			m.srv.InjectFault(fakevault.Fault{Operation: op, Kind: fakevault.FaultTimeout, Times: 1})
			m.count("timeout")
		case p < 200:
			m.srv.InjectFault(fakevault.Fault{Operation: op, Kind: fakevault.FaultMalformed, Times: times})
			m.count("malformed JSON")
		case p < 250:
			m.srv.InjectFault(fakevault.Fault{Operation: fakevault.OpGetSecret, Kind: fakevault.FaultTruncate, Times: times})
			m.count("truncated PFX/PEM")
		case p < 600:
			m.rotate(m.vcs[m.rng.IntN(len(m.vcs))], m.rng.IntN(5) == 0)
		default:
			for range 5 {
				m.refresh(m.vcs[m.rng.IntN(len(m.vcs))])
			}
		}
		m.mu.Unlock()
	}
}

// rotate adds a version (with a key that matches nothing when corrupt) and asks for a refresh.
func (m *chaosMonkey) rotate(vc chaosCert, corrupt bool) {
	v, err := m.srv.Rotate(vc.cert)
	if err != nil {
		m.t.Errorf("rotate %s: %v", vc.cert, err)
		return
	}
	m.count("rotation")
	m.corrupt[vc.cert] = false
	if corrupt {
		if err := m.srv.CorruptKey(vc.cert, v.Version); err != nil {
			m.t.Errorf("corrupt %s: %v", vc.cert, err)
			return
		}
		m.corrupt[vc.cert] = true
		m.count("rotation with a corrupt key")
	}
	if events := m.events.Load(); events != nil && m.rng.IntN(2) == 0 {
		u, _ := url.Parse(m.srv.URL())
		if events.Notify(u.Host, "", vc.cert, v.Version) > 0 {
			m.count("rotation announced by an event")
			return
		}
	}
	m.refresh(vc)
}

// refresh annotates the VaultCertificate as a user asking for a refresh would.
func (m *chaosMonkey) refresh(vc chaosCert) {
	patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, vaultcertv1.AnnotationRefresh, strconv.FormatInt(time.Now().UnixNano(), 10)))
	obj := &vaultcertv1.VaultCertificate{ObjectMeta: metav1.ObjectMeta{Namespace: vc.ns, Name: vc.name}}
	if err := m.k8s.Patch(context.Background(), obj, client.RawPatch("application/merge-patch+json", patch)); err != nil {
		m.t.Errorf("refresh %s/%s: %v", vc.ns, vc.name, err)
	}
	m.count("refresh")
}

// TestChaos runs many VaultCertificates on one vault that throttles, fails, hangs, lies and rotates at random,
// restarts the controller in the middle (the new one two hours ahead, so vault listings answer its due refreshes,
// and half the rotations announced by certificate events instead of refresh annotations), and checks every
// Secret state ever written: never empty, key matching
// the leaf, chain verifying against ca.crt, never an older version than the Secret already held. At the end
// every VaultCertificate is Ready at its certificate's latest (good) version.
//
// It runs on an API server and a fake vault of its own, with a controller of its own that it stops and starts
// again: the suite's manager never sees these objects (another API server), so the restart is a real one,
// nothing else reconciles the objects, and the vault's counts are the chaos run's alone.
func TestChaos(t *testing.T) {
	n, chaosFor, seed := chaosConfig(t)
	t.Logf("chaos: %d certificates, %s of chaos, seed %d (replay with VAULTCERT_CHAOS_SEED=%d)", n, chaosFor, seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	kc, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := startVault(t)
	ctx := context.Background()

	// Certificates of every shape: EC and RSA, self-signed and chains of 2 and 3, PFX and PEM, chains in
	// scrambled order; spread over four namespaces, each with its own connection to the one vault.
	const namespaces = 4
	for i := range namespaces {
		ns := fmt.Sprintf("chaos-%d", i)
		if err := kc.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
		connectionTo(t, kc, ns, srv)
	}
	vcs := make([]chaosCert, 0, n)
	for i := range n {
		spec := fakevault.CertSpec{Name: fmt.Sprintf("chaos-%03d", i), KeyType: "EC", ChainDepth: 1 + i%3, ScrambleChain: i%5 == 4}
		if i%10 == 0 {
			spec.KeyType = "RSA"
		}
		if i%2 == 1 {
			spec.ContentType = "application/x-pem-file"
		}
		if _, err := srv.Seed(spec); err != nil {
			t.Fatal(err)
		}
		vcs = append(vcs, chaosCert{ns: fmt.Sprintf("chaos-%d", i%namespaces), name: spec.Name, cert: spec.Name})
	}

	// The watcher starts before the first Secret exists, so it sees every state.
	var list corev1.SecretList
	if err := kc.List(ctx, &list); err != nil {
		t.Fatal(err)
	}
	watcher := &invariantWatcher{srv: srv, highest: map[string]int{}}
	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := watcher.watch(watchCtx, t, cs, list.ResourceVersion)

	ctl := startChaosController(t, cfg, 0)
	defer func() {
		if ctl != nil {
			ctl.stop(t)
		}
	}()
	for _, vc := range vcs {
		obj := &vaultcertv1.VaultCertificate{
			ObjectMeta: metav1.ObjectMeta{Name: vc.name, Namespace: vc.ns},
			Spec: vaultcertv1.VaultCertificateSpec{
				ConnectionRef:   vaultcertv1.ConnectionReference{Name: "vault"},
				CertificateName: vc.cert,
				SecretName:      vc.name + "-tls",
			},
		}
		if err := kc.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}

	// Chaos, with a controller restart in the middle: stopped while the vault keeps changing, then a new one.
	srv.SetLimitWindow(time.Second)
	monkey := &chaosMonkey{t: t, rng: rng, srv: srv, k8s: kc, vcs: vcs, log: map[string]int{}, corrupt: map[string]bool{}}
	monkey.events.Store(ctl.changes)
	chaosCtx, stopChaos := context.WithCancel(ctx)
	monkeyDone := make(chan struct{})
	go func() { defer close(monkeyDone); monkey.run(chaosCtx) }()
	progress := func(when string) {
		watcher.mu.Lock()
		defer watcher.mu.Unlock()
		t.Logf("%s: %d Secret states seen, %d Key Vault requests, %d answered 429, %d faults pending",
			when, watcher.states, fakevault.VaultRequests(srv.Counts()), srv.Count(fakevault.OpThrottled), len(srv.Faults()))
	}
	time.Sleep(chaosFor / 2)
	progress("controller stopped")
	monkey.events.Store(nil)
	ctl.stop(t)
	ctl = nil
	time.Sleep(2 * time.Second)
	// The new controller's clock runs two hours ahead: every refresh is due, and the vault listing answers them.
	ctl = startChaosController(t, cfg, 2*time.Hour)
	monkey.events.Store(ctl.changes)
	progress("controller started again")
	time.Sleep(chaosFor / 2)
	stopChaos()
	<-monkeyDone
	progress("chaos over")

	// Calm: faults cleared, but the vault still enforces a budget. Any certificate whose newest version has a
	// bad key gets a good one, and a user refreshes everything.
	srv.ClearFaults()
	srv.SetLimit(200, true)
	for _, vc := range vcs {
		if monkey.corrupt[vc.cert] {
			monkey.rotate(vc, false)
		}
		monkey.refresh(vc)
	}
	latest := map[string]string{}
	for _, vc := range vcs {
		v, err := srv.Latest(vc.cert)
		if err != nil {
			t.Fatal(err)
		}
		latest[vc.cert] = v.Version
	}

	deadline := time.Now().Add(3 * time.Minute)
	for {
		var lagging []string
		for i := range namespaces {
			var vlist vaultcertv1.VaultCertificateList
			if err := kc.List(ctx, &vlist, client.InNamespace(fmt.Sprintf("chaos-%d", i))); err != nil {
				t.Fatal(err)
			}
			for _, vc := range vlist.Items {
				c := meta.FindStatusCondition(vc.Status.Conditions, vaultcertv1.ConditionReady)
				switch {
				case c == nil:
					lagging = append(lagging, vc.Name+": no Ready condition")
				case c.Status != metav1.ConditionTrue || c.Reason != vaultcertv1.ReasonSynced:
					lagging = append(lagging, fmt.Sprintf("%s: Ready=%s %s: %s", vc.Name, c.Status, c.Reason, c.Message))
				case vc.Status.Version != latest[vc.Spec.CertificateName]:
					lagging = append(lagging, fmt.Sprintf("%s: at %s, latest is %s", vc.Name, vc.Status.Version, latest[vc.Spec.CertificateName]))
				}
			}
		}
		if len(lagging) == 0 {
			break
		}
		if time.Now().After(deadline) {
			sort.Strings(lagging)
			t.Fatalf("%d of %d VaultCertificates did not converge; first ones:\n%s", len(lagging), n, strings.Join(lagging[:min(20, len(lagging))], "\n"))
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Every Secret holds the latest version (checked through the API, not only through status).
	for _, vc := range vcs {
		var s corev1.Secret
		if err := kc.Get(ctx, client.ObjectKey{Namespace: vc.ns, Name: vc.name + "-tls"}, &s); err != nil {
			t.Fatal(err)
		}
		if got := s.Annotations[vaultcertv1.AnnotationVersion]; got != latest[vc.cert] {
			t.Errorf("Secret %s/%s-tls holds version %s, want the latest %s", vc.ns, vc.name, got, latest[vc.cert])
		}
	}
	// Let the watcher catch up with the last write before judging.
	eventually(t, "the watcher to see the final Secrets", func() (bool, string) {
		watcher.mu.Lock()
		defer watcher.mu.Unlock()
		behind := 0
		for _, vc := range vcs {
			versions, _ := srv.Versions(vc.cert)
			if idx, ok := watcher.highest[vc.ns+"/"+vc.name+"-tls"]; !ok || versions[idx].Version != latest[vc.cert] {
				behind++
			}
		}
		return behind == 0, fmt.Sprintf("%d Secrets not yet seen at their latest version", behind)
	})
	stopWatch()
	<-watchDone

	counts := srv.Counts()
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var byOp []string
	for _, k := range keys {
		byOp = append(byOp, fmt.Sprintf("%s=%d", k, counts[k]))
	}
	var chaos []string
	for k, v := range monkey.log {
		chaos = append(chaos, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(chaos)
	t.Logf("chaos injected: %s", strings.Join(chaos, ", "))
	t.Logf("Key Vault calls: %d in total (%.1f per certificate), %d answered 429; by operation: %s",
		fakevault.VaultRequests(counts), float64(fakevault.VaultRequests(counts))/float64(n), counts[fakevault.OpThrottled], strings.Join(byOp, ", "))
	watcher.mu.Lock()
	defer watcher.mu.Unlock()
	t.Logf("invariant watcher: %d Secret states checked, %d violations", watcher.states, len(watcher.violations))
	if len(watcher.violations) > 0 {
		t.Errorf("invariant violations:\n%s", strings.Join(watcher.violations[:min(30, len(watcher.violations))], "\n"))
	}
	// The restarted controller's refreshes were due by its clock: listings must have answered some of them.
	if counts[fakevault.OpListCertificates] == 0 {
		t.Errorf("no vault listing ran: the chaos did not exercise list-based change detection")
	}
	if monkey.log["rotation announced by an event"] == 0 {
		t.Errorf("no rotation was announced by an event: the chaos did not exercise event-driven rotation")
	}
	if watcher.states < n {
		t.Errorf("the watcher saw %d Secret states for %d Secrets: it missed some", watcher.states, n)
	}
}

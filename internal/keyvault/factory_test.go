package keyvault

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/vaultcert/vaultcert/internal/fakevault"
)

// hostBudget reads the Governor's bucket for host; ok is false when it keeps no state for the host.
func hostBudget(g *Governor, host string) (limit rate.Limit, burst int, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s, ok := g.hosts[normalizeHost(host)]
	if !ok {
		return 0, 0, false
	}
	return s.limiter.Limit(), s.limiter.Burst(), true
}

// locked returns read's answer with mu held: a peek at a Governor's or a Factory's state.
func locked[T any](mu *sync.Mutex, read func() T) T {
	mu.Lock()
	defer mu.Unlock()
	return read()
}

// hostSeries counts the series of this package's metrics labelled with host.
func hostSeries(t *testing.T, host string) int {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range families {
		switch mf.GetName() {
		case MetricRequestsTotal, MetricRequestDuration, MetricThrottledTotal:
			for _, m := range mf.GetMetric() {
				if labels(m)["vault"] == host {
					n++
				}
			}
		}
	}
	return n
}

// A connection's rateLimit limits that connection only: another connection to the same vault keeps its
// pace, and the vault's shared budget changes only for a connection with SetsHostBudget.
func TestConnectionRateLimit(t *testing.T) {
	e := newWebEnv(t)
	// A short MaxWait: a request its budget would delay fails fast instead of waiting.
	gov := NewGovernor(GovernorOptions{MaxWait: 50 * time.Millisecond})
	f := NewFactory(FactoryOptions{Governor: gov, retry: fastRetry()})
	host := e.host()
	ctx := ctxT(t)

	slowCfg := e.config(testSecret)
	slowCfg.RequestsPerSecond, slowCfg.Burst = 1, 2 // the challenge probe and one call
	slow, err := f.Client("VaultConnection/a/slow", slowCfg)
	if err != nil {
		t.Fatal(err)
	}
	other, err := f.Client("VaultConnection/b/other", e.config(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := slow.GetCertificate(ctx, "web", ""); err != nil {
		t.Fatal(err)
	}
	e.s.ResetCounts()
	_, err = slow.GetCertificate(ctx, "web", "")
	th, ok := AsThrottled(err)
	if !ok || th.Code != CodeClientRateLimited || th.Vault != host || th.RetryAfter <= 0 {
		t.Fatalf("over its own budget: %T %v", err, err)
	}
	if n := e.s.Count(fakevault.OpGetCertificate); n != 0 {
		t.Errorf("a locally limited call reached the vault %d times", n)
	}
	for i := range 20 {
		if _, err := other.GetCertificate(ctx, "web", ""); err != nil {
			t.Fatalf("the other connection's call %d: %v", i, err)
		}
	}
	if lim, burst, _ := hostBudget(gov, host); lim != DefaultRequestsPerSecond || burst != DefaultBurst {
		t.Errorf("a namespaced connection changed the vault budget to %v/%d", lim, burst)
	}
	if !gov.PausedUntil(host).IsZero() {
		t.Error("a connection's own limit paused the vault")
	}

	// A ClusterVaultConnection with SetsHostBudget sets the shared budget, and gives it back when it stops
	// asking or is forgotten: to SetLimit's budget (configuration) when there is one.
	gov.SetLimit(host, 300, 30)
	clusterCfg := e.config(testSecret)
	clusterCfg.RequestsPerSecond, clusterCfg.Burst, clusterCfg.SetsHostBudget = 50, 10, true
	const cluster = "ClusterVaultConnection/shared"
	if _, err := f.Client(cluster, clusterCfg); err != nil {
		t.Fatal(err)
	}
	if lim, burst, _ := hostBudget(gov, host); lim != 50 || burst != 10 {
		t.Errorf("SetsHostBudget: vault budget %v/%d, want 50/10", lim, burst)
	}
	clusterCfg.SetsHostBudget = false
	if _, err := f.Client(cluster, clusterCfg); err != nil {
		t.Fatal(err)
	}
	if lim, burst, _ := hostBudget(gov, host); lim != 300 || burst != 30 {
		t.Errorf("after SetsHostBudget was cleared: vault budget %v/%d, want SetLimit's 300/30", lim, burst)
	}
	clusterCfg.SetsHostBudget = true
	if _, err := f.Client(cluster, clusterCfg); err != nil {
		t.Fatal(err)
	}
	f.Forget(cluster)
	if lim, burst, _ := hostBudget(gov, host); lim != 300 || burst != 30 {
		t.Errorf("after the cluster connection was forgotten: vault budget %v/%d, want 300/30", lim, burst)
	}

	// Removing a connection's limit applies at once, without a rebuild.
	slowCfg.RequestsPerSecond, slowCfg.Burst = 0, 0
	again, err := f.Client("VaultConnection/a/slow", slowCfg)
	if err != nil || again != slow {
		t.Fatalf("limit change: %v, rebuilt: %v", err, again != slow)
	}
	if _, err := slow.GetCertificate(ctx, "web", ""); err != nil {
		t.Fatalf("without its limit: %v", err)
	}
}

// Forget drops a host's Governor state and metric series with the host's last client, and not before.
func TestForgetDropsHostState(t *testing.T) {
	e := newWebEnv(t)
	host := e.host()
	ctx := ctxT(t)
	clients := map[string]Client{}
	for _, key := range []string{"VaultConnection/a/one", "VaultConnection/b/two"} {
		c := e.clientFor(t, key, e.config(testSecret))
		if _, err := c.GetCertificate(ctx, "web", ""); err != nil {
			t.Fatal(err)
		}
		clients[key] = c
	}
	e.gov.Throttled(host, time.Minute)
	throttledTotal.WithLabelValues(host).Inc()
	if _, _, ok := hostBudget(e.gov, host); !ok || hostSeries(t, host) == 0 {
		t.Fatal("no state or series to drop")
	}

	e.f.Forget("VaultConnection/a/one")
	if e.gov.PausedUntil(host).IsZero() || hostSeries(t, host) == 0 {
		t.Fatal("the state went while a client of the host remains")
	}
	if _, err := clients["VaultConnection/b/two"].GetCertificate(ctx, "web", ""); !IsThrottled(err) {
		t.Fatalf("the remaining client no longer sees the pause: %v", err)
	}

	e.f.Forget("VaultConnection/b/two")
	if _, _, ok := hostBudget(e.gov, host); ok || !e.gov.PausedUntil(host).IsZero() {
		t.Error("the Governor kept the host's state after its last client")
	}
	if n := hostSeries(t, host); n != 0 {
		t.Errorf("%d metric series of the host remain", n)
	}
	if refs := locked(&e.gov.mu, func() int { return len(e.gov.refs) }); refs != 0 {
		t.Errorf("%d host references remain", refs)
	}

	// A budget set with SetLimit is configuration: it outlives the state.
	e.gov.SetLimit(host, 7, 3)
	c := e.clientFor(t, "VaultConnection/c/three", e.config(testSecret))
	e.f.Forget("VaultConnection/c/three")
	if _, err := c.GetCertificate(ctx, "web", ""); err != nil { // in flight after Forget: still works
		t.Fatal(err)
	}
	if lim, burst, _ := hostBudget(e.gov, host); lim != 7 || burst != 3 {
		t.Errorf("SetLimit's budget was lost: %v/%d", lim, burst)
	}
	// The state that late call recreated is swept by the next Retain.
	e.f.Retain(func(string) bool { return true })
	if _, _, ok := hostBudget(e.gov, host); ok {
		t.Error("Retain left the state of a host without clients")
	}
}

// Retain forgets the clients whose keys are no longer wanted.
func TestFactoryRetain(t *testing.T) {
	e := newTestEnv(t)
	keys := []string{"VaultConnection/a/x", "VaultConnection/b/y", "ClusterVaultConnection/z"}
	for _, k := range keys {
		if _, err := e.f.Client(k, e.config(testSecret)); err != nil {
			t.Fatal(err)
		}
	}
	kept := e.clientFor(t, keys[1], e.config(testSecret))
	if n := e.f.Retain(func(k string) bool { return k == keys[1] }); n != 2 {
		t.Fatalf("Retain forgot %d, want 2", n)
	}
	if left := locked(&e.f.mu, func() int { return len(e.f.entries) }); left != 1 {
		t.Errorf("%d clients cached, want 1", left)
	}
	if again, _ := e.f.Client(keys[1], e.config(testSecret)); again != kept {
		t.Error("Retain dropped a kept client")
	}
	if again, _ := e.f.Client(keys[0], e.config(testSecret)); again == nil {
		t.Error("a forgotten key cannot be built again")
	}
}

// The metric label of vault hosts is bounded: hosts beyond the limit share "other", and a forgotten host's
// slot is free again.
func TestHostLabelsAreBounded(t *testing.T) {
	hostLabels.mu.Lock()
	saved := maxHostLabels
	maxHostLabels = len(hostLabels.named) + 2
	hostLabels.mu.Unlock()
	t.Cleanup(func() {
		hostLabels.mu.Lock()
		maxHostLabels = saved
		hostLabels.mu.Unlock()
	})
	a, b, c := "a.label.test:8443", "b.label.test:8443", "c.label.test:8443"
	hostLabels.acquire(a)
	hostLabels.acquire(a)
	hostLabels.acquire(b)
	hostLabels.acquire(c)
	if hostLabels.label(a) != a || hostLabels.label(b) != b || hostLabels.label(c) != otherHostLabel {
		t.Fatalf("labels %q %q %q", hostLabels.label(a), hostLabels.label(b), hostLabels.label(c))
	}
	if hostLabels.label("never.acquired:8443") != otherHostLabel {
		t.Error("a host without clients got its own label")
	}
	requestsTotal.WithLabelValues(a, "GetCertificate", "200").Inc()
	hostLabels.release(a)
	if hostLabels.label(a) != a || hostSeries(t, a) == 0 {
		t.Fatal("a host lost its label while a client remains")
	}
	hostLabels.release(a)
	if hostLabels.label(a) != otherHostLabel || hostSeries(t, a) != 0 {
		t.Fatal("the last release kept the label or its series")
	}
	hostLabels.release(c)
	hostLabels.acquire(c)
	if hostLabels.label(c) != c {
		t.Error("a freed slot was not reused")
	}
	hostLabels.release(b)
	hostLabels.release(c)
}

// A build that hangs for one key (a costly credential to parse) does not hold up other keys; callers of the
// same key wait for that one build and share its client.
func TestFactoryBuildLockIsPerKey(t *testing.T) {
	e := newTestEnv(t)
	f := NewFactory(FactoryOptions{Governor: e.gov, retry: fastRetry()})
	const slowKey = "VaultConnection/ns/slow"
	started, release := make(chan struct{}), make(chan struct{})
	var startOnce sync.Once
	var slowBuilds atomic.Int32
	f.buildHook = func(key string) {
		if key == slowKey {
			slowBuilds.Add(1)
			startOnce.Do(func() { close(started) })
			<-release
		}
	}
	type result struct {
		c   Client
		err error
	}
	slow := make(chan result, 2)
	for range 2 {
		go func() {
			c, err := f.Client(slowKey, e.config(testSecret))
			slow <- result{c, err}
		}()
	}
	<-started

	done := make(chan error, 1)
	go func() {
		_, err := f.Client("VaultConnection/ns/fast", e.config(testSecret))
		if err == nil {
			f.Forget("VaultConnection/ns/unrelated")
			f.Retain(func(k string) bool { return true })
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("a build of another key blocked Client, Forget or Retain")
	}

	close(release)
	first, second := <-slow, <-slow
	if first.err != nil || second.err != nil {
		t.Fatal(first.err, second.err)
	}
	if first.c != second.c || slowBuilds.Load() != 1 {
		t.Fatalf("%d builds for one key; same client: %v", slowBuilds.Load(), first.c == second.c)
	}
}

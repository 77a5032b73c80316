package main

// The memory phase: the controller's memory with Secrets it must not hold. Anyone may label a Secret
// app.kubernetes.io/managed-by=vaultcert, so a tenant can put any number of large labelled Secrets in the
// controller's watch; and a cluster has many Secrets that are none of vaultcert's business. The controller's RSS
// with either should stay within 10 % of its RSS without them.

import (
	"context"
	"crypto/rand"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
)

const (
	junkNamespace      = "bench-junk"
	unrelatedNamespace = "bench-unrelated"
	unrelatedSize      = 1024 // bytes of random data in each unrelated Secret
	memoryTarget       = 1.10 // RSS with the Secrets / RSS without them
	settleWindow       = 10   // samples, one a second, whose RSS must agree within settleSpread
	settleSpread       = 0.02 // of the window's median (or 1 MiB, whichever is larger)
	settleLimit        = 3 * time.Minute
)

// byteSize is a flag holding a size in bytes: "1MiB", "512KiB", "1048576".
type byteSize int64

func (b *byteSize) String() string {
	switch {
	case *b > 0 && *b%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", *b>>20)
	case *b > 0 && *b%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", *b>>10)
	}
	return fmt.Sprintf("%d", int64(*b))
}

func (b *byteSize) Set(s string) error {
	q, err := resource.ParseQuantity(strings.TrimSuffix(strings.TrimSpace(s), "B"))
	if err != nil {
		return err
	}
	*b = byteSize(q.Value())
	return nil
}

// memoryState is the controller's memory at one state of the phase: medians over a settled window.
type memoryState struct {
	name      string
	rss, heap float64 // bytes: VmRSS, and go_memstats_heap_inuse_bytes from the controller's metrics
	settled   bool    // false: the window never settled within settleLimit, the last window is reported
}

// memoryPhase measures the controller's memory as it is, then after creating o.junkSecrets labelled Secrets of
// o.junkSize random bytes each, then after also creating o.unrelated small Secrets without the label.
func memoryPhase(ctx context.Context, k8s client.Client, pid int, metricsAddr string, o options, alive func() error) ([]memoryState, error) {
	fmt.Printf("memory: baseline (waiting until the controller's RSS settles)\n")
	base, err := settle(pid, metricsAddr, alive, fmt.Sprintf("baseline: %d VaultCertificates synced", o.n))
	if err != nil {
		return nil, err
	}
	states := []memoryState{base}
	for _, ns := range []string{junkNamespace, unrelatedNamespace} {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return nil, err
		}
	}

	if o.junkSecrets > 0 {
		fmt.Printf("memory: creating %d Secrets labelled %s=%s, %s of random data each\n",
			o.junkSecrets, vaultcertv1.LabelManagedBy, vaultcertv1.ManagedByValue, mib(float64(o.junkSize)))
		before, err := reconciles(metricsAddr)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		// Each names its own (absent) VaultCertificate, so each queues one reconcile: when the controller has
		// run them all, its informer has seen every junk Secret.
		if err := parallel(o.junkSecrets, func(i int) error {
			return k8s.Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("junk-%05d", i), Namespace: junkNamespace, Labels: map[string]string{
					vaultcertv1.LabelManagedBy: vaultcertv1.ManagedByValue, vaultcertv1.LabelCertificate: fmt.Sprintf("junk-%05d", i)}},
				Data: junkData(int(o.junkSize)),
			})
		}); err != nil {
			return nil, fmt.Errorf("creating junk Secrets (the API server takes at most 1 MiB of data per Secret): %w", err)
		}
		fmt.Printf("memory: created in %s; waiting for the controller to reconcile them\n", time.Since(start).Round(time.Millisecond))
		for deadline := time.Now().Add(o.timeout); ; time.Sleep(time.Second) {
			now, err := reconciles(metricsAddr)
			if err != nil {
				return nil, err
			}
			if now-before >= float64(o.junkSecrets) {
				break
			}
			if err := alive(); err != nil {
				return nil, err
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("memory: the controller reconciled %.0f of %d junk Secrets within %s", now-before, o.junkSecrets, o.timeout)
			}
		}
		s, err := settle(pid, metricsAddr, alive, fmt.Sprintf("+ %d Secrets labelled managed-by=vaultcert, %s of data each", o.junkSecrets, mib(float64(o.junkSize))))
		if err != nil {
			return nil, err
		}
		states = append(states, s)
	}

	if o.unrelated > 0 {
		fmt.Printf("memory: creating %d Secrets without the label, %d bytes each\n", o.unrelated, unrelatedSize)
		start := time.Now()
		if err := parallel(o.unrelated, func(i int) error {
			return k8s.Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("unrelated-%05d", i), Namespace: unrelatedNamespace},
				Data:       map[string][]byte{"data": random(unrelatedSize)},
			})
		}); err != nil {
			return nil, err
		}
		fmt.Printf("memory: created in %s\n", time.Since(start).Round(time.Millisecond))
		s, err := settle(pid, metricsAddr, alive, fmt.Sprintf("+ %d unrelated Secrets (%d bytes, no label)", o.unrelated, unrelatedSize))
		if err != nil {
			return nil, err
		}
		states = append(states, s)
	}
	return states, nil
}

// junkData is size random bytes under tls.crt and junk, as a tenant might fake a managed Secret.
func junkData(size int) map[string][]byte {
	b := random(size)
	return map[string][]byte{"tls.crt": b[:size/2], "junk": b[size/2:]}
}

func random(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// settle samples the controller's RSS and Go heap once a second until the last settleWindow RSS samples agree
// within settleSpread (or settleLimit passes), and returns the medians of that window.
func settle(pid int, metricsAddr string, alive func() error, name string) (memoryState, error) {
	var rss, heap []float64
	for deadline := time.Now().Add(settleLimit); ; time.Sleep(time.Second) {
		if err := alive(); err != nil {
			return memoryState{}, err
		}
		kb, err := procKB(pid, "VmRSS")
		if err != nil {
			return memoryState{}, err
		}
		sums, err := scrape(metricsAddr)
		if err != nil {
			return memoryState{}, err
		}
		rss, heap = append(rss, float64(kb)*1024), append(heap, sums["go_memstats_heap_inuse_bytes"])
		if len(rss) < settleWindow {
			continue
		}
		rss, heap = rss[len(rss)-settleWindow:], heap[len(heap)-settleWindow:]
		lo, hi, mid := spread(rss)
		settled := hi-lo <= max(settleSpread*mid, 1<<20)
		if settled || time.Now().After(deadline) {
			_, _, h := spread(heap)
			fmt.Printf("memory: %s: RSS %s, Go heap in use %s\n", name, mib(mid), mib(h))
			return memoryState{name: name, rss: mid, heap: h, settled: settled}, nil
		}
	}
}

// spread returns the minimum, maximum and median of xs.
func spread(xs []float64) (lo, hi, median float64) {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[0], s[len(s)-1], s[len(s)/2]
}

// reconciles is the controller's count of VaultCertificate reconciles so far.
func reconciles(metricsAddr string) (float64, error) {
	sums, err := scrape(metricsAddr)
	return sums["controller_runtime_reconcile_total"], err
}

func mib(bytes float64) string { return fmt.Sprintf("%.1f MiB", bytes/(1<<20)) }

// reportMemory prints the memory phase as a Markdown table, with the ratios to the baseline and the verdict
// against the target.
func reportMemory(states []memoryState) {
	if len(states) == 0 {
		return
	}
	base := states[0]
	fmt.Printf("\n## memory under hostile Secrets\n\n")
	fmt.Printf("RSS: the controller's VmRSS; Go heap in use: its go_memstats_heap_inuse_bytes. Each the median of %d samples, "+
		"one a second, once the RSS samples agreed within %.0f %%.\n\n", settleWindow, 100*settleSpread)
	fmt.Printf("| state | RSS | RSS / baseline | Go heap in use | heap / baseline |\n|---|---|---|---|---|\n")
	pass := true
	for _, s := range states {
		note := ""
		if !s.settled {
			note = fmt.Sprintf(" (not settled within %s)", settleLimit)
		}
		fmt.Printf("| %s%s | %s | %.2f | %s | %.2f |\n", s.name, note, mib(s.rss), s.rss/base.rss, mib(s.heap), s.heap/max(base.heap, 1))
		pass = pass && s.rss <= memoryTarget*base.rss
	}
	verdict := "PASS"
	if !pass {
		verdict = "FAIL"
	}
	fmt.Printf("\ntarget, RSS within %.0f %% of the baseline: %s\n", 100*(memoryTarget-1), verdict)
}

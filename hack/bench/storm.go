package main

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/fakevault"
)

// stormResult is what a storm cost and left behind.
type stormResult struct {
	certificates int
	limit        int // the vault's budget during the storm, per window
	phase        phase
	// minimum is the shortest time the storm's budget allows for the calls admitted.
	minimum time.Duration
	// stuck are the VaultCertificates not Ready at their certificate's latest version when the wait ended.
	stuck int
	// stuckReasons counts the Ready reasons of the stuck ones.
	stuckReasons map[string]int
}

// stormPhase rotates o.storm certificates at once and asks every one of them to refresh (a user's bulk
// annotation after a CA change, say), with the vault's budget cut to o.stormLimit per window: demand above
// the budget. It counts the 429s the vault sent and the VaultCertificates still not at their latest version
// after o.timeout: the controller's own pacing should keep the first near zero and the second at zero.
func stormPhase(ctx context.Context, k8s client.Client, vault *fakevault.Server, names []string, o options,
	alive func() error) (stormResult, error) {
	names = names[:min(o.storm, len(names))]
	res := stormResult{certificates: len(names), limit: o.stormLimit, stuckReasons: map[string]int{}}
	fmt.Printf("storm: %d rotations and refreshes at once, vault budget %d per %s\n", len(names), o.stormLimit, o.window)
	for _, n := range names {
		if _, err := vault.Rotate(n); err != nil {
			return res, err
		}
	}
	vault.SetLimit(o.stormLimit, true)
	defer vault.SetLimit(o.limit, true)
	vault.ResetCounts()
	start := time.Now()
	if err := annotateRefresh(ctx, k8s, names, start); err != nil {
		return res, err
	}
	_, waitErr := waitVersions(ctx, k8s, vault, benchNamespace, names, nil, o.timeout, alive)
	res.phase = measure("storm", time.Since(start), vault)
	res.minimum = time.Duration(float64(res.phase.admitted) / (float64(o.stormLimit) / o.window.Seconds()) * float64(time.Second))
	if waitErr == nil {
		return res, nil
	}
	if err := alive(); err != nil {
		return res, err
	}
	// Not an error of the bench: count who is stuck, and why, for the report.
	var list vaultcertv1.VaultCertificateList
	if err := k8s.List(ctx, &list, client.InNamespace(benchNamespace)); err != nil {
		return res, err
	}
	inStorm := map[string]bool{}
	for _, n := range names {
		inStorm[n] = true
	}
	for _, vc := range list.Items {
		if !inStorm[vc.Name] {
			continue
		}
		latest, err := vault.Latest(vc.Spec.CertificateName)
		c := meta.FindStatusCondition(vc.Status.Conditions, vaultcertv1.ConditionReady)
		if err == nil && vc.Status.Version == latest.Version && c != nil && c.Status == metav1.ConditionTrue {
			continue
		}
		res.stuck++
		reason := "no Ready condition"
		if c != nil {
			reason = string(c.Status) + " " + c.Reason
		}
		res.stuckReasons[reason]++
	}
	return res, nil
}

// reportStorm prints the storm's rows.
func reportStorm(o options, s stormResult) {
	if s.certificates == 0 {
		return
	}
	fmt.Printf("| storm: %d certificates rotated and refreshed at once, vault budget %d per %s | all at their new version in %s; minimum the budget allows for the %d calls admitted %s (ratio %.2f); %.2f calls per certificate (%s) |\n",
		s.certificates, s.limit, o.window, s.phase.elapsed.Round(time.Millisecond), s.phase.admitted, s.minimum.Round(time.Millisecond),
		float64(s.phase.elapsed)/float64(max(s.minimum, time.Millisecond)), float64(s.phase.calls)/float64(s.certificates), breakdown(s.phase.counts))
	fmt.Printf("| storm: 429s received / VaultCertificates stuck after %s | %d / %d %v |\n", o.timeout, s.phase.throttle, s.stuck, s.stuckReasons)
}

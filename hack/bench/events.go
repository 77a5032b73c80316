package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/fakevault"
)

// eventNamespace holds the rotation phases' VaultCertificates: polling them (every 50 ms) lists 100 objects, not
// the N others, whose listing alone would take seconds at 10,000 and bound the latency measured.
const eventNamespace = "bench-events"

// eventSecret is the shared secret the bench's Event Grid deliveries carry.
const eventSecret = "bench-event-grid-shared-secret-0123456789"

// rotationLatencies are the times from a rotation in the vault to the VaultCertificate reporting the new version.
type rotationLatencies struct {
	// byEventQuiet: by event while the other VaultCertificates keep their default 1h refresh interval;
	// byEventLoaded: by event while every one of them refreshes every -refresh-interval (after the interval phase).
	byEventQuiet, byEventLoaded, byPolling []time.Duration
}

// eventCertificates are the rotation phases' own certificates, on a connection that names the fake vault by DNS
// name (https://localhost:PORT/): Event Grid names vaults by DNS name.
type eventCertificates struct {
	names []string
	port  string
}

// setUpEventCertificates seeds o.events certificates and their VaultCertificates (refreshInterval
// o.refreshInterval) through a ClusterVaultConnection (the only kind that may skip the challenge's resource
// check, which a vault outside vault.azure.net needs), and waits until they are synced.
func setUpEventCertificates(ctx context.Context, k8s client.Client, vault *fakevault.Server, o options, alive func() error) (*eventCertificates, error) {
	u, err := url.Parse(vault.URL())
	if err != nil {
		return nil, err
	}
	ec := &eventCertificates{names: make([]string, o.events), port: u.Port()}
	vaultURL := "https://localhost:" + ec.port + "/"
	for i := range ec.names {
		ec.names[i] = fmt.Sprintf("evt-%04d", i)
		if _, err := vault.Seed(fakevault.CertSpec{Name: ec.names[i], KeyType: o.keyType}); err != nil {
			return nil, err
		}
	}
	fmt.Printf("rotation phases: %d VaultCertificates on %s\n", o.events, vaultURL)
	conn := &vaultcertv1.ClusterVaultConnection{ObjectMeta: metav1.ObjectMeta{Name: "bench-events"},
		Spec: vaultcertv1.ClusterVaultConnectionSpec{ConnectionSpec: vaultcertv1.ConnectionSpec{
			VaultURL: vaultURL,
			Auth: &vaultcertv1.ConnectionAuth{ServicePrincipal: &vaultcertv1.ServicePrincipalAuth{TenantID: vault.TenantID(), ClientID: benchClientID,
				ClientSecretRef: &vaultcertv1.SecretKeyReference{Name: "kv-credentials", Namespace: benchNamespace, Key: "clientSecret"}}},
			Cloud: &vaultcertv1.CloudConfig{AuthorityHost: vault.AuthorityHost(), CABundle: string(vault.CAPEM()),
				DisableInstanceDiscovery: true, DisableChallengeResourceVerification: true},
		}}}
	if err := k8s.Create(ctx, conn); err != nil {
		return nil, err
	}
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: eventNamespace}}); err != nil {
		return nil, err
	}
	interval := metav1.Duration{Duration: o.refreshInterval}
	if err := parallel(len(ec.names), func(i int) error {
		return k8s.Create(ctx, &vaultcertv1.VaultCertificate{
			ObjectMeta: metav1.ObjectMeta{Name: ec.names[i], Namespace: eventNamespace},
			Spec: vaultcertv1.VaultCertificateSpec{ConnectionRef: vaultcertv1.ConnectionReference{Kind: vaultcertv1.ClusterVaultConnectionKind, Name: conn.Name},
				CertificateName: ec.names[i], SecretName: ec.names[i] + "-tls", RefreshInterval: &interval},
		})
	}); err != nil {
		return nil, err
	}
	if _, err := waitVersions(ctx, k8s, vault, eventNamespace, ec.names, nil, o.timeout, alive); err != nil {
		return nil, err
	}
	// The reconcile each Secret write triggers registers the VaultCertificate with its connection's listing.
	time.Sleep(3 * time.Second)
	return ec, nil
}

// rotateByEvent rotates every event certificate with one Event Grid delivery to the webhook at eventAddr each,
// and returns the latencies to the new version.
func (ec *eventCertificates) rotateByEvent(ctx context.Context, k8s client.Client, vault *fakevault.Server, o options, eventAddr string,
	alive func() error) ([]time.Duration, error) {
	rotated := map[string]time.Time{}
	for _, n := range ec.names {
		v, err := vault.Rotate(n)
		if err != nil {
			return nil, err
		}
		rotated[n] = time.Now()
		if err := deliver(ctx, eventAddr, ec.port, n, v.Version); err != nil {
			return nil, err
		}
	}
	return waitVersions(ctx, k8s, vault, eventNamespace, ec.names, rotated, o.timeout, alive)
}

// rotateByPolling rotates every event certificate without an event: the listing notices within the interval.
func (ec *eventCertificates) rotateByPolling(ctx context.Context, k8s client.Client, vault *fakevault.Server, o options,
	alive func() error) ([]time.Duration, error) {
	fmt.Printf("rotation by polling: %d VaultCertificates, refreshInterval %s, no event\n", o.events, o.refreshInterval)
	rotated := map[string]time.Time{}
	for _, n := range ec.names {
		if _, err := vault.Rotate(n); err != nil {
			return nil, err
		}
		rotated[n] = time.Now()
	}
	return waitVersions(ctx, k8s, vault, eventNamespace, ec.names, rotated, o.timeout+2*o.refreshInterval, alive)
}

// deliver posts one CertificateNewVersionCreated event in the Event Grid schema, as Event Grid would.
func deliver(ctx context.Context, addr, port, name, version string) error {
	body := fmt.Sprintf(`[{"id":"%s-%s","topic":"/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/localhost",`+
		`"subject":%q,"eventType":"Microsoft.KeyVault.CertificateNewVersionCreated","eventTime":%q,"dataVersion":"1","metadataVersion":"1",`+
		`"data":{"Id":"https://localhost:%s/certificates/%s/%s","VaultName":"localhost","ObjectType":"Certificate","ObjectName":%q,"Version":%q}}]`,
		name, version, name, time.Now().UTC().Format(time.RFC3339Nano), port, name, version, name, version)
	// A 429 (the webhook's rate limit) is retried after its Retry-After, as Event Grid retries a delivery; the
	// latency measured includes the wait.
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/", bytes.NewBufferString(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+eventSecret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK:
			return nil
		case resp.StatusCode == http.StatusTooManyRequests && attempt < 10:
			wait := time.Second
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
				wait = time.Duration(s) * time.Second
			}
			time.Sleep(wait)
		default:
			return fmt.Errorf("the webhook answered %d to the event for %s", resp.StatusCode, name)
		}
	}
}

// waitVersions polls until every named VaultCertificate is Ready at its certificate's latest version, and returns
// for each the time since rotated[name] (nil rotated: no latencies). The 50 ms poll bounds the resolution.
func waitVersions(ctx context.Context, k8s client.Client, vault *fakevault.Server, namespace string, names []string, rotated map[string]time.Time,
	timeout time.Duration, alive func() error) ([]time.Duration, error) {
	want := map[string]string{}
	for _, n := range names {
		v, err := vault.Latest(n)
		if err != nil {
			return nil, err
		}
		want[n] = v.Version
	}
	var latencies []time.Duration
	deadline := time.Now().Add(timeout)
	for len(want) > 0 {
		var list vaultcertv1.VaultCertificateList
		if err := k8s.List(ctx, &list, client.InNamespace(namespace)); err != nil {
			return nil, err
		}
		now := time.Now()
		for _, vc := range list.Items {
			if v, ok := want[vc.Name]; ok && vc.Status.Version == v && meta.IsStatusConditionTrue(vc.Status.Conditions, vaultcertv1.ConditionReady) {
				delete(want, vc.Name)
				if at, ok := rotated[vc.Name]; ok {
					latencies = append(latencies, now.Sub(at))
				}
			}
		}
		if err := alive(); err != nil {
			return nil, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d VaultCertificates did not reach their latest version within %s", len(want), timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	return latencies, nil
}

// percentile is the p-th percentile (0 < p <= 100) of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// reportRotations prints the rotation latencies.
func reportRotations(o options, lat rotationLatencies) {
	row := func(what string, l []time.Duration) {
		if len(l) == 0 {
			return
		}
		fmt.Printf("| rotation to Secret, %s (%d certificates) | p50 %s, p99 %s, max %s |\n", what, len(l),
			percentile(l, 50).Round(time.Millisecond), percentile(l, 99).Round(time.Millisecond), l[len(l)-1].Round(time.Millisecond))
	}
	row(fmt.Sprintf("by Event Grid event, the other %d VaultCertificates at the default 1h interval", o.n), lat.byEventQuiet)
	if o.steadyWindow > 0 {
		row(fmt.Sprintf("by Event Grid event, while the other %d refresh every %s", o.n, o.refreshInterval), lat.byEventLoaded)
	} else {
		row("by Event Grid event, again (no interval phase: the others still at the default interval)", lat.byEventLoaded)
	}
	row(fmt.Sprintf("by polling (refreshInterval %s, no event)", o.refreshInterval), lat.byPolling)
}

// eventSecretsFile is the webhook's secrets file for the controller.
func eventSecretsFile(work string) (string, error) {
	path := filepath.Join(work, "eventgrid-secrets")
	return path, os.WriteFile(path, []byte(eventSecret+"\n"), 0o600)
}

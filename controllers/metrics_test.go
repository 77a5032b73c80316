package controllers_test

import (
	"net/url"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/fakevault"
	"github.com/vaultcert/vaultcert/internal/keyvault"
)

// scrape gathers controller-runtime's registry, which is what the /metrics endpoint serves.
func scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	out := make(map[string]*dto.MetricFamily, len(families))
	for _, f := range families {
		out[f.GetName()] = f
	}
	return out
}

// series finds the series of a family whose labels include want, or nil.
func series(fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		return m
	}
	return nil
}

// value is a counter's or gauge's value, 0 when the series does not exist yet.
func value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	m := series(fams, name, labels)
	switch {
	case m == nil:
		return 0
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

// TestMetrics scrapes the metrics a user's dashboards and alerts rely on after a sync that met one 429.
func TestMetrics(t *testing.T) {
	ns := newNamespace(t, nil)
	newConnection(t, ns)
	name := uniqueName("metrics")
	v, err := vault.Seed(fakevault.CertSpec{Name: name, DNSNames: []string{"metrics.example.com"}, ChainDepth: 2})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(vault.URL())
	if err != nil {
		t.Fatal(err)
	}
	host := strings.ToLower(u.Host)
	before := scrape(t)

	// The first authenticated read of this certificate (a first sync reads the key material: GetSecret) is
	// throttled (no Retry-After: the governor backs off).
	vault.InjectFault(fakevault.Fault{Operation: fakevault.OpGetSecret, Name: name, Status: 429, Times: 1})
	newCertificate(t, ns, name)
	newCertificate(t, ns, uniqueName("metrics-missing"), func(vc *vaultcertv1.VaultCertificate) {
		vc.Name, vc.Spec.SecretName = "missing", "missing-tls"
	})
	waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	waitReady(t, ns, "missing", metav1.ConditionFalse, vaultcertv1.ReasonCertificateNotFound)

	var after map[string]*dto.MetricFamily
	eventually(t, "metrics of the sync", func() (bool, string) {
		after = scrape(t)
		if value(after, "vaultcert_certificate_ready", map[string]string{"namespace": ns, "name": "web"}) != 1 {
			return false, "vaultcert_certificate_ready{web} is not 1"
		}
		return true, ""
	})

	delta := func(name string, labels map[string]string) float64 {
		return value(after, name, labels) - value(before, name, labels)
	}
	for _, c := range []struct {
		op, code string
	}{
		{"GetSecret", "429"},
		{"GetSecret", "200"},
	} {
		labels := map[string]string{"vault": host, "operation": c.op, "code": c.code}
		if d := delta(keyvault.MetricRequestsTotal, labels); d < 1 {
			t.Errorf("%s%v grew by %v, want >= 1", keyvault.MetricRequestsTotal, labels, d)
		}
	}
	if d := delta(keyvault.MetricRequestDuration, map[string]string{"vault": host, "operation": "GetSecret"}); d < 2 {
		t.Errorf("%s{GetSecret} recorded %v new observations, want >= 2 (the 429 and the success)", keyvault.MetricRequestDuration, d)
	}
	if d := delta(keyvault.MetricThrottledTotal, map[string]string{"vault": host}); d < 1 {
		t.Errorf("%s{vault=%s} grew by %v, want >= 1 after an injected 429", keyvault.MetricThrottledTotal, host, d)
	}

	got := value(after, "vaultcert_certificate_expiration_timestamp_seconds", map[string]string{"namespace": ns, "name": "web"})
	if want := float64(v.Leaf.NotAfter.Unix()); got != want {
		t.Errorf("vaultcert_certificate_expiration_timestamp_seconds = %v, want the leaf's notAfter %v", got, want)
	}
	if series(after, "vaultcert_certificate_ready", map[string]string{"namespace": ns, "name": "missing"}) == nil ||
		value(after, "vaultcert_certificate_ready", map[string]string{"namespace": ns, "name": "missing"}) != 0 {
		t.Errorf("vaultcert_certificate_ready{missing} should exist and be 0")
	}
	for _, result := range []string{"written", vaultcertv1.ReasonThrottled, vaultcertv1.ReasonCertificateNotFound} {
		if d := delta("vaultcert_sync_total", map[string]string{"result": result}); d < 1 {
			t.Errorf("vaultcert_sync_total{result=%q} grew by %v, want >= 1", result, d)
		}
	}

	// Deleting a VaultCertificate drops its series, so dashboards do not show certificates that are gone.
	vc := getCert(t, ns, "missing")
	if err := k8s.Delete(t.Context(), vc); err != nil {
		t.Fatal(err)
	}
	eventually(t, "series of a deleted VaultCertificate dropped", func() (bool, string) {
		return series(scrape(t), "vaultcert_certificate_ready", map[string]string{"namespace": ns, "name": "missing"}) == nil,
			"vaultcert_certificate_ready{missing} still exported"
	})
}

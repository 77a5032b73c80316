package controllers

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
)

var (
	certificateExpiryDesc = prometheus.NewDesc("vaultcert_certificate_expiration_timestamp_seconds",
		"Expiry (notAfter) of the certificate held in each VaultCertificate's Secret, as a Unix timestamp.",
		[]string{"namespace", "name"}, nil)
	certificateReadyDesc = prometheus.NewDesc("vaultcert_certificate_ready",
		"1 when the VaultCertificate is Ready, else 0.", []string{"namespace", "name"}, nil)
	syncTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vaultcert_sync_total",
		Help: "VaultCertificate reconciles by result: written (the Secret changed), unchanged, or the failure reason.",
	}, []string{"result"})
	registerOnce sync.Once
)

// certificateCollector computes the per-certificate gauges at scrape time from the manager's cache (the way
// cert-manager does), so they always match the stored status, vanish with deleted objects and need no
// bookkeeping in the reconciler.
type certificateCollector struct {
	reader client.Reader
}

// Describe sends the gauges' descriptors.
func (c *certificateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- certificateExpiryDesc
	ch <- certificateReadyDesc
}

// Collect lists VaultCertificates from the cache and emits their readiness and expiry.
func (c *certificateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var list vaultcertv1.VaultCertificateList
	if err := c.reader.List(ctx, &list); err != nil {
		return
	}
	for i := range list.Items {
		vc := &list.Items[i]
		ready := 0.0
		if cond := meta.FindStatusCondition(vc.Status.Conditions, vaultcertv1.ConditionReady); cond != nil && cond.Status == metav1.ConditionTrue {
			ready = 1
		}
		ch <- prometheus.MustNewConstMetric(certificateReadyDesc, prometheus.GaugeValue, ready, vc.Namespace, vc.Name)
		if vc.Status.NotAfter != nil {
			ch <- prometheus.MustNewConstMetric(certificateExpiryDesc, prometheus.GaugeValue, float64(vc.Status.NotAfter.Unix()), vc.Namespace, vc.Name)
		}
	}
}

// registerMetrics adds the controller's metrics to controller-runtime's registry, once per process: a process
// runs one manager, whose cache the collector reads (a test that starts a second manager keeps the first).
func registerMetrics(reader client.Reader) {
	registerOnce.Do(func() {
		metrics.Registry.MustRegister(syncTotal, &certificateCollector{reader: reader})
	})
}

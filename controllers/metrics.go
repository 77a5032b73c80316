package controllers

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	certificateExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "vaultcert_certificate_expiration_timestamp_seconds",
		Help: "Expiry (notAfter) of the certificate held in each VaultCertificate's Secret, as a Unix timestamp.",
	}, []string{"namespace", "name"})
	certificateReady = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "vaultcert_certificate_ready",
		Help: "1 when the VaultCertificate is Ready, else 0.",
	}, []string{"namespace", "name"})
	syncTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vaultcert_sync_total",
		Help: "VaultCertificate reconciles by result: written (the Secret changed), unchanged, or the failure reason.",
	}, []string{"result"})
	registerOnce sync.Once
)

// registerMetrics adds the controller's metrics to controller-runtime's registry, once per process.
func registerMetrics() {
	registerOnce.Do(func() {
		metrics.Registry.MustRegister(certificateExpiry, certificateReady, syncTotal)
	})
}

// forgetCertificateMetrics drops the series of a deleted VaultCertificate.
func forgetCertificateMetrics(namespace, name string) {
	certificateExpiry.DeleteLabelValues(namespace, name)
	certificateReady.DeleteLabelValues(namespace, name)
}

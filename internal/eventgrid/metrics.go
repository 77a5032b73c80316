package eventgrid

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Metric names, exported so dashboards, alerts and tests can refer to them.
const (
	// MetricDeliveriesTotal counts every request the webhook answered, by result.
	MetricDeliveriesTotal = "vaultcert_eventgrid_deliveries_total"
	// MetricNotificationsTotal counts the Notifications handed to Options.Notify, by event type.
	MetricNotificationsTotal = "vaultcert_eventgrid_notifications_total"
	// MetricEventsIgnoredTotal counts events of accepted deliveries that produced no Notification, by reason.
	MetricEventsIgnoredTotal = "vaultcert_eventgrid_events_ignored_total"
)

// Values of the result label of MetricDeliveriesTotal. The set is closed so a sender cannot grow the series.
const (
	resultAccepted        = "accepted"        // 200: events read (some may have been ignored)
	resultValidation      = "validation"      // 200: an Event Grid or CloudEvents handshake answered
	resultUnauthenticated = "unauthenticated" // 401
	resultRateLimited     = "rate_limited"    // 429
	resultInvalid         = "invalid"         // 400, 405, 413 or 415
	resultDuplicate       = "duplicate"       // 200: every event had been seen already
	resultUnavailable     = "unavailable"     // 503: the Entra signing keys could not be fetched
)

// Values of the reason label of MetricEventsIgnoredTotal.
const (
	ignoredType      = "type"      // not one of the certificate event types
	ignoredMalformed = "malformed" // a certificate event whose fields could not be read or are out of bounds
	ignoredDuplicate = "duplicate" // an event ID seen within the dedupe window
)

var (
	deliveriesTotal = counterVec(MetricDeliveriesTotal, "result",
		"Requests to the Event Grid webhook, by result: accepted, validation (handshake answered), unauthenticated, "+
			"rate_limited, invalid (bad method, media type, JSON or size), duplicate (every event already seen) or "+
			"unavailable (Entra signing keys could not be fetched).")
	notificationsTotal = counterVec(MetricNotificationsTotal, "type",
		"Key Vault certificate events turned into notifications, by event type.")
	eventsIgnoredTotal = counterVec(MetricEventsIgnoredTotal, "reason",
		"Events of accepted deliveries that produced no notification, by reason: type (not a certificate event), "+
			"malformed or duplicate.")

	registerOnce sync.Once
)

// counterVec is a counter with one label.
func counterVec(name, label, help string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{label})
}

// registerMetrics puts the collectors on controller-runtime's registry once per process, and creates every
// series at zero so dashboards see them before the first delivery.
func registerMetrics() {
	registerOnce.Do(func() {
		ctrlmetrics.Registry.MustRegister(deliveriesTotal, notificationsTotal, eventsIgnoredTotal)
		for _, r := range []string{resultAccepted, resultValidation, resultUnauthenticated, resultRateLimited,
			resultInvalid, resultDuplicate, resultUnavailable} {
			deliveriesTotal.WithLabelValues(r)
		}
		for _, t := range certificateEventTypes {
			notificationsTotal.WithLabelValues(t)
		}
		for _, r := range []string{ignoredType, ignoredMalformed, ignoredDuplicate} {
			eventsIgnoredTotal.WithLabelValues(r)
		}
	})
}

func init() { registerMetrics() }

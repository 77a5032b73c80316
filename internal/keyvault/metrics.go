package keyvault

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Metric names, exported so dashboards, alerts and tests can refer to them.
const (
	// MetricRequestsTotal counts every HTTP request sent to Key Vault, by vault host, operation and status.
	MetricRequestsTotal = "vaultcert_keyvault_requests_total"
	// MetricRequestDuration is the latency of every HTTP request sent to Key Vault.
	MetricRequestDuration = "vaultcert_keyvault_request_duration_seconds"
	// MetricThrottledTotal counts 429 answers from Key Vault.
	MetricThrottledTotal = "vaultcert_keyvault_throttled_total"
)

var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricRequestsTotal,
		Help: "HTTP requests sent to Azure Key Vault, one per try (SDK retries and the unauthenticated " +
			"challenge request each count), by vault host (\"other\" beyond 200 hosts), operation and HTTP status code " +
			"(\"error\" when no response arrived).",
	}, []string{"vault", "operation", "code"})

	requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    MetricRequestDuration,
		Help:    "Latency of HTTP requests to Azure Key Vault, one observation per try, by vault host and operation.",
		Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
	}, []string{"vault", "operation"})

	throttledTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricThrottledTotal,
		Help: "HTTP 429 answers from Azure Key Vault, by vault host.",
	}, []string{"vault"})

	registerOnce sync.Once
)

// maxHostLabels bounds the distinct vault hosts that get their own metric series; further hosts share the
// label otherHostLabel. A var so tests can lower it.
var maxHostLabels = 200

// otherHostLabel is the vault label of hosts beyond maxHostLabels, and of requests to hosts no client was
// built for (a nextLink pointing elsewhere).
const otherHostLabel = "other"

// hostLabelSet decides the vault label of each host. A host gets its own label while a Factory client uses
// it and a slot is free; when its last client is forgotten its series are deleted and the slot freed, so
// neither the label values nor the series grow with every vault a tenant ever named.
type hostLabelSet struct {
	mu    sync.Mutex
	refs  map[string]int  // Factory clients per host, across factories
	named map[string]bool // hosts with their own label
}

// hostLabels is the process-wide set: the collectors are process-wide too.
var hostLabels = &hostLabelSet{refs: map[string]int{}, named: map[string]bool{}}

// acquire records a client of host and gives the host its own label if a slot is free.
func (s *hostLabelSet) acquire(host string) {
	host = normalizeHost(host)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refs[host]++
	if !s.named[host] && len(s.named) < maxHostLabels {
		s.named[host] = true
	}
}

// release records that a client of host is gone; with the last one, the host's series are deleted.
func (s *hostLabelSet) release(host string) {
	host = normalizeHost(host)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refs[host]--; s.refs[host] > 0 {
		return
	}
	delete(s.refs, host)
	if s.named[host] {
		delete(s.named, host)
		deleteHostSeries(host)
	}
}

// label is host's vault label.
func (s *hostLabelSet) label(host string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.labelLocked(host)
}

func (s *hostLabelSet) labelLocked(host string) string {
	if s.named[host] {
		return host
	}
	return otherHostLabel
}

// record runs observe with host's label under the set's lock, so a concurrent release of the host's last
// client cannot delete the series before observe re-creates them.
func (s *hostLabelSet) record(host string, observe func(label string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	observe(s.labelLocked(host))
}

// deleteHostSeries drops every series labelled with host.
func deleteHostSeries(host string) {
	l := prometheus.Labels{"vault": host}
	requestsTotal.DeletePartialMatch(l)
	requestDuration.DeletePartialMatch(l)
	throttledTotal.DeletePartialMatch(l)
}

// registerMetrics puts the collectors on controller-runtime's registry once per process, so building
// several factories (as tests do) never registers twice.
func registerMetrics() {
	registerOnce.Do(func() {
		ctrlmetrics.Registry.MustRegister(requestsTotal, requestDuration, throttledTotal)
	})
}

func init() { registerMetrics() }

// maxResultsKey carries a maxresults value for a ListCertificates request through the pipeline: the
// azcertificates v1.5.0 list options have no MaxResults field.
type maxResultsKey struct{}

// withMaxResults asks the pipeline to add maxresults=n to ListCertificates requests made with ctx.
func withMaxResults(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, maxResultsKey{}, n)
}

// vaultPolicy is the per-retry pipeline policy every Key Vault request passes: it asks the Governor for
// admission, sends the request, feeds 429s and successes back to the Governor and records metrics.
// Being per-retry, it sees each try, including SDK retries and the challenge's second send.
type vaultPolicy struct {
	gov *Governor
	now func() time.Time
	// conn is the connection's own bucket (Config.RequestsPerSecond); nil or empty for none.
	conn *connLimiter
}

// Do implements policy.Policy.
func (p *vaultPolicy) Do(req *policy.Request) (*http.Response, error) {
	raw := req.Raw()
	host := normalizeHost(raw.URL.Host)
	op := operationName(raw.Method, raw.URL.Path)

	if n, ok := raw.Context().Value(maxResultsKey{}).(int); ok && n > 0 && op == "ListCertificates" {
		q := raw.URL.Query()
		if q.Get("maxresults") == "" && q.Get("$skiptoken") == "" {
			q.Set("maxresults", strconv.Itoa(n))
			raw.URL.RawQuery = q.Encode()
		}
	}

	if err := p.gov.wait(raw.Context(), host, op, p.conn.get()); err != nil {
		if _, ok := AsThrottled(err); ok {
			// Nothing was sent: the SDK must not retry (that is the governor's job, by requeue).
			return nil, &noRetryError{err}
		}
		return nil, err
	}

	start := p.now()
	resp, err := req.Next()
	elapsed := p.now().Sub(start)

	code := "error"
	throttled := false
	if err == nil && resp != nil {
		code = strconv.Itoa(resp.StatusCode)
		if throttled = resp.StatusCode == http.StatusTooManyRequests; throttled {
			p.gov.Throttled(host, retryAfter(resp.Header, p.now()))
		} else {
			p.gov.Succeeded(host)
		}
	}
	hostLabels.record(host, func(label string) {
		if throttled {
			throttledTotal.WithLabelValues(label).Inc()
		}
		requestsTotal.WithLabelValues(label, op, code).Inc()
		requestDuration.WithLabelValues(label, op).Observe(elapsed.Seconds())
	})
	return resp, err
}

// noRetryError stops azcore's retry policy for an error whose retry belongs to someone else.
type noRetryError struct{ err error }

func (e *noRetryError) Error() string { return e.err.Error() }
func (e *noRetryError) Unwrap() error { return e.err }

// NonRetriable is azcore's marker (errorinfo.NonRetriable) for errors its retry policy must not retry.
func (e *noRetryError) NonRetriable() {}

// operationName derives a bounded operation label from a Key Vault request. Unknown shapes become
// "Other" so a strange URL can never explode the label's cardinality.
func operationName(method, path string) string {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	// Skip any base path in front of the collection (private endpoints behind a path prefix).
	for i, s := range segs {
		switch strings.ToLower(s) {
		case "certificates", "deletedcertificates", "secrets", "deletedsecrets":
			segs = segs[i:]
			return collectionOperation(method, segs)
		}
	}
	return "Other"
}

// collectionOperation names a request whose path starts at a collection segment.
func collectionOperation(method string, segs []string) string {
	coll := strings.ToLower(segs[0])
	n := len(segs)
	last := ""
	if n >= 3 {
		last = strings.ToLower(segs[2])
	}
	switch coll {
	case "certificates":
		if n >= 2 {
			switch strings.ToLower(segs[1]) {
			case "issuers":
				return pick(method, n == 2, map[string]string{http.MethodGet: "ListIssuers"},
					map[string]string{http.MethodGet: "GetIssuer", http.MethodPut: "SetIssuer", http.MethodPatch: "UpdateIssuer", http.MethodDelete: "DeleteIssuer"})
			case "contacts":
				return pick(method, true, map[string]string{http.MethodGet: "GetContacts", http.MethodPut: "SetContacts", http.MethodDelete: "DeleteContacts"}, nil)
			}
		}
		switch {
		case n == 1:
			return byMethod(method, map[string]string{http.MethodGet: "ListCertificates"})
		case n == 2:
			return byMethod(method, map[string]string{http.MethodGet: "GetCertificate", http.MethodDelete: "DeleteCertificate"})
		case n == 3 && last == "versions":
			return byMethod(method, map[string]string{http.MethodGet: "ListCertificateVersions"})
		case n == 3 && last == "create":
			return byMethod(method, map[string]string{http.MethodPost: "CreateCertificate"})
		case n == 3 && last == "import":
			return byMethod(method, map[string]string{http.MethodPost: "ImportCertificate"})
		case n == 3 && last == "backup":
			return byMethod(method, map[string]string{http.MethodPost: "BackupCertificate"})
		case n == 3 && last == "policy":
			return byMethod(method, map[string]string{http.MethodGet: "GetCertificatePolicy", http.MethodPatch: "UpdateCertificatePolicy"})
		case n == 3 && last == "pending":
			return byMethod(method, map[string]string{http.MethodGet: "GetCertificateOperation",
				http.MethodPatch: "UpdateCertificateOperation", http.MethodDelete: "DeleteCertificateOperation"})
		case n == 4 && last == "pending" && strings.EqualFold(segs[3], "merge"):
			return byMethod(method, map[string]string{http.MethodPost: "MergeCertificate"})
		case n == 3:
			return byMethod(method, map[string]string{http.MethodGet: "GetCertificate", http.MethodPatch: "UpdateCertificate"})
		}
	case "deletedcertificates":
		switch {
		case n == 1:
			return byMethod(method, map[string]string{http.MethodGet: "ListDeletedCertificates"})
		case n == 2:
			return byMethod(method, map[string]string{http.MethodGet: "GetDeletedCertificate", http.MethodDelete: "PurgeDeletedCertificate"})
		case n == 3 && last == "recover":
			return byMethod(method, map[string]string{http.MethodPost: "RecoverDeletedCertificate"})
		}
	case "secrets":
		switch {
		case n == 1:
			return byMethod(method, map[string]string{http.MethodGet: "ListSecrets"})
		case n == 3 && last == "versions":
			return byMethod(method, map[string]string{http.MethodGet: "ListSecretVersions"})
		case n == 2 || n == 3:
			return byMethod(method, map[string]string{http.MethodGet: "GetSecret"})
		}
	case "deletedsecrets":
		return "DeletedSecrets"
	}
	return "Other"
}

// byMethod looks the method up, "Other" when absent.
func byMethod(method string, m map[string]string) string {
	if op, ok := m[method]; ok {
		return op
	}
	return "Other"
}

// pick chooses between a collection-level and an item-level method table.
func pick(method string, collection bool, coll, item map[string]string) string {
	if collection {
		return byMethod(method, coll)
	}
	return byMethod(method, item)
}

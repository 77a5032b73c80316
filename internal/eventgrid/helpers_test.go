package eventgrid

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const (
	testSecret  = "s3cret-for-event-grid-0001"
	otherSecret = "s3cret-for-event-grid-0002"
	jsonType    = "application/json; charset=utf-8"
)

var testStart = time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)

// env is a handler on a fake clock that records its notifications and log lines.
type env struct {
	t     *testing.T
	h     *Handler
	nanos atomic.Int64 // the fake clock, in Unix nanoseconds

	mu    sync.Mutex
	got   []Notification
	lines []string
}

// newEnv builds a handler from opts; without Secrets or Entra it gets testSecret.
func newEnv(t *testing.T, opts Options) *env {
	t.Helper()
	e := &env{t: t}
	e.nanos.Store(testStart.UnixNano())
	if len(opts.Secrets) == 0 && opts.Entra == nil {
		opts.Secrets = []string{testSecret}
	}
	opts.Notify = func(n Notification) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.got = append(e.got, n)
	}
	opts.Now = e.now
	opts.Log = funcr.New(func(prefix, args string) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.lines = append(e.lines, prefix+" "+args)
	}, funcr.Options{Verbosity: 5})
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	return e
}

// now is the fake clock, which only advance moves.
func (e *env) now() time.Time { return time.Unix(0, e.nanos.Load()).UTC() }

func (e *env) advance(d time.Duration) { e.nanos.Add(int64(d)) }

// take returns the notifications so far and forgets them.
func (e *env) take() []Notification {
	e.mu.Lock()
	defer e.mu.Unlock()
	got := e.got
	e.got = nil
	return got
}

// log returns every log line so far.
func (e *env) log() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.Join(e.lines, "\n")
}

// serve sends r to the handler.
func (e *env) serve(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

// post sends body with testSecret as a bearer secret.
func (e *env) post(contentType string, body []byte) *httptest.ResponseRecorder {
	return e.serve(request(http.MethodPost, "/", contentType, body, "Authorization", "Bearer "+testSecret))
}

// request builds a request; header holds name, value pairs.
func request(method, target, contentType string, body []byte, header ...string) *http.Request {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	r := httptest.NewRequest(method, "https://vaultcert.example.com"+target, rd)
	r.RemoteAddr = "203.0.113.7:44321"
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	return r
}

func testdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// counters snapshots the package's metrics so a test can check what it added.
type counters map[string]float64

func snapshot() counters {
	c := counters{}
	add := func(prefix string, vec *prometheus.CounterVec, labels ...string) {
		for _, l := range labels {
			c[prefix+l] = testutil.ToFloat64(vec.WithLabelValues(l))
		}
	}
	add("deliveries/", deliveriesTotal, resultAccepted, resultValidation, resultUnauthenticated, resultRateLimited,
		resultInvalid, resultDuplicate, resultUnavailable)
	add("notifications/", notificationsTotal, certificateEventTypes...)
	add("ignored/", eventsIgnoredTotal, ignoredType, ignoredMalformed, ignoredDuplicate)
	return c
}

// delta returns what changed since c, without the zeros.
func (c counters) delta() counters {
	d := counters{}
	for k, v := range snapshot() {
		if v != c[k] {
			d[k] = v - c[k]
		}
	}
	return d
}

// checkDelta compares what the metrics gained since before with want.
func checkDelta(t *testing.T, before counters, want counters) {
	t.Helper()
	got := before.delta()
	if len(got) != len(want) {
		t.Errorf("metrics changed by %v, want %v", got, want)
		return
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("metrics changed by %v, want %v", got, want)
			return
		}
	}
}

// checkDelivered checks what one delivery of eventgrid-certificate-new-version.json did, answered with code: with
// 200 one notification and an accepted delivery, else an unauthenticated delivery and nothing notified.
func checkDelivered(t *testing.T, e *env, before counters, code int) {
	t.Helper()
	n := e.take()
	if code == http.StatusOK {
		checkDelta(t, before, counters{"deliveries/accepted": 1, "notifications/" + TypeCertificateNewVersionCreated: 1})
		if len(n) != 1 {
			t.Errorf("notifications %v", n)
		}
		return
	}
	checkDelta(t, before, counters{"deliveries/unauthenticated": 1})
	if len(n) != 0 {
		t.Errorf("refused delivery notified %v", n)
	}
}

// checkNoLeak fails when any of the credentials shows in the answer or the log.
func checkNoLeak(t *testing.T, e *env, w *httptest.ResponseRecorder, credentials ...string) {
	t.Helper()
	for _, c := range credentials {
		if strings.Contains(w.Body.String(), c) || strings.Contains(e.log(), c) {
			t.Error("a credential leaked into the answer or the log")
		}
	}
}

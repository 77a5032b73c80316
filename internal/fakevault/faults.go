package fakevault

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Fault kinds.
const (
	// FaultHTTP (the empty kind) answers Status with the service's error body.
	FaultHTTP = ""
	// FaultReset hijacks the connection and closes it (TCP RST where possible) without answering.
	FaultReset = "reset"
	// FaultTimeout holds the request until the client gives up (or the server closes).
	FaultTimeout = "timeout"
	// FaultMalformed answers 200 with the first half of the real JSON body.
	FaultMalformed = "malformed"
	// FaultTruncate answers the real response with its "value" string cut in half (GetSecret).
	FaultTruncate = "truncate"
)

// Fault describes an injected failure. Faults are matched in the order they were injected.
// A fault with Status 0 and Kind "" only adds Latency (all such matching faults add up);
// otherwise the first matching fault decides the answer.
type Fault struct {
	// Operation is an operation name (OpGetSecret...); "" matches every authenticated vault
	// operation. OpToken (the token endpoint) and OpChallenge (the unauthenticated first request)
	// must be named explicitly; they support Status, Latency, FaultReset and FaultTimeout.
	Operation string `json:"operation,omitempty"`
	// Name is a certificate name (case-insensitive); "" matches any (and requests without a name).
	Name string `json:"name,omitempty"`
	// Status is the HTTP status to answer (429, 500, 503, 403, 404...); 0 = no status fault.
	Status int `json:"status,omitempty"`
	// Code is error.code; default from Status (429 Throttled, 403 Forbidden, 500 InternalServerError...).
	Code string `json:"code,omitempty"`
	// InnerCode is error.innererror.code (ForbiddenByFirewall, AccessDenied, ForbiddenByPolicy...).
	InnerCode string `json:"innerCode,omitempty"`
	// Message is error.message; default the real service's text.
	Message string `json:"message,omitempty"`
	// RetryAfter is the raw Retry-After header value ("" = header absent).
	RetryAfter string `json:"retryAfter,omitempty"`
	// RetryAfterMs is the raw Retry-After-Ms and x-ms-retry-after-ms header value ("" = absent).
	RetryAfterMs string `json:"retryAfterMs,omitempty"`
	// Latency is a delay before answering (the request's cancellation is respected).
	Latency time.Duration `json:"latency,omitempty"`
	// Kind is FaultHTTP, FaultReset, FaultTimeout, FaultMalformed or FaultTruncate.
	Kind string `json:"kind,omitempty"`
	// Times is how many matching requests the fault hits; 0 = until ClearFaults.
	Times int `json:"times,omitempty"`
}

type faultEntry struct {
	Fault
	left int // remaining hits, -1 = unlimited
}

type faultSet struct {
	mu     sync.Mutex
	faults []*faultEntry

	limit     int
	window    time.Duration
	sendRetry bool
	admitted  []time.Time // admission times inside the window, oldest first
}

func newFaultSet() *faultSet { return &faultSet{window: 10 * time.Second} }

// InjectFault adds a fault (see Fault).
func (s *Server) InjectFault(f Fault) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	e := &faultEntry{Fault: f, left: f.Times}
	if f.Times <= 0 {
		e.left = -1
	}
	s.faults.faults = append(s.faults.faults, e)
}

// ClearFaults removes every fault (limit mode is unchanged).
func (s *Server) ClearFaults() {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.faults = nil
}

// Faults returns the faults still active, with Times set to the remaining hits (0 = unlimited).
func (s *Server) Faults() []Fault {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	out := make([]Fault, 0, len(s.faults.faults))
	for _, e := range s.faults.faults {
		f := e.Fault
		f.Times = max(e.left, 0)
		out = append(out, f)
	}
	return out
}

// SetLimit turns on limit mode: like the real service, a per-vault budget of requestsPer10s
// admitted vault requests over a sliding window (10 s unless SetLimitWindow); a request over
// budget gets 429 Throttled with the real message and, when sendRetryAfter, a Retry-After of the
// seconds (rounded up) until the window frees a slot. Throttled requests do not use the budget.
// 0 disables limit mode (the default). The window runs on the real clock, not Options.Now.
func (s *Server) SetLimit(requestsPer10s int, sendRetryAfter bool) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.limit = requestsPer10s
	s.faults.sendRetry = sendRetryAfter
	s.faults.admitted = nil
}

// SetLimitWindow changes limit mode's window (default 10 s) so tests need not wait 10 s.
func (s *Server) SetLimitWindow(d time.Duration) {
	if d <= 0 {
		d = 10 * time.Second
	}
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.window = d
}

// admit applies limit mode to one request.
func (fs *faultSet) admit(now time.Time) (limited bool, retryAfter string, send bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.limit <= 0 {
		return false, "", false
	}
	cut := now.Add(-fs.window)
	i := 0
	for i < len(fs.admitted) && !fs.admitted[i].After(cut) {
		i++
	}
	fs.admitted = fs.admitted[i:]
	if len(fs.admitted) < fs.limit {
		fs.admitted = append(fs.admitted, now)
		return false, "", false
	}
	wait := fs.admitted[0].Add(fs.window).Sub(now)
	secs := int((wait + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return true, fmt.Sprint(secs), fs.sendRetry
}

// match finds the faults for one request: the first terminal fault and the total latency.
func (fs *faultSet) match(op, name string, explicitOnly bool) (*Fault, time.Duration) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var terminal *Fault
	var latency time.Duration
	kept := fs.faults[:0]
	for _, e := range fs.faults {
		hit := false
		opOK := strings.EqualFold(e.Operation, op) || (e.Operation == "" && !explicitOnly)
		nameOK := e.Name == "" || strings.EqualFold(e.Name, name)
		if opOK && nameOK {
			if e.Status == 0 && e.Kind == "" {
				latency += e.Latency
				hit = true
			} else if terminal == nil {
				f := e.Fault
				terminal = &f
				latency += e.Latency
				hit = true
			}
		}
		if hit && e.left > 0 {
			e.left--
			if e.left == 0 {
				continue
			}
		}
		kept = append(kept, e)
	}
	for i := len(kept); i < len(fs.faults); i++ {
		fs.faults[i] = nil
	}
	fs.faults = kept
	return terminal, latency
}

// explicitFault matches the faults injected for an explicitly named operation (OpToken, OpChallenge),
// waits out their latency and carries out a reset or timeout; finished reports that the request is over,
// otherwise f is the terminal fault left for the caller to answer (nil when none).
func (s *Server) explicitFault(w http.ResponseWriter, r *http.Request, op, name string) (f *Fault, finished bool) {
	f, latency := s.faults.match(op, name, true)
	if latency > 0 && !s.sleep(r.Context(), latency) {
		return nil, true
	}
	if f != nil && s.applyTransportFault(w, r, f) {
		return nil, true
	}
	return f, false
}

// applyTransportFault carries out a reset or a timeout and reports whether f was one.
func (s *Server) applyTransportFault(w http.ResponseWriter, r *http.Request, f *Fault) bool {
	switch strings.ToLower(f.Kind) {
	case FaultReset:
		resetConnection(w)
		return true
	case FaultTimeout:
		select {
		case <-r.Context().Done():
		case <-s.closed:
		}
		return true
	}
	return false
}

// applyFault answers a request with a terminal fault.
func (s *Server) applyFault(w http.ResponseWriter, r *http.Request, rt *route, f *Fault) {
	if s.applyTransportFault(w, r, f) {
		return
	}
	switch strings.ToLower(f.Kind) {
	case FaultMalformed, FaultTruncate:
		rec := newRecorder()
		s.dispatch(rec, r, rt)
		body := rec.body.Bytes()
		status := rec.status
		if strings.ToLower(f.Kind) == FaultMalformed {
			status = http.StatusOK
			body = body[:len(body)/2]
			if len(body) == 0 {
				body = []byte(`{"value":"`)
			}
		} else {
			body = truncateValue(body)
		}
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(status)
		_, _ = w.Write(body)
	default:
		s.writeFaultStatus(w, rt.clientID, f)
	}
}

func (s *Server) writeFaultStatus(w http.ResponseWriter, clientID string, f *Fault) {
	status := f.Status
	if status == 0 {
		status = http.StatusInternalServerError
	}
	code := f.Code
	if code == "" {
		code = defaultCode(status)
	}
	msg := f.Message
	if msg == "" {
		msg = defaultMessage(status, f.InnerCode, clientID, s.tenant)
	}
	e := newError(status, code, f.InnerCode, "%s", msg)
	e.header = http.Header{}
	if f.RetryAfter != "" {
		e.header.Set("Retry-After", f.RetryAfter)
	}
	if f.RetryAfterMs != "" {
		e.header.Set("Retry-After-Ms", f.RetryAfterMs)
		e.header.Set("x-ms-retry-after-ms", f.RetryAfterMs)
	}
	if status == http.StatusTooManyRequests {
		s.counts.add(OpThrottled)
	}
	writeError(w, e)
}

// resetConnection hijacks the connection and closes it with SO_LINGER 0 (a TCP RST).
func resetConnection(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	raw := conn
	if nc, ok := conn.(interface{ NetConn() net.Conn }); ok {
		raw = nc.NetConn()
	}
	if tcp, ok := raw.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = raw.Close()
}

// truncateValue cuts the "value" string of a JSON object in half (on a base64 quantum boundary).
func truncateValue(body []byte) []byte {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return body[:len(body)/2]
	}
	var v string
	if raw, ok := m["value"]; !ok || json.Unmarshal(raw, &v) != nil {
		return body
	}
	n := len(v) / 2
	n -= n % 4
	nv, _ := json.Marshal(v[:n])
	m["value"] = nv
	out, _ := json.Marshal(m)
	return out
}

// recorder captures a handler's response.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{header: http.Header{}, status: http.StatusOK} }

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(status int)      { r.status = status }

type counter struct {
	mu     sync.Mutex
	m      map[string]int // by operation
	byName map[string]int // by operation + "\x00" + lower-case certificate name
}

func newCounter() *counter { return &counter{m: map[string]int{}, byName: map[string]int{}} }

func (c *counter) add(op string) {
	c.mu.Lock()
	c.m[op]++
	c.mu.Unlock()
}

func (c *counter) addNamed(op, name string) {
	c.mu.Lock()
	c.m[op]++
	if name != "" {
		c.byName[op+"\x00"+strings.ToLower(name)]++
	}
	c.mu.Unlock()
}

// Count returns how many requests were counted for an operation since the last ResetCounts:
// authenticated vault requests that were routed to the operation (including those answered by a
// fault or throttled), Challenge for 401 challenges, Unauthorized for rejected tokens, Token for
// token requests, Discovery for authority metadata, Throttled for every 429.
func (s *Server) Count(operation string) int {
	s.counts.mu.Lock()
	defer s.counts.mu.Unlock()
	return s.counts.m[operation]
}

// Counts returns a copy of all counters.
func (s *Server) Counts() map[string]int {
	s.counts.mu.Lock()
	defer s.counts.mu.Unlock()
	out := make(map[string]int, len(s.counts.m))
	for k, v := range s.counts.m {
		out[k] = v
	}
	return out
}

// ResetCounts zeroes all counters.
func (s *Server) ResetCounts() {
	s.counts.mu.Lock()
	defer s.counts.mu.Unlock()
	s.counts.m = map[string]int{}
	s.counts.byName = map[string]int{}
}

// CountFor returns how many requests of an operation named one certificate (case-insensitive) since the
// last ResetCounts, so a test can count its own certificate's calls while other certificates are being
// reconciled. Counts() stays keyed by operation only.
func (s *Server) CountFor(operation, name string) int {
	s.counts.mu.Lock()
	defer s.counts.mu.Unlock()
	return s.counts.byName[operation+"\x00"+strings.ToLower(name)]
}

// VaultRequests sums the counters of requests that reached the vault itself: every operation and challenge, not
// the identity provider's (token, discovery, managed identity) and not Throttled, which is a sub-count of the others.
func VaultRequests(counts map[string]int) int {
	sum := 0
	for op, c := range counts {
		switch op {
		case OpToken, OpDiscovery, OpManagedIdentityToken, OpThrottled:
		default:
			sum += c
		}
	}
	return sum
}

package keyvault

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Defaults for the per-vault budget. Key Vault allows 4,000 GET/list transactions per vault per 10 s
// (400/s); 200/s leaves room for other clients of the same vault and for secret reads counted separately.
const (
	// DefaultRequestsPerSecond is the per-vault steady rate.
	DefaultRequestsPerSecond = 200
	// DefaultBurst is the per-vault bucket size.
	DefaultBurst = 100
	// DefaultMaxWait is the longest a call waits for a token before failing fast with a ThrottledError.
	DefaultMaxWait = 2 * time.Second
	// DefaultBaseBackoff is the first pause after a 429 without a hint.
	DefaultBaseBackoff = time.Second
	// DefaultMaxBackoff caps the hint-less backoff (1, 2, 4, 8, 16 s).
	DefaultMaxBackoff = 16 * time.Second
)

// Codes of the ThrottledErrors the Governor makes up itself (no request was sent).
const (
	// CodeVaultPaused is a call refused because the vault is paused after a 429.
	CodeVaultPaused = "VaultPaused"
	// CodeClientRateLimited is a call refused because the local budget would make it wait longer than MaxWait.
	CodeClientRateLimited = "ClientRateLimited"
)

// GovernorOptions configures a Governor. Zero values take the defaults above.
type GovernorOptions struct {
	// RequestsPerSecond is the default steady rate per vault host.
	RequestsPerSecond float64
	// Burst is the default token bucket size per vault host.
	Burst int
	// MaxWait is the longest Wait blocks for a token; longer waits fail fast so no worker blocks for long.
	MaxWait time.Duration
	// BaseBackoff and MaxBackoff shape the pause after a 429 without a Retry-After hint.
	BaseBackoff, MaxBackoff time.Duration
	// Now is the clock used for pauses; nil means time.Now. The token bucket always uses real time.
	Now func() time.Time
	// Jitter returns a number in [0, 1) used to spread hint-less backoffs; nil means math/rand.
	Jitter func() float64
}

// Governor is the process-wide rate governor: one token bucket and one pause per vault host, shared by
// every connection and worker that talks to that vault. It is the only component that waits on 429s:
// the SDK retry policy is configured not to retry them (see newRetryOptions).
//
// Per-host state lives while a Factory client uses the host: when the last one is forgotten the state
// (bucket, pause, backoff) goes with it, so hosts named by deleted connections do not accumulate. Budgets
// set with SetLimit are configuration and stay.
type Governor struct {
	opts GovernorOptions

	mu    sync.Mutex
	hosts map[string]*hostState
	// pinned holds the budgets set with SetLimit; they outlive the hosts' state.
	pinned map[string]budget
	// refs counts the Factory clients using each host; a host at zero is swept.
	refs map[string]int
}

// budget is a token bucket's rate and size.
type budget struct {
	rps   float64
	burst int
}

// hostState is one vault's budget and pause.
type hostState struct {
	limiter     *rate.Limiter
	pausedUntil time.Time
	// throttles counts consecutive 429s; it drives the hint-less backoff and resets on success.
	throttles int
	// owner is the Factory key of the connection (SetsHostBudget) whose budget the limiter has; "" when it
	// has the pinned or default budget.
	owner string
}

// NewGovernor returns a Governor with opts' defaults.
func NewGovernor(opts GovernorOptions) *Governor {
	if opts.RequestsPerSecond <= 0 {
		opts.RequestsPerSecond = DefaultRequestsPerSecond
	}
	if opts.Burst <= 0 {
		opts.Burst = DefaultBurst
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = DefaultMaxWait
	}
	if opts.BaseBackoff <= 0 {
		opts.BaseBackoff = DefaultBaseBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Jitter == nil {
		opts.Jitter = rand.Float64
	}
	return &Governor{opts: opts, hosts: map[string]*hostState{}, pinned: map[string]budget{}, refs: map[string]int{}}
}

// normalizeHost makes "Vault.Example:443" and "vault.example:443" one budget.
// The default https port is dropped, so "v.vault.azure.net:443" and "v.vault.azure.net" share one budget and one
// pause (and one metric label).
func normalizeHost(host string) string { return strings.TrimSuffix(strings.ToLower(host), ":443") }

// state returns the host's state, creating it with the host's base budget. Callers hold g.mu.
func (g *Governor) state(host string) *hostState {
	host = normalizeHost(host)
	s, ok := g.hosts[host]
	if !ok {
		b := g.baseBudget(host)
		s = &hostState{limiter: rate.NewLimiter(rate.Limit(b.rps), b.burst)}
		g.hosts[host] = s
	}
	return s
}

// baseBudget is the host's budget when no connection sets it: SetLimit's, else the defaults. Callers hold g.mu.
func (g *Governor) baseBudget(host string) budget {
	if b, ok := g.pinned[host]; ok {
		return b
	}
	return budget{rps: g.opts.RequestsPerSecond, burst: g.opts.Burst}
}

// withDefaults fills non-positive fields with the Governor's defaults.
func (g *Governor) withDefaults(requestsPerSecond float64, burst int) budget {
	if requestsPerSecond <= 0 {
		requestsPerSecond = g.opts.RequestsPerSecond
	}
	if burst <= 0 {
		burst = g.opts.Burst
	}
	return budget{rps: requestsPerSecond, burst: burst}
}

// apply sets a limiter's rate and size, touching only what changed (each set re-bases the bucket).
func apply(l *rate.Limiter, b budget) {
	if l.Limit() != rate.Limit(b.rps) {
		l.SetLimit(rate.Limit(b.rps))
	}
	if l.Burst() != b.burst {
		l.SetBurst(b.burst)
	}
}

// SetLimit sets the budget every connection to one vault host shares, as configuration: it stays when no
// client uses the host any more. Non-positive values keep the Governor's default for that field. A
// ClusterVaultConnection with SetsHostBudget overrides it while it exists.
func (g *Governor) SetLimit(host string, requestsPerSecond float64, burst int) {
	host = normalizeHost(host)
	b := g.withDefaults(requestsPerSecond, burst)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pinned[host] = b
	// No state is created here: state() starts a host from its pinned budget.
	if s, ok := g.hosts[host]; ok && s.owner == "" {
		apply(s.limiter, b)
	}
}

// setConnectionBudget gives host the budget of the connection owner (SetsHostBudget). When several
// connections set the budget of one host, the last call wins.
func (g *Governor) setConnectionBudget(host, owner string, requestsPerSecond float64, burst int) {
	b := g.withDefaults(requestsPerSecond, burst)
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.state(host)
	s.owner = owner
	apply(s.limiter, b)
}

// clearConnectionBudget returns host to its base budget if owner set the current one.
func (g *Governor) clearConnectionBudget(host, owner string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s, ok := g.hosts[normalizeHost(host)]; ok && s.owner == owner {
		s.owner = ""
		apply(s.limiter, g.baseBudget(normalizeHost(host)))
	}
}

// acquire records one more Factory client using host.
func (g *Governor) acquire(host string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refs[normalizeHost(host)]++
}

// release records that a Factory client no longer uses host, and sweeps.
func (g *Governor) release(host string) {
	host = normalizeHost(host)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.refs[host]--; g.refs[host] <= 0 {
		delete(g.refs, host)
	}
	g.sweepLocked()
}

// sweep drops the state of every host no Factory client uses: state recreated by a request that was still
// in flight when its client was forgotten, or by a URL a vault handed back (a nextLink to another host).
func (g *Governor) sweep() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sweepLocked()
}

// sweepLocked is sweep; callers hold g.mu. A running pause goes too: no client is left to honour it, and a
// new connection to the host learns it again from the vault's next 429.
func (g *Governor) sweepLocked() {
	for h := range g.hosts {
		if g.refs[h] == 0 {
			delete(g.hosts, h)
		}
	}
}

// PausedUntil returns when requests to host may go out again; the zero time (or a past time) means now.
// The controller requeues after it instead of blocking a worker.
func (g *Governor) PausedUntil(host string) time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s, ok := g.hosts[normalizeHost(host)]; ok {
		return s.pausedUntil
	}
	return time.Time{}
}

// Wait admits one request to host. It fails fast with a *ThrottledError (no request should be sent) when
// the host is paused, or when the token bucket would make the caller wait longer than MaxWait or past
// ctx's deadline; otherwise it waits for a token, honouring ctx.
func (g *Governor) Wait(ctx context.Context, host, operation string) error {
	return g.wait(ctx, host, operation, nil)
}

// wait is Wait with a connection's own bucket (nil for none): the request needs a token from both, and
// fails fast if either would make it wait too long.
func (g *Governor) wait(ctx context.Context, host, operation string, conn *rate.Limiter) error {
	now := g.opts.Now()
	g.mu.Lock()
	s := g.state(host)
	until := s.pausedUntil
	lim := s.limiter
	g.mu.Unlock()

	if until.After(now) {
		remaining := until.Sub(now)
		return &ThrottledError{
			ServiceError: ServiceError{
				StatusCode: http.StatusTooManyRequests,
				Code:       CodeVaultPaused,
				Operation:  operation,
				Message: fmt.Sprintf("requests to %s are paused for %s after Key Vault throttled them; nothing was sent",
					host, remaining.Round(time.Millisecond)),
			},
			RetryAfter:  remaining,
			PausedUntil: until,
			Vault:       normalizeHost(host),
		}
	}

	r := lim.Reserve()
	if !r.OK() {
		// Only possible with a zero burst, which SetLimit never sets; treat as a local throttle.
		return g.localThrottle(host, operation, g.opts.MaxWait, false)
	}
	delay := r.Delay()
	var cr *rate.Reservation
	byConn := false
	if conn != nil {
		if cr = conn.Reserve(); !cr.OK() {
			r.Cancel()
			return g.localThrottle(host, operation, g.opts.MaxWait, true)
		}
		if d := cr.Delay(); d > delay {
			delay, byConn = d, true
		}
	}
	cancel := func() {
		r.Cancel()
		if cr != nil {
			cr.Cancel()
		}
	}
	if delay == 0 {
		return nil
	}
	if delay > g.opts.MaxWait {
		cancel()
		return g.localThrottle(host, operation, delay, byConn)
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < delay {
		cancel()
		return g.localThrottle(host, operation, delay, byConn)
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		cancel()
		return ctx.Err()
	}
}

// localThrottle is the error for a request the local budget refused: the host's shared budget, or the
// connection's own (byConn). Both use CodeClientRateLimited: nothing was sent either way.
func (g *Governor) localThrottle(host, operation string, wait time.Duration, byConn bool) error {
	msg := fmt.Sprintf("the client-side budget for %s is exhausted; nothing was sent", host)
	if byConn {
		msg = fmt.Sprintf("this connection's own request budget (its rateLimit) for %s is exhausted; nothing was sent", host)
	}
	return &ThrottledError{
		ServiceError: ServiceError{
			StatusCode: http.StatusTooManyRequests,
			Code:       CodeClientRateLimited,
			Operation:  operation,
			Message:    msg,
		},
		RetryAfter: wait,
		Vault:      normalizeHost(host),
	}
}

// connLimiter is one connection's own token bucket, nil when it has none. The Factory changes it in place
// when the connection's rateLimit changes, without rebuilding the client.
type connLimiter struct{ p atomic.Pointer[rate.Limiter] }

// set applies a connection's RequestsPerSecond and Burst: both zero removes the bucket, and a zero field
// takes g's default.
func (c *connLimiter) set(g *Governor, requestsPerSecond float64, burst int) {
	if requestsPerSecond <= 0 && burst <= 0 {
		c.p.Store(nil)
		return
	}
	b := g.withDefaults(requestsPerSecond, burst)
	if l := c.p.Load(); l != nil {
		apply(l, b)
		return
	}
	c.p.Store(rate.NewLimiter(rate.Limit(b.rps), b.burst))
}

// get returns the bucket, or nil.
func (c *connLimiter) get() *rate.Limiter {
	if c == nil {
		return nil
	}
	return c.p.Load()
}

// Throttled records a 429 from host and pauses it: for hint when the server sent one, else for an
// exponential backoff with jitter (BaseBackoff doubling per consecutive 429, capped at MaxBackoff).
// A pause never shortens an existing one. It returns the end of the pause.
//
// A hint-less 429 that arrives while the vault is already paused answers a request that was in flight when
// the pause began: it belongs to the same throttling episode and neither escalates nor extends the backoff.
// Otherwise a burst of concurrent requests would climb the whole 1, 2, 4, 8, 16 s ladder at once.
func (g *Governor) Throttled(host string, hint time.Duration) time.Time {
	now := g.opts.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.state(host)
	if hint <= 0 && now.Before(s.pausedUntil) {
		return s.pausedUntil
	}
	s.throttles++
	pause := hint
	if pause <= 0 {
		pause = g.backoff(s.throttles)
	}
	if until := now.Add(pause); until.After(s.pausedUntil) {
		s.pausedUntil = until
	}
	return s.pausedUntil
}

// backoff is the hint-less pause after n consecutive 429s: BaseBackoff * 2^(n-1) times a jitter factor
// in [0.8, 1.2) (so processes sharing a vault do not return in the same instant), capped at MaxBackoff.
func (g *Governor) backoff(n int) time.Duration {
	d := g.opts.BaseBackoff
	for i := 1; i < n && d < g.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = time.Duration(float64(d) * (0.8 + 0.4*g.opts.Jitter()))
	if d > g.opts.MaxBackoff {
		d = g.opts.MaxBackoff
	}
	return d
}

// Succeeded records a non-429 answer from host: the hint-less backoff starts again at BaseBackoff.
// It does not cut a running pause short.
func (g *Governor) Succeeded(host string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s, ok := g.hosts[normalizeHost(host)]; ok {
		s.throttles = 0
	}
}

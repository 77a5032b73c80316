package keyvault

import (
	"context"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for pauses.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestGovernorPauseWithHint(t *testing.T) {
	clk := newFakeClock()
	g := NewGovernor(GovernorOptions{Now: clk.Now})
	const host = "v.vault.azure.net"

	if !g.PausedUntil(host).IsZero() {
		t.Fatal("a fresh host is paused")
	}
	until := g.Throttled(host, 5*time.Second)
	if want := clk.Now().Add(5 * time.Second); !until.Equal(want) || !g.PausedUntil(host).Equal(want) {
		t.Fatalf("paused until %v, want %v", until, want)
	}
	// Host keys are case-insensitive.
	if !g.PausedUntil("V.Vault.Azure.Net").Equal(until) {
		t.Fatal("host key is case-sensitive")
	}

	clk.Advance(2 * time.Second)
	err := g.Wait(context.Background(), host, "GetSecret")
	th, ok := AsThrottled(err)
	if !ok {
		t.Fatalf("want ThrottledError during the pause, got %v", err)
	}
	if th.RetryAfter != 3*time.Second || th.Code != CodeVaultPaused || !th.PausedUntil.Equal(until) || th.Operation != "GetSecret" {
		t.Fatalf("unexpected pause error %+v", th)
	}
	// A shorter hint never shortens the pause.
	if got := g.Throttled(host, time.Second); !got.Equal(until) {
		t.Fatalf("pause shortened to %v", got)
	}
	// Other hosts are not affected.
	if err := g.Wait(context.Background(), "other.vault.azure.net", "GetSecret"); err != nil {
		t.Fatalf("other host: %v", err)
	}

	clk.Advance(3 * time.Second)
	if err := g.Wait(context.Background(), host, "GetSecret"); err != nil {
		t.Fatalf("after the pause: %v", err)
	}
}

func TestGovernorBackoffWithoutHint(t *testing.T) {
	clk := newFakeClock()
	g := NewGovernor(GovernorOptions{Now: clk.Now, Jitter: func() float64 { return 0.5 }}) // factor 1.0
	const host = "v.vault.azure.net"
	for i, want := range []time.Duration{1, 2, 4, 8, 16, 16, 16} {
		until := g.Throttled(host, 0)
		if got := until.Sub(clk.Now()); got != want*time.Second {
			t.Fatalf("429 #%d: pause %v, want %v", i+1, got, want*time.Second)
		}
		clk.Advance(until.Sub(clk.Now()))
	}
	g.Succeeded(host)
	if got := g.Throttled(host, 0).Sub(clk.Now()); got != time.Second {
		t.Fatalf("after success the backoff restarts at 1s, got %v", got)
	}
}

// Concurrent requests that were in flight when the first 429 came back are throttled too; their 429s are one
// episode, not five consecutive ones: the pause stays at the first step of the ladder.
func TestGovernorInFlight429sDoNotEscalate(t *testing.T) {
	clk := newFakeClock()
	g := NewGovernor(GovernorOptions{Now: clk.Now, Jitter: func() float64 { return 0.5 }})
	const host = "v.vault.azure.net"
	first := g.Throttled(host, 0)
	for range 5 {
		clk.Advance(10 * time.Millisecond)
		if got := g.Throttled(host, 0); !got.Equal(first) {
			t.Fatalf("an in-flight 429 moved the pause from %v to %v", first, got)
		}
	}
	// The next 429 after the pause is the second step.
	clk.Advance(first.Sub(clk.Now()))
	if got := g.Throttled(host, 0).Sub(clk.Now()); got != 2*time.Second {
		t.Fatalf("second episode: pause %v, want 2s", got)
	}
	// A server hint still extends a running pause.
	until := g.PausedUntil(host)
	if got := g.Throttled(host, 10*time.Second); !got.After(until) {
		t.Fatalf("a 10s Retry-After did not extend the pause ending %v (got %v)", until, got)
	}
}

func TestGovernorBackoffJitterStaysCapped(t *testing.T) {
	clk := newFakeClock()
	g := NewGovernor(GovernorOptions{Now: clk.Now, Jitter: func() float64 { return 0.999 }})
	const host = "v.vault.azure.net"
	var last time.Duration
	for range 8 {
		until := g.Throttled(host, 0)
		last = until.Sub(clk.Now())
		clk.Advance(last)
	}
	if last != DefaultMaxBackoff {
		t.Fatalf("capped pause %v, want %v", last, DefaultMaxBackoff)
	}
	low := NewGovernor(GovernorOptions{Now: clk.Now, Jitter: func() float64 { return 0 }})
	if got := low.Throttled(host, 0).Sub(clk.Now()); got != 800*time.Millisecond {
		t.Fatalf("low jitter pause %v, want 800ms", got)
	}
}

func TestGovernorTokenBucket(t *testing.T) {
	g := NewGovernor(GovernorOptions{RequestsPerSecond: 1, Burst: 2, MaxWait: 50 * time.Millisecond})
	const host = "v.vault.azure.net"
	ctx := context.Background()
	for i := range 2 {
		if err := g.Wait(ctx, host, "GetCertificate"); err != nil {
			t.Fatalf("burst request %d: %v", i, err)
		}
	}
	// The third token is a second away, beyond MaxWait: fail fast, nothing consumed.
	start := time.Now()
	err := g.Wait(ctx, host, "GetCertificate")
	th, ok := AsThrottled(err)
	if !ok || th.Code != CodeClientRateLimited || th.RetryAfter <= 0 {
		t.Fatalf("want a local throttle, got %v", err)
	}
	if time.Since(start) > 40*time.Millisecond {
		t.Fatal("the local throttle blocked")
	}

	// A per-host override raises the budget.
	g.SetLimit(host, 1000, 5)
	time.Sleep(5 * time.Millisecond) // at 1000/s this refills several tokens
	if err := g.Wait(ctx, host, "GetCertificate"); err != nil {
		t.Fatalf("after SetLimit: %v", err)
	}
}

func TestGovernorWaitHonoursContext(t *testing.T) {
	g := NewGovernor(GovernorOptions{RequestsPerSecond: 10, Burst: 1, MaxWait: time.Minute})
	const host = "v.vault.azure.net"
	if err := g.Wait(context.Background(), host, "x"); err != nil {
		t.Fatal(err)
	}
	// The next token is ~100ms away; a cancelled context returns at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g.Wait(ctx, host, "x"); err != context.Canceled {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	// A deadline shorter than the wait fails fast with a local throttle.
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := g.Wait(ctx, host, "x"); !IsThrottled(err) {
		t.Fatalf("want a local throttle, got %v", err)
	}
}

package keyvault

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/vaultcert/vaultcert/internal/fakevault"
)

// TestSharedReadsReadAVersionOnce: many VaultCertificates naming one certificate through one connection (a
// wildcard certificate in many namespaces on a ClusterVaultConnection) read its key once per version, at once
// or one after another; another connection (another identity) reads it itself; "the latest" is never kept.
func TestSharedReadsReadAVersionOnce(t *testing.T) {
	e := newWebEnv(t)
	v, err := e.s.Latest("web")
	if err != nil {
		t.Fatal(err)
	}
	c := e.client()
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s, err := c.GetSecret(ctx, "web", v.Version); err != nil || s.Version != v.Version {
				t.Errorf("GetSecret: %v %v", s, err)
			}
		}()
	}
	wg.Wait()
	for range 5 {
		if _, err := c.GetSecret(ctx, "WEB", v.Version); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.s.CountFor(fakevault.OpGetSecret, "web"); n != 1 {
		t.Errorf("25 reads of one version through one connection reached Key Vault %d times, want 1", n)
	}
	other := e.clientFor(t, "ClusterVaultConnection/other", e.config(testSecret))
	if _, err := other.GetSecret(ctx, "web", v.Version); err != nil {
		t.Fatal(err)
	}
	if n := e.s.CountFor(fakevault.OpGetSecret, "web"); n != 2 {
		t.Errorf("another connection must read for itself: %d reads, want 2", n)
	}
	// "The latest" is kept for seconds only: a rotation is seen once that has passed.
	for range 3 {
		if s, err := c.GetSecret(ctx, "web", ""); err != nil || s.Version != v.Version {
			t.Fatalf("latest: %v %v", s, err)
		}
	}
	if n := e.s.CountFor(fakevault.OpGetSecret, "web"); n != 3 {
		t.Errorf("reads of the latest version within seconds: %d in all, want 3 (one more)", n)
	}
	v2, err := e.s.Rotate("web")
	if err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(sharedLatestTTL)
	if s, err := c.GetSecret(ctx, "web", ""); err != nil || s.Version != v2.Version {
		t.Errorf("after the rotation and %s the latest is %v (%v), want %s", sharedLatestTTL, s, err, v2.Version)
	}
}

// TestLatestSecretNewerThanHeld: told that a newer version than the one held exists (a listing, an event), a
// caller gets the new latest at once, not the kept read of seconds ago; a kept read that already names a newer
// version is shared as before.
func TestLatestSecretNewerThanHeld(t *testing.T) {
	e := newWebEnv(t)
	c := e.client()
	ctx := context.Background()
	v1, err := c.GetSecret(ctx, "web", "")
	if err != nil {
		t.Fatal(err)
	}
	v2, err := e.s.Rotate("web")
	if err != nil {
		t.Fatal(err)
	}
	if s, err := c.GetSecret(ctx, "web", ""); err != nil || s.Version != v1.Version {
		t.Fatalf("within seconds the shared latest is %v (%v), want the kept %s", s, err, v1.Version)
	}
	got, err := c.GetLatestSecret(ctx, "web", v1.Version)
	if err != nil || got.Version != v2.Version {
		t.Fatalf("GetLatestSecret(held %s) = %v (%v), want %s", v1.Version, got, err, v2.Version)
	}
	reads := e.s.CountFor(fakevault.OpGetSecret, "web")
	if got, err := c.GetLatestSecret(ctx, "web", v1.Version); err != nil || got.Version != v2.Version {
		t.Fatalf("second GetLatestSecret = %v (%v)", got, err)
	}
	if n := e.s.CountFor(fakevault.OpGetSecret, "web") - reads; n != 0 {
		t.Errorf("a kept latest naming a newer version than held was read again (%d reads), want it shared", n)
	}
}

// TestSharedReadsExpireAndStayBounded: kept key material goes after its TTL, and the bytes kept stay under the
// bound whatever a vault returns.
func TestSharedReadsExpireAndStayBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newSharedReads(func() time.Time { return now })
	reads := 0
	read := func(context.Context) (*Secret, error) {
		reads++
		return &Secret{Version: "v1", Value: string(make([]byte, 512<<10))}, nil
	}
	ctx := context.Background()
	for range 3 {
		if _, err := s.secret(ctx, keyOf(1, "GetSecret", "web", "v1"), sharedSecretTTL, nil, read); err != nil {
			t.Fatal(err)
		}
	}
	if reads != 1 {
		t.Fatalf("%d reads within the TTL, want 1", reads)
	}
	now = now.Add(sharedSecretTTL)
	if _, err := s.secret(ctx, keyOf(1, "GetSecret", "web", "v1"), sharedSecretTTL, nil, read); err != nil || reads != 2 {
		t.Fatalf("after the TTL the version is read again: %d reads (%v)", reads, err)
	}
	for i := range 200 {
		if _, err := s.secret(ctx, keyOf(uint64(i+2), "GetSecret", "web", "v1"), sharedSecretTTL, nil, read); err != nil {
			t.Fatal(err)
		}
	}
	if s.bytes > sharedMaxBytes || len(s.entries) != s.order.Len() {
		t.Errorf("%d bytes kept (bound %d), %d entries / %d in order", s.bytes, sharedMaxBytes, len(s.entries), s.order.Len())
	}
	s.forgetClient(201)
	if _, ok := s.kept(keyOf(201, "GetSecret", "web", "v1")); ok {
		t.Error("a forgotten client's reads are still kept")
	}
}

// TestCertificateCloneIsDeep: one caller changing what a shared read returned (tags, policy) changes nothing
// for another.
func TestCertificateCloneIsDeep(t *testing.T) {
	exp := true
	orig := &Certificate{CER: []byte{1}, Tags: map[string]string{"a": "1"}, Exportable: &exp,
		Policy: &Policy{DNSNames: []string{"x"}, AutoRenew: &LifetimeTrigger{LifetimePercentage: 80}}}
	cp := orig.clone()
	cp.CER[0], cp.Tags["a"], *cp.Exportable = 2, "2", false
	cp.Policy.DNSNames[0], cp.Policy.AutoRenew.LifetimePercentage = "y", 10
	if orig.CER[0] != 1 || orig.Tags["a"] != "1" || !*orig.Exportable || orig.Policy.DNSNames[0] != "x" || orig.Policy.AutoRenew.LifetimePercentage != 80 {
		t.Errorf("the clone shares memory with the original: %+v %+v", orig, orig.Policy)
	}
}

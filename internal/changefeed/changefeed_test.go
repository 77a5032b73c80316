package changefeed

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/vaultcert/vaultcert/internal/fakevault"
	"github.com/vaultcert/vaultcert/internal/keyvault"
)

const (
	testClientID = "11111111-2222-3333-4444-555555555555"
	testSecret   = "correct-horse-battery-staple"
	interval     = time.Hour
)

// env is one fake vault (through the real SDK, over TLS), a registry on a settable clock, and the certificates
// seeded in the vault with their thumbprints.
type env struct {
	t      *testing.T
	vault  *fakevault.Server
	kv     keyvault.Client
	reg    *Registry
	mu     sync.Mutex
	now    time.Time
	thumbs map[string]string
}

func newEnv(t *testing.T, certs int, opts Options) *env {
	t.Helper()
	vault, err := fakevault.Start(fakevault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vault.Close)
	vault.AddClientSecret(testClientID, testSecret)
	e := &env{t: t, vault: vault, now: time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC), thumbs: map[string]string{}}
	e.kv = e.client(testClientID, testSecret)
	for i := range certs {
		v, err := vault.Seed(fakevault.CertSpec{Name: fmt.Sprintf("cert-%03d", i), KeyType: "EC"})
		if err != nil {
			t.Fatal(err)
		}
		e.thumbs[v.Name] = v.Thumbprint
	}
	opts.Now = e.clock
	e.reg = NewRegistry(opts)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = e.reg.Start(ctx) }()
	for e.reg.Check(Query{}).Why == "the vault listing has not started" {
		time.Sleep(time.Millisecond)
	}
	vault.ResetCounts()
	return e
}

func (e *env) client(clientID, secret string) keyvault.Client {
	e.t.Helper()
	f := keyvault.NewFactory(keyvault.FactoryOptions{})
	kv, err := f.Client("VaultConnection/ns/"+clientID, keyvault.Config{
		VaultURL: e.vault.URL(),
		Auth:     keyvault.AuthConfig{Method: keyvault.AuthClientSecret, TenantID: e.vault.TenantID(), ClientID: clientID, ClientSecret: secret},
		Cloud: keyvault.CloudConfig{AuthorityHost: e.vault.AuthorityHost(), DisableInstanceDiscovery: true,
			DisableChallengeResourceVerification: true, CABundle: e.vault.CAPEM()},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return kv
}

func (e *env) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.now = e.now.Add(d)
}

// query is what the VaultCertificate "ns/<name>" holding thumbprint asks on connection conn.
func (e *env) query(conn string, kv keyvault.Client, name string, mayList bool) Query {
	return Query{Connection: conn, Client: kv, Certificate: name, Thumbprint: e.thumbs[name], MaxAge: interval,
		Who: types.NamespacedName{Namespace: "ns", Name: name}, MayList: mayList}
}

// woken waits for the registry to wake want VaultCertificates (by name) and returns them all.
func (e *env) woken(want int) map[string]bool {
	e.t.Helper()
	got := map[string]bool{}
	deadline := time.After(30 * time.Second)
	for len(got) < want {
		select {
		case ev := <-e.reg.Events():
			got[ev.Object.GetName()] = true
		case <-deadline:
			e.t.Fatalf("woken %d of %d VaultCertificates: %v", len(got), want, got)
		}
	}
	return got
}

func (e *env) names() []string {
	var out []string
	for n := range e.thumbs {
		out = append(out, n)
	}
	return out
}

// TestOneListingServesEveryCertificate: 60 certificates due at once cost one listing (3 pages of 25) and no
// read of their own; every one that waited is woken, then answered Unchanged from the listing.
func TestOneListingServesEveryCertificate(t *testing.T) {
	e := newEnv(t, 60, Options{})
	for _, n := range e.names() {
		if a := e.reg.Check(e.query("conn", e.kv, n, true)); a.Verdict != Waiting && a.Verdict != Unchanged {
			t.Fatalf("%s: verdict %v (%s), want Waiting or Unchanged", n, a.Verdict, a.Why)
		}
	}
	e.woken(60)
	for _, n := range e.names() {
		if a := e.reg.Check(e.query("conn", e.kv, n, true)); a.Verdict != Unchanged {
			t.Errorf("%s: verdict %v after the listing, want Unchanged", n, a.Verdict)
		}
	}
	if pages, reads := e.vault.Count(fakevault.OpListCertificates), e.vault.Count(fakevault.OpGetCertificate); pages != 3 || reads != 0 {
		t.Errorf("Key Vault saw %d list pages and %d certificate reads, want 3 and 0", pages, reads)
	}
}

// TestRotationWakesOnlyTheChangedCertificate: after the refresh interval a new listing is made; the rotated
// certificate's VaultCertificate is woken and told Changed, the others stay Unchanged.
func TestRotationWakesOnlyTheChangedCertificate(t *testing.T) {
	e := newEnv(t, 30, Options{})
	for _, n := range e.names() {
		e.reg.Check(e.query("conn", e.kv, n, true))
	}
	e.woken(30)
	if _, err := e.vault.Rotate("cert-007"); err != nil {
		t.Fatal(err)
	}
	e.advance(interval + time.Minute)
	if a := e.reg.Check(e.query("conn", e.kv, "cert-001", true)); a.Verdict != Waiting {
		t.Fatalf("a listing older than the interval must be renewed: verdict %v", a.Verdict)
	}
	got := e.woken(2)
	if !got["cert-001"] || !got["cert-007"] {
		t.Errorf("woken %v, want the waiter cert-001 and the rotated cert-007", got)
	}
	if a := e.reg.Check(e.query("conn", e.kv, "cert-007", false)); a.Verdict != Changed {
		t.Errorf("the rotated certificate: verdict %v, want Changed", a.Verdict)
	}
	if a := e.reg.Check(e.query("conn", e.kv, "cert-002", false)); a.Verdict != Unchanged {
		t.Errorf("an untouched certificate: verdict %v, want Unchanged", a.Verdict)
	}
	select {
	case ev := <-e.reg.Events():
		t.Errorf("%s was woken though its certificate did not change", ev.Object.GetName())
	default:
	}
}

// TestDisabledOrMissingIsChanged: a disabled latest version, or a certificate the listing does not show, must be
// read by the caller (which reports it).
func TestDisabledOrMissingIsChanged(t *testing.T) {
	e := newEnv(t, 3, Options{})
	v, err := e.vault.Latest("cert-001")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.vault.SetEnabled("cert-001", v.Version, false); err != nil {
		t.Fatal(err)
	}
	e.reg.Check(e.query("conn", e.kv, "cert-000", true))
	e.woken(1)
	for name, want := range map[string]Verdict{"cert-000": Unchanged, "cert-001": Changed, "no-such-cert": Changed} {
		if a := e.reg.Check(e.query("conn", e.kv, name, false)); a.Verdict != want {
			t.Errorf("%s: verdict %v, want %v", name, a.Verdict, want)
		}
	}
}

// TestNoListingWithoutMayList: a VaultCertificate that is not due never starts a listing.
func TestNoListingWithoutMayList(t *testing.T) {
	e := newEnv(t, 3, Options{})
	if a := e.reg.Check(e.query("conn", e.kv, "cert-000", false)); a.Verdict != Unavailable {
		t.Errorf("verdict %v, want Unavailable without a listing", a.Verdict)
	}
	if n := e.vault.Count(fakevault.OpListCertificates); n != 0 {
		t.Errorf("%d list pages, want none", n)
	}
}

// TestRefusedListingFallsBack: an identity with roles on single certificates gets 403 on a list; its
// certificates are read one by one (Unavailable, with what to assign), and listing is not retried at every
// refresh.
func TestRefusedListingFallsBack(t *testing.T) {
	e := newEnv(t, 3, Options{RetryRefused: 2 * time.Hour})
	e.vault.AddClientSecret("restricted", "s")
	e.vault.Restrict("restricted", "cert-000")
	kv := e.client("restricted", "s")
	e.reg.Check(e.query("restricted", kv, "cert-000", true))
	e.woken(1)
	a := e.reg.Check(e.query("restricted", kv, "cert-000", true))
	if a.Verdict != Unavailable || !strings.Contains(a.Why, "may not list") || !strings.Contains(a.Why, "Key Vault Certificate User") {
		t.Fatalf("verdict %v (%q), want Unavailable naming the role", a.Verdict, a.Why)
	}
	if why := e.reg.Unavailable("restricted"); why != a.Why {
		t.Errorf("the connection's reason %q, want %q", why, a.Why)
	}
	e.advance(interval + time.Minute) // due again, still within RetryRefused
	if a := e.reg.Check(e.query("restricted", kv, "cert-000", true)); a.Verdict != Unavailable {
		t.Errorf("verdict %v, want Unavailable until RetryRefused has passed", a.Verdict)
	}
	if n := e.vault.Count(fakevault.OpListCertificates); n != 1 {
		t.Errorf("%d list attempts, want 1", n)
	}
}

// TestListingsAreBounded: a vault listing more than MaxCertificates, or listings past MaxTotal over all
// connections, are not kept; their certificates are read one by one.
func TestListingsAreBounded(t *testing.T) {
	e := newEnv(t, 30, Options{MaxCertificates: 10})
	e.reg.Check(e.query("conn", e.kv, "cert-000", true))
	e.woken(1)
	if a := e.reg.Check(e.query("conn", e.kv, "cert-000", true)); a.Verdict != Unavailable || !strings.Contains(a.Why, "more than 10") {
		t.Errorf("verdict %v (%q), want Unavailable: more than 10 certificates", a.Verdict, a.Why)
	}

	e = newEnv(t, 30, Options{MaxTotal: 50})
	for _, conn := range []string{"first", "second"} {
		e.reg.Check(e.query(conn, e.kv, "cert-000", true))
		e.woken(1)
	}
	if a := e.reg.Check(e.query("first", e.kv, "cert-000", true)); a.Verdict != Unchanged {
		t.Errorf("first connection: verdict %v, want Unchanged", a.Verdict)
	}
	if a := e.reg.Check(e.query("second", e.kv, "cert-000", true)); a.Verdict != Unavailable {
		t.Errorf("second connection past the total budget: verdict %v, want Unavailable", a.Verdict)
	}
	e.reg.ForgetConnection("first")
	e.advance(DefaultRetryRefused + time.Minute)
	e.reg.Check(e.query("second", e.kv, "cert-000", true))
	e.woken(1)
	if a := e.reg.Check(e.query("second", e.kv, "cert-000", true)); a.Verdict != Unchanged {
		t.Errorf("after the first connection is forgotten the second fits: verdict %v (%s)", a.Verdict, a.Why)
	}
}

// TestCertificateEventWakesItsVaultCertificates: an Event Grid event for one certificate of the vault wakes the
// VaultCertificates following it, whose next look reads it (Changed) even though the listing is recent; events
// for another vault or another certificate wake nobody.
func TestCertificateEventWakesItsVaultCertificates(t *testing.T) {
	e := newEnv(t, 3, Options{})
	for _, n := range e.names() {
		e.reg.Check(e.query("conn", e.kv, n, true))
	}
	e.woken(3)
	host, err := keyvault.VaultHost(e.kv.VaultURL())
	if err != nil {
		t.Fatal(err)
	}
	if n := e.reg.Notify("other.vault.azure.net", "other", "cert-001", ""); n != 0 {
		t.Errorf("an event for another vault woke %d", n)
	}
	if n := e.reg.Notify(host, "", "no-such-cert", ""); n != 0 {
		t.Errorf("an event for another certificate woke %d", n)
	}
	if n := e.reg.Notify(host, "", "CERT-001", ""); n != 1 {
		t.Fatalf("the event woke %d VaultCertificates, want 1", n)
	}
	if got := e.woken(1); !got["cert-001"] {
		t.Errorf("woken %v, want cert-001", got)
	}
	if a := e.reg.Check(e.query("conn", e.kv, "cert-001", false)); a.Verdict != Changed {
		t.Errorf("after the event: verdict %v, want Changed", a.Verdict)
	}
	if a := e.reg.Check(e.query("conn", e.kv, "cert-001", false)); a.Verdict != Unchanged {
		t.Errorf("the event is acted on once: verdict %v, want Unchanged from the listing", a.Verdict)
	}
}

// TestSlowListingStillAnswersItsWaiters: a listing that takes longer than the refresh interval (a large or throttled
// vault) still answers the VaultCertificates that waited for it, instead of starting another listing for ever.
func TestSlowListingStillAnswersItsWaiters(t *testing.T) {
	e := newEnv(t, 3, Options{})
	e.vault.InjectFault(fakevault.Fault{Operation: fakevault.OpListCertificates, Latency: 500 * time.Millisecond, Times: 1})
	if a := e.reg.Check(e.query("conn", e.kv, "cert-000", true)); a.Verdict != Waiting {
		t.Fatalf("verdict %v, want Waiting", a.Verdict)
	}
	for e.vault.Count(fakevault.OpListCertificates) == 0 {
		time.Sleep(time.Millisecond) // the listing is under way (its answer delayed)
	}
	e.advance(interval + time.Minute) // the listing "took" longer than the interval
	e.woken(1)
	if a := e.reg.Check(e.query("conn", e.kv, "cert-000", true)); a.Verdict != Unchanged {
		t.Errorf("the waiter of a slow listing: verdict %v, want Unchanged from it", a.Verdict)
	}
	if n := e.vault.Count(fakevault.OpListCertificates); n != 1 {
		t.Errorf("%d list pages, want 1 (no second listing)", n)
	}
}

// TestAnotherRevisionIsNotAnsweredByTheOldListing: after the connection changed (another vault or identity), a
// listing made through the old one answers nothing.
func TestAnotherRevisionIsNotAnsweredByTheOldListing(t *testing.T) {
	e := newEnv(t, 3, Options{})
	q := e.query("conn", e.kv, "cert-000", true)
	q.Revision = "old"
	e.reg.Check(q)
	e.woken(1)
	if a := e.reg.Check(q); a.Verdict != Unchanged {
		t.Fatalf("verdict %v, want Unchanged at the same revision", a.Verdict)
	}
	q.Revision = "new"
	if a := e.reg.Check(q); a.Verdict != Waiting {
		t.Errorf("a new revision: verdict %v, want Waiting for a listing of its own", a.Verdict)
	}
}

// TestEventForTheVersionHeldChangesNothing: an event (replayed, or late) naming the version a VaultCertificate
// already holds costs no read.
func TestEventForTheVersionHeldChangesNothing(t *testing.T) {
	e := newEnv(t, 1, Options{})
	v, err := e.vault.Latest("cert-000")
	if err != nil {
		t.Fatal(err)
	}
	q := e.query("conn", e.kv, "cert-000", true)
	q.Version = v.Version
	e.reg.Check(q)
	e.woken(1)
	host, _ := keyvault.VaultHost(e.kv.VaultURL())
	e.reg.Notify(host, "", "cert-000", v.Version)
	e.woken(1)
	q.MayList = false
	if a := e.reg.Check(q); a.Verdict != Unchanged {
		t.Errorf("an event for the version held: verdict %v, want Unchanged", a.Verdict)
	}
}

// TestEventMarkLastsUntilTheVersionIsHeld: an event's mark survives a read that failed (the next look reads again),
// ends once the VaultCertificate holds the version, and ends anyway after noticeTTL (a version that never comes).
func TestEventMarkLastsUntilTheVersionIsHeld(t *testing.T) {
	e := newEnv(t, 1, Options{})
	q := e.query("conn", e.kv, "cert-000", true)
	q.Version = "v1"
	e.reg.Check(q)
	e.woken(1)
	host, _ := keyvault.VaultHost(e.kv.VaultURL())
	q.MayList = false
	e.reg.Notify(host, "", "cert-000", "v2")
	e.woken(1)
	for i := range 2 { // the first read failed: the mark holds
		if a := e.reg.Check(q); a.Verdict != Changed {
			t.Fatalf("look %d before v2 is held: verdict %v, want Changed", i, a.Verdict)
		}
	}
	q.Version, q.Thumbprint = "v2", "no-longer-the-listed-one"
	if a := e.reg.Check(q); a.Verdict == Waiting {
		t.Fatalf("verdict %v", a.Verdict)
	}
	q.Version, q.Thumbprint = "v1", e.thumbs["cert-000"]
	if a := e.reg.Check(q); a.Verdict != Unchanged {
		t.Errorf("after v2 was held the mark is gone: verdict %v, want Unchanged from the listing", a.Verdict)
	}
	e.reg.Notify(host, "", "cert-000", "never-comes")
	e.woken(1)
	e.advance(noticeTTL)
	if a := e.reg.Check(q); a.Verdict == Changed {
		t.Errorf("a mark older than %s still asks for reads", noticeTTL)
	}
}

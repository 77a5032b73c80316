package keyvault

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/vaultcert/vaultcert/internal/fakevault"
)

const (
	testClientID = "11111111-2222-3333-4444-555555555555"
	testSecret   = "correct-horse-battery-staple"
)

// testEnv is one fake vault, one governor on a fake clock and one factory, talking over TLS through the
// real SDK, the real challenge and the real token flow.
type testEnv struct {
	t   *testing.T
	s   *fakevault.Server
	clk *fakeClock
	gov *Governor
	f   *Factory
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	s, err := fakevault.Start(fakevault.Options{})
	if err != nil {
		t.Fatalf("start fake vault: %v", err)
	}
	t.Cleanup(s.Close)
	s.AddClientSecret(testClientID, testSecret)
	clk := newFakeClock()
	gov := NewGovernor(GovernorOptions{Now: clk.Now, Jitter: func() float64 { return 0.5 }})
	f := NewFactory(FactoryOptions{Governor: gov, UserAgent: "vaultcert-test", retry: fastRetry()})
	return &testEnv{t: t, s: s, clk: clk, gov: gov, f: f}
}

// fastRetry is the production retry policy with delays shrunk so a retried 503 costs milliseconds.
func fastRetry() *policy.RetryOptions {
	r := newRetryOptions()
	r.RetryDelay = 5 * time.Millisecond
	r.MaxRetryDelay = 20 * time.Millisecond
	return &r
}

// config is a client-secret connection to the fake vault, trusting its CA through CABundle.
func (e *testEnv) config(secret string) Config {
	return Config{
		VaultURL: e.s.URL(),
		Auth:     AuthConfig{Method: AuthClientSecret, TenantID: e.s.TenantID(), ClientID: testClientID, ClientSecret: secret},
		Cloud: CloudConfig{
			AuthorityHost:            e.s.AuthorityHost(),
			DisableInstanceDiscovery: true,
			// The fake listens on 127.0.0.1, which is not a subdomain of the challenge's vault.azure.net.
			DisableChallengeResourceVerification: true,
			CABundle:                             e.s.CAPEM(),
		},
	}
}

// newWebEnv is a testEnv holding the EC certificate "web" that most tests read.
func newWebEnv(t *testing.T) *testEnv {
	t.Helper()
	e := newTestEnv(t)
	e.seed(fakevault.CertSpec{Name: "web", KeyType: "EC"})
	return e
}

func (e *testEnv) client() Client {
	e.t.Helper()
	return e.clientFor(e.t, "VaultConnection/ns/"+e.t.Name(), e.config(testSecret))
}

// clientFor is the factory's client for key and cfg, failing t when the factory refuses them.
func (e *testEnv) clientFor(t *testing.T, key string, cfg Config) Client {
	t.Helper()
	c, err := e.f.Client(key, cfg)
	if err != nil {
		t.Fatalf("factory %s: %v", key, err)
	}
	return c
}

// errorAs returns the E in err's chain, failing t when there is none.
func errorAs[E error](t *testing.T, err error) E {
	t.Helper()
	var e E
	if !errors.As(err, &e) {
		t.Fatalf("want %T, got %T %v", e, err, err)
	}
	return e
}

func (e *testEnv) seed(spec fakevault.CertSpec) fakevault.Version {
	e.t.Helper()
	v, err := e.s.Seed(spec)
	if err != nil {
		e.t.Fatalf("seed %s: %v", spec.Name, err)
	}
	return v
}

func (e *testEnv) host() string {
	h, err := VaultHost(e.s.URL())
	if err != nil {
		e.t.Fatal(err)
	}
	return h
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestGetCertificateLatestAndVersioned(t *testing.T) {
	e := newTestEnv(t)
	v1 := e.seed(fakevault.CertSpec{Name: "web", KeyType: "EC", ChainDepth: 3, Tags: map[string]string{"team": "edge"}})
	v2, err := e.s.Rotate("web")
	if err != nil {
		t.Fatal(err)
	}
	c := e.client()
	ctx := ctxT(t)

	latest, err := c.GetCertificate(ctx, "web", "")
	if err != nil {
		t.Fatalf("latest: %v", err)
	}
	if latest.Version != v2.Version || latest.Name != "web" {
		t.Fatalf("latest is %s/%s, want web/%s", latest.Name, latest.Version, v2.Version)
	}
	if latest.Thumbprint != v2.Thumbprint || latest.Thumbprint != strings.ToUpper(latest.Thumbprint) {
		t.Errorf("thumbprint %s, want %s", latest.Thumbprint, v2.Thumbprint)
	}
	if !bytes.Equal(latest.CER, v2.Leaf.Raw) {
		t.Error("CER is not the leaf DER")
	}
	if latest.SecretID != v2.SecretID || !strings.HasSuffix(latest.ID, "/certificates/web/"+v2.Version) {
		t.Errorf("ids: %s %s", latest.ID, latest.SecretID)
	}
	if !latest.Enabled || latest.Created.IsZero() || latest.Updated.IsZero() || latest.NotBefore.IsZero() {
		t.Errorf("attributes: %+v", latest)
	}
	if !latest.Expires.Equal(v2.Leaf.NotAfter.Truncate(time.Second)) {
		t.Errorf("expires %v, want %v", latest.Expires, v2.Leaf.NotAfter)
	}
	if latest.ContentType != "application/x-pkcs12" || latest.Exportable == nil || !*latest.Exportable {
		t.Errorf("policy: contentType %q exportable %v", latest.ContentType, latest.Exportable)
	}
	if latest.Tags["team"] != "edge" {
		t.Errorf("tags %v", latest.Tags)
	}

	old, err := c.GetCertificate(ctx, "web", v1.Version)
	if err != nil {
		t.Fatalf("versioned: %v", err)
	}
	if old.Version != v1.Version || old.Thumbprint != v1.Thumbprint {
		t.Fatalf("got %s %s, want %s %s", old.Version, old.Thumbprint, v1.Version, v1.Thumbprint)
	}
}

func TestGetSecretPFXAndPEM(t *testing.T) {
	e := newTestEnv(t)
	pfx := e.seed(fakevault.CertSpec{Name: "pfx", KeyType: "EC", ChainDepth: 2})
	pfx2, err := e.s.Rotate("pfx")
	if err != nil {
		t.Fatal(err)
	}
	pemV := e.seed(fakevault.CertSpec{Name: "pem", KeyType: "EC", ChainDepth: 3, ContentType: "application/x-pem-file", ScrambleChain: true})
	noKey := e.seed(fakevault.CertSpec{Name: "nokey", KeyType: "EC", ContentType: "application/x-pem-file", NotExportable: true})
	c := e.client()
	ctx := ctxT(t)

	// The exact (older) version, not the latest.
	s, err := c.GetSecret(ctx, "pfx", pfx.Version)
	if err != nil {
		t.Fatalf("pfx: %v", err)
	}
	if s.Version != pfx.Version || s.ContentType != "application/x-pkcs12" {
		t.Fatalf("pfx secret %s", s)
	}
	der, err := base64.StdEncoding.DecodeString(s.Value)
	if err != nil {
		t.Fatal(err)
	}
	key, leaf, cas, err := pkcs12.DecodeChain(der, "")
	if err != nil {
		t.Fatalf("decode pfx: %v", err)
	}
	if key == nil || !bytes.Equal(leaf.Raw, pfx.Leaf.Raw) || len(cas) != 1 {
		t.Fatalf("pfx content: key %T, leaf matches %v, %d CAs", key, bytes.Equal(leaf.Raw, pfx.Leaf.Raw), len(cas))
	}
	if bytes.Equal(pfx.Leaf.Raw, pfx2.Leaf.Raw) {
		t.Fatal("rotation did not change the leaf")
	}
	if strings.Contains(s.String(), s.Value[:16]) || strings.Contains(fmtV(s), s.Value[:16]) {
		t.Fatal("the secret value leaks through formatting")
	}

	s, err = c.GetSecret(ctx, "pem", pemV.Version)
	if err != nil {
		t.Fatalf("pem: %v", err)
	}
	if s.ContentType != "application/x-pem-file" {
		t.Fatalf("content type %q", s.ContentType)
	}
	types, certs := pemBlocks(t, s.Value)
	if !types["PRIVATE KEY"] || len(certs) != 3 || !containsCert(certs, pemV.Leaf) {
		t.Fatalf("pem content: types %v, %d certificates", types, len(certs))
	}

	s, err = c.GetSecret(ctx, "nokey", noKey.Version)
	if err != nil {
		t.Fatalf("non-exportable: %v", err)
	}
	if types, _ := pemBlocks(t, s.Value); types["PRIVATE KEY"] || types["EC PRIVATE KEY"] {
		t.Fatal("a non-exportable certificate's secret carries a key")
	}
	cert, err := c.GetCertificate(ctx, "nokey", "")
	if err != nil {
		t.Fatal(err)
	}
	if cert.Exportable == nil || *cert.Exportable {
		t.Fatalf("exportable %v, want false", cert.Exportable)
	}

	// The latest version in one call: the answer names its version, so a rotation between calls cannot mix
	// one version's metadata with another's key.
	latest, err := c.GetSecret(ctx, "pfx", "")
	if err != nil {
		t.Fatal(err)
	}
	if latest.Version != pfx2.Version {
		t.Fatalf("the latest secret is version %s, want %s (after the rotation)", latest.Version, pfx2.Version)
	}
}

func fmtV(s *Secret) string {
	var b strings.Builder
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		b.WriteString(fmt.Sprintf(f, s))
	}
	return b.String()
}

func pemBlocks(t *testing.T, text string) (map[string]bool, []*x509.Certificate) {
	t.Helper()
	types := map[string]bool{}
	var certs []*x509.Certificate
	rest := []byte(text)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		types[b.Type] = true
		if b.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			certs = append(certs, c)
		}
	}
	return types, certs
}

func containsCert(certs []*x509.Certificate, want *x509.Certificate) bool {
	for _, c := range certs {
		if c.Equal(want) {
			return true
		}
	}
	return false
}

func TestListCertificateVersionsFollowsPages(t *testing.T) {
	e := newTestEnv(t)
	want := map[string]string{}
	v := e.seed(fakevault.CertSpec{Name: "many", KeyType: "EC"})
	want[v.Version] = v.Thumbprint
	for range 26 { // the service pages at 25
		v, err := e.s.Rotate("many")
		if err != nil {
			t.Fatal(err)
		}
		want[v.Version] = v.Thumbprint
	}
	if err := e.s.SetEnabled("many", v.Version, false); err != nil {
		t.Fatal(err)
	}
	c := e.client()
	e.s.ResetCounts()

	got, err := c.ListCertificateVersions(ctxT(t), "many")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d versions, want %d", len(got), len(want))
	}
	for _, g := range got {
		if want[g.Version] != g.Thumbprint {
			t.Errorf("version %s thumbprint %s, want %s", g.Version, g.Thumbprint, want[g.Version])
		}
		if g.Enabled != (g.Version != v.Version) {
			t.Errorf("version %s enabled=%v", g.Version, g.Enabled)
		}
		if g.Created.IsZero() || g.Expires.IsZero() {
			t.Errorf("version %s lacks times", g.Version)
		}
	}
	if n := e.s.Count(fakevault.OpGetCertificateVersions); n != 2 {
		t.Errorf("%d version pages fetched, want 2", n)
	}
	if _, err := c.ListCertificateVersions(ctxT(t), "absent"); !IsNotFound(err) {
		t.Errorf("absent certificate: %v", err)
	}
}

// urlRecorder is a transport that remembers request URLs (for query checks) and trusts the fake's CA.
type urlRecorder struct {
	next policy.Transporter
	mu   sync.Mutex
	urls []string
}

func (r *urlRecorder) Do(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.urls = append(r.urls, req.URL.String())
	r.mu.Unlock()
	return r.next.Do(req)
}

func TestCheckAccess(t *testing.T) {
	e := newTestEnv(t)
	e.seed(fakevault.CertSpec{Name: "a", KeyType: "EC"})
	e.seed(fakevault.CertSpec{Name: "b", KeyType: "EC"})
	rec := &urlRecorder{next: e.s.HTTPClient()}
	f := NewFactory(FactoryOptions{Governor: e.gov, Transport: rec, retry: fastRetry()})
	c, err := f.Client("ClusterVaultConnection/check", e.config(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	e.s.ResetCounts()
	if err := c.CheckAccess(ctxT(t)); err != nil {
		t.Fatalf("CheckAccess: %v", err)
	}
	if n := e.s.Count(fakevault.OpListCertificates); n != 1 {
		t.Errorf("%d list requests, want exactly one page", n)
	}
	sawMax := false
	for _, u := range rec.urls {
		if strings.Contains(u, "/certificates?") && strings.Contains(u, "maxresults=1") {
			sawMax = true
		}
	}
	if !sawMax {
		t.Errorf("no list request with maxresults=1 in %v", rec.urls)
	}

	// An identity limited to one certificate cannot list: 403 ForbiddenByRbac.
	e.s.Restrict(testClientID, "a")
	err = c.CheckAccess(ctxT(t))
	var fb *ForbiddenError
	if !errors.As(err, &fb) || fb.InnerCode != "ForbiddenByRbac" || fb.Operation != "CheckAccess" {
		t.Fatalf("restricted CheckAccess: %v", err)
	}
}

func TestErrorClasses(t *testing.T) {
	e := newTestEnv(t)
	v := e.seed(fakevault.CertSpec{Name: "web", KeyType: "EC"})
	c := e.client()
	ctx := ctxT(t)

	t.Run("404", func(t *testing.T) {
		_, err := c.GetCertificate(ctx, "missing", "")
		var nf *NotFoundError
		if !errors.As(err, &nf) || nf.Code != "CertificateNotFound" || nf.StatusCode != 404 {
			t.Fatalf("%T %v", err, err)
		}
		if _, err := c.GetSecret(ctx, "web", "0123456789abcdef0123456789abcdef"); !IsNotFound(err) {
			t.Fatalf("missing secret version: %v", err)
		}
	})
	t.Run("403 firewall", func(t *testing.T) {
		e.s.InjectFault(fakevault.Fault{Operation: fakevault.OpGetCertificate, Status: 403, InnerCode: "ForbiddenByFirewall", Times: 1})
		_, err := c.GetCertificate(ctx, "web", "")
		var fb *ForbiddenError
		if !errors.As(err, &fb) || fb.InnerCode != "ForbiddenByFirewall" || fb.Code != "Forbidden" || IsDisabled(err) {
			t.Fatalf("%T %v", err, err)
		}
		if !strings.Contains(err.Error(), "not authorized") {
			t.Errorf("message %q lacks the service's text", err.Error())
		}
	})
	t.Run("403 disabled", func(t *testing.T) {
		if err := e.s.SetEnabled("web", v.Version, false); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = e.s.SetEnabled("web", v.Version, true) }()
		_, err := c.GetSecret(ctx, "web", v.Version)
		var ds *DisabledError
		if !errors.As(err, &ds) || ds.InnerCode != "SecretDisabled" || IsForbidden(err) {
			t.Fatalf("%T %v", err, err)
		}
		cert, err := c.GetCertificate(ctx, "web", v.Version)
		if err != nil || cert.Enabled {
			t.Fatalf("disabled version metadata: %v %+v", err, cert)
		}
	})
	t.Run("409", func(t *testing.T) {
		e.s.InjectFault(fakevault.Fault{Operation: fakevault.OpGetCertificate, Status: 409, InnerCode: "ObjectIsBeingDeleted", Times: 1})
		_, err := c.GetCertificate(ctx, "web", "")
		var cf *ConflictError
		if !errors.As(err, &cf) || cf.InnerCode != "ObjectIsBeingDeleted" {
			t.Fatalf("%T %v", err, err)
		}
	})
	t.Run("500 after retries", func(t *testing.T) {
		e.s.InjectFault(fakevault.Fault{Operation: fakevault.OpGetCertificate, Status: 500, Times: 4})
		e.s.ResetCounts()
		_, err := c.GetCertificate(ctx, "web", "")
		var se *ServiceError
		if !errors.As(err, &se) || se.StatusCode != 500 {
			t.Fatalf("%T %v", err, err)
		}
		if n := e.s.Count(fakevault.OpGetCertificate); n != 1+sdkMaxRetries {
			t.Errorf("%d tries, want %d", n, 1+sdkMaxRetries)
		}
	})
	t.Run("context deadline passes through", func(t *testing.T) {
		e.s.InjectFault(fakevault.Fault{Operation: fakevault.OpGetCertificate, Kind: fakevault.FaultTimeout, Times: 1})
		short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		_, err := c.GetCertificate(short, "web", "")
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "GetCertificate") {
			t.Fatalf("%T %v", err, err)
		}
	})
}

func TestAuthenticationErrors(t *testing.T) {
	e := newWebEnv(t)
	ctx := ctxT(t)

	t.Run("wrong client secret", func(t *testing.T) {
		c := e.clientFor(t, "VaultConnection/ns/wrong", e.config("wrong-secret"))
		_, err := c.GetCertificate(ctx, "web", "")
		ae := errorAs[*AuthenticationError](t, err)
		if ae.StatusCode != 401 || ae.Code != "invalid_client" || !strings.HasPrefix(ae.Message, "AADSTS7000215") ||
			len(ae.EntraCodes) != 1 || ae.EntraCodes[0] != 7000215 {
			t.Errorf("details: %d %q %q %v", ae.StatusCode, ae.Code, ae.Message, ae.EntraCodes)
		}
		if strings.Contains(err.Error(), "wrong-secret") || strings.Contains(err.Error(), "\n") {
			t.Errorf("message %q", err.Error())
		}
		if IsUnauthorized(err) {
			t.Error("a token failure is not a vault 401")
		}
	})
	t.Run("challenge names another tenant", func(t *testing.T) {
		cfg := e.config(testSecret)
		cfg.Auth.TenantID = "00000000-0000-0000-0000-000000000001"
		c := e.clientFor(t, "VaultConnection/ns/tenant", cfg)
		e.s.ResetCounts()
		if _, err := c.GetCertificate(ctx, "web", ""); !IsAuthentication(err) {
			t.Fatalf("%T %v", err, err)
		}
		if n := e.s.Count(fakevault.OpToken); n != 0 {
			t.Errorf("%d token requests for a foreign tenant, want 0", n)
		}
	})
	t.Run("revoked token is a vault 401 and the next Client call rebuilds", func(t *testing.T) {
		const key = "VaultConnection/ns/revoked"
		c := e.clientFor(t, key, e.config(testSecret))
		if _, err := c.GetCertificate(ctx, "web", ""); err != nil {
			t.Fatal(err)
		}
		e.s.RevokeTokens()
		// The challenge is answered from the credential's token cache, so the vault's 401 stands.
		_, err := c.GetCertificate(ctx, "web", "")
		var ua *UnauthorizedError
		if !errors.As(err, &ua) || ua.StatusCode != 401 || IsAuthentication(err) {
			t.Fatalf("%T %v", err, err)
		}
		// The factory drops a client whose token the vault refused: a new credential, a new token.
		fresh := e.clientFor(t, key, e.config(testSecret))
		if fresh == c {
			t.Fatal("the refused client was reused")
		}
		if _, err := fresh.GetCertificate(ctx, "web", ""); err != nil {
			t.Fatalf("after rebuild: %v", err)
		}
	})
}

func TestThrottling(t *testing.T) {
	e := newWebEnv(t)
	c := e.client()
	ctx := ctxT(t)
	host := e.host()
	if _, err := c.GetCertificate(ctx, "web", ""); err != nil { // challenge and token out of the way
		t.Fatal(err)
	}

	cases := []struct {
		name  string
		fault fakevault.Fault
		hint  time.Duration
		pause time.Duration
	}{
		{"Retry-After seconds", fakevault.Fault{RetryAfter: "7"}, 7 * time.Second, 7 * time.Second},
		{"Retry-After-Ms", fakevault.Fault{RetryAfterMs: "1500", RetryAfter: "9"}, 1500 * time.Millisecond, 1500 * time.Millisecond},
		{"no hint", fakevault.Fault{}, 0, time.Second}, // first hint-less 429: 1 s (jitter fixed at 1.0)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.fault
			f.Operation, f.Status, f.Times = fakevault.OpGetCertificate, 429, 1
			e.s.InjectFault(f)
			e.s.ResetCounts()
			before := testutil.ToFloat64(throttledTotal.WithLabelValues(host))

			_, err := c.GetCertificate(ctx, "web", "")
			th, ok := AsThrottled(err)
			if !ok {
				t.Fatalf("%T %v", err, err)
			}
			if th.RetryAfter != tc.hint || th.Code != "Throttled" || th.StatusCode != 429 {
				t.Errorf("RetryAfter %v code %q, want %v Throttled", th.RetryAfter, th.Code, tc.hint)
			}
			if want := e.clk.Now().Add(tc.pause); !th.PausedUntil.Equal(want) || !e.gov.PausedUntil(host).Equal(want) {
				t.Errorf("paused until %v (governor %v), want %v", th.PausedUntil, e.gov.PausedUntil(host), want)
			}
			// The SDK did not retry the 429: the governor owns that wait.
			if n := e.s.Count(fakevault.OpGetCertificate); n != 1 {
				t.Errorf("fake saw %d GetCertificate, want 1", n)
			}
			if got := testutil.ToFloat64(throttledTotal.WithLabelValues(host)); got != before+1 {
				t.Errorf("throttled counter %v, want %v", got, before+1)
			}

			// During the pause calls fail fast and nothing reaches the vault.
			e.s.ResetCounts()
			e.clk.Advance(tc.pause / 2)
			_, err = c.GetSecret(ctx, "web", "0123456789abcdef0123456789abcdef")
			paused, ok := AsThrottled(err)
			if !ok || paused.Code != CodeVaultPaused || paused.Operation != "GetSecret" {
				t.Fatalf("during the pause: %T %v", err, err)
			}
			if want := tc.pause - tc.pause/2; paused.RetryAfter != want {
				t.Errorf("remaining pause %v, want %v", paused.RetryAfter, want)
			}
			if counts := e.s.Counts(); len(counts) != 0 {
				t.Errorf("the fake saw requests during the pause: %v", counts)
			}

			// After the pause the vault is asked again.
			e.clk.Advance(tc.pause)
			if _, err := c.GetCertificate(ctx, "web", ""); err != nil {
				t.Fatalf("after the pause: %v", err)
			}
		})
	}
}

func TestServiceUnavailableIsRetriedBySDK(t *testing.T) {
	e := newWebEnv(t)
	c := e.client()
	ctx := ctxT(t)
	if _, err := c.GetCertificate(ctx, "web", ""); err != nil {
		t.Fatal(err)
	}
	e.s.InjectFault(fakevault.Fault{Operation: fakevault.OpGetCertificate, Status: 503, Times: 1})
	e.s.ResetCounts()
	if _, err := c.GetCertificate(ctx, "web", ""); err != nil {
		t.Fatalf("a single 503 must be retried away: %v", err)
	}
	if n := e.s.Count(fakevault.OpGetCertificate); n != 2 {
		t.Errorf("fake saw %d GetCertificate, want 2 (one retry)", n)
	}
	if !e.gov.PausedUntil(e.host()).IsZero() {
		t.Error("a 503 paused the vault")
	}
}

func TestRetryOptionsLeave429ToGovernor(t *testing.T) {
	r := newRetryOptions()
	for _, s := range r.StatusCodes {
		if s == http.StatusTooManyRequests {
			t.Fatal("the SDK retries 429")
		}
	}
	if r.MaxRetries != 3 || r.RetryDelay != 800*time.Millisecond || r.MaxRetryDelay != 10*time.Second || r.TryTimeout != 30*time.Second {
		t.Fatalf("retry options %+v", r)
	}
}

func TestFactoryReuseAndRebuild(t *testing.T) {
	e := newWebEnv(t)
	ctx := ctxT(t)
	const key = "VaultConnection/ns/conn"

	bad := e.clientFor(t, key, e.config("old-revoked-secret"))
	again := e.clientFor(t, key, e.config("old-revoked-secret"))
	if bad != again {
		t.Fatal("an unchanged config built a new client")
	}
	if _, err := bad.GetCertificate(ctx, "web", ""); !IsAuthentication(err) {
		t.Fatalf("old secret: %v", err)
	}

	// The credential Secret is fixed: the factory rebuilds, and the fake accepts the new secret.
	e.s.ResetCounts()
	good := e.clientFor(t, key, e.config(testSecret))
	if good == bad {
		t.Fatal("a changed client secret reused the old client")
	}
	if _, err := good.GetCertificate(ctx, "web", ""); err != nil {
		t.Fatalf("new secret: %v", err)
	}
	if n := e.s.Count(fakevault.OpToken); n != 1 {
		t.Errorf("%d token requests, want 1 accepted with the new secret", n)
	}

	// A changed rate limit does not rebuild: it is applied to the cached client (TestConnectionRateLimit).
	cfg := e.config(testSecret)
	cfg.RequestsPerSecond, cfg.Burst = 50, 10
	same, err := e.f.Client(key, cfg)
	if err != nil || same != good {
		t.Fatalf("rate limit change rebuilt the client: %v", err)
	}
	if lim := good.(*azureClient).limit.get(); lim == nil || lim.Limit() != 50 || lim.Burst() != 10 {
		t.Errorf("connection budget %v, want 50/10", lim)
	}

	// Forget drops it.
	e.f.Forget(key)
	fresh, err := e.f.Client(key, e.config(testSecret))
	if err != nil || fresh == good {
		t.Fatalf("Forget kept the client: %v", err)
	}
	e.f.Forget("never-seen")
}

func TestFactoryConcurrentUse(t *testing.T) {
	e := newWebEnv(t)
	ctx := ctxT(t)
	var wg sync.WaitGroup
	clients := make([]Client, 16)
	errs := make([]error, 16)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			clients[i], errs[i] = e.f.Client("VaultConnection/ns/shared", e.config(testSecret))
			if errs[i] == nil {
				_, errs[i] = clients[i].GetCertificate(ctx, "web", "")
			}
		}()
	}
	wg.Wait()
	for i := range clients {
		if errs[i] != nil {
			t.Fatalf("worker %d: %v", i, errs[i])
		}
		if clients[i] != clients[0] {
			t.Fatal("concurrent callers got different clients for one key")
		}
	}
}

func TestClientCertificateCredential(t *testing.T) {
	e := newWebEnv(t)
	// MSAL signs client assertions with RS256/PS256 only: the key must be RSA.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	cert := clientCertificate(t, key, "vaultcert-test-sp")
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	bundle := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})...)
	const certClient = "99999999-8888-7777-6666-555555555555"
	e.s.AddClientCertificate(certClient, cert)

	cfg := e.config("")
	cfg.Auth = AuthConfig{Method: AuthClientCertificate, TenantID: e.s.TenantID(), ClientID: certClient, ClientCertificate: bundle}
	c := e.clientFor(t, "VaultConnection/ns/cert", cfg)
	e.s.ResetCounts()
	got, err := c.GetCertificate(ctxT(t), "web", "")
	if err != nil {
		t.Fatalf("client certificate auth: %v", err)
	}
	if got.Name != "web" || e.s.Count(fakevault.OpToken) != 1 {
		t.Fatalf("got %s, %d token requests", got.Name, e.s.Count(fakevault.OpToken))
	}
}

func TestWorkloadIdentityCredential(t *testing.T) {
	e := newWebEnv(t)
	const wiClient = "77777777-6666-5555-4444-333333333333"
	const issuer, subject = "https://oidc.example/cluster", "system:serviceaccount:ns:sa"
	e.federate(t, wiClient, issuer, subject)
	var calls int
	var mu sync.Mutex
	cfg := e.config("")
	cfg.Auth = AuthConfig{
		Method: AuthWorkloadIdentity, TenantID: e.s.TenantID(), ClientID: wiClient, AssertionKey: "ns/sa",
		Assertion: func(ctx context.Context) (string, error) {
			mu.Lock()
			calls++
			mu.Unlock()
			return unsignedJWT(t, issuer, subject), nil
		},
	}
	c := e.clientFor(t, "VaultConnection/ns/wi", cfg)
	if _, err := c.GetCertificate(ctxT(t), "web", ""); err != nil {
		t.Fatalf("workload identity: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls == 0 {
		t.Fatal("the assertion source was never asked")
	}

	// A failing assertion source (the TokenRequest was refused) is an authentication failure.
	cfg.Auth.AssertionKey = "ns/broken"
	cfg.Auth.Assertion = func(context.Context) (string, error) {
		return "", errors.New("serviceaccounts/token is forbidden")
	}
	broken := e.clientFor(t, "VaultConnection/ns/wi-broken", cfg)
	_, err := broken.GetCertificate(ctxT(t), "web", "")
	if !IsAuthentication(err) || !strings.Contains(err.Error(), "serviceaccounts/token is forbidden") {
		t.Fatalf("%T %v", err, err)
	}
}

// unsignedJWT is a ServiceAccount-like token signed with assertionKey, which the test registers as the
// issuer's key: the fake checks iss, sub, aud, exp and the signature.
func unsignedJWT(t *testing.T, issuer, subject string) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.RegisteredClaims{
		Issuer:    issuer,
		Subject:   subject,
		Audience:  jwt.ClaimStrings{"api://AzureADTokenExchange"},
		IssuedAt:  jwt.NewNumericDate(time.Now()),
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}).SignedString(assertionKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestMetricsRecorded(t *testing.T) {
	e := newWebEnv(t)
	c := e.client()
	host := e.host()
	ctx := ctxT(t)

	ok := requestsTotal.WithLabelValues(host, "GetCertificate", "200")
	challenge := requestsTotal.WithLabelValues(host, "GetCertificate", "401")
	notFound := requestsTotal.WithLabelValues(host, "GetCertificate", "404")
	okBefore, chBefore, nfBefore := testutil.ToFloat64(ok), testutil.ToFloat64(challenge), testutil.ToFloat64(notFound)

	if _, err := c.GetCertificate(ctx, "web", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetCertificate(ctx, "missing", ""); !IsNotFound(err) {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(ok) - okBefore; got != 1 {
		t.Errorf("200 counter +%v, want +1", got)
	}
	if got := testutil.ToFloat64(challenge) - chBefore; got != 1 {
		t.Errorf("401 (challenge) counter +%v, want +1", got)
	}
	if got := testutil.ToFloat64(notFound) - nfBefore; got != 1 {
		t.Errorf("404 counter +%v, want +1", got)
	}

	// The collectors live on controller-runtime's registry, with the documented names.
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var histCount uint64
	seen := map[string]bool{}
	for _, mf := range families {
		seen[mf.GetName()] = true
		if mf.GetName() != MetricRequestDuration {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labels(m)["vault"] == host && labels(m)["operation"] == "GetCertificate" {
				histCount += m.GetHistogram().GetSampleCount()
			}
		}
	}
	if !seen[MetricRequestsTotal] || !seen[MetricRequestDuration] || !seen[MetricThrottledTotal] {
		t.Errorf("metrics missing from the registry: %v", seen)
	}
	if histCount != 3 {
		t.Errorf("%d duration samples, want 3 (challenge, 200, 404)", histCount)
	}
	registerMetrics() // idempotent
	NewFactory(FactoryOptions{})
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func TestGetSecretDecodeErrorIsRedacted(t *testing.T) {
	e := newTestEnv(t)
	v := e.seed(fakevault.CertSpec{Name: "web", KeyType: "EC", ContentType: "application/x-pem-file"})
	c := e.client()
	ctx := ctxT(t)
	// Read through another connection: this one keeps a version's key it read (sharedReads).
	good, err := e.clientFor(t, "VaultConnection/ns/other", e.config(testSecret)).GetSecret(ctx, "web", v.Version)
	if err != nil {
		t.Fatal(err)
	}
	e.s.InjectFault(fakevault.Fault{Operation: fakevault.OpGetSecret, Kind: fakevault.FaultMalformed, Times: 1})
	_, err = c.GetSecret(ctx, "web", v.Version)
	if err == nil {
		t.Fatal("a malformed body decoded")
	}
	t.Logf("malformed secret response: %v", err)
	if strings.Contains(err.Error(), "BEGIN") || strings.Contains(err.Error(), good.Value[40:60]) {
		t.Fatalf("error leaks the body: %v", err)
	}
}

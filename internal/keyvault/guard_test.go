package keyvault

import (
	"bytes"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vaultcert/vaultcert/internal/fakevault"
)

// hostileServer is a TLS server for adversarial tests: it counts the requests that reach it.
type hostileServer struct {
	*httptest.Server
	requests atomic.Int64
}

func newHostileServer(t *testing.T, handle http.HandlerFunc) *hostileServer {
	t.Helper()
	h := &hostileServer{}
	h.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.requests.Add(1)
		handle(w, r)
	}))
	h.Config.ErrorLog = log.New(io.Discard, "", 0) // clients hang up on purpose
	h.StartTLS()
	t.Cleanup(h.Close)
	return h
}

// url is the server's base URL with the trailing slash vault URLs and authority hosts have.
func (h *hostileServer) url() string { return h.URL + "/" }

// hostPort is the server's host as AllowedHosts compares it.
func (h *hostileServer) hostPort() string {
	u, _ := url.Parse(h.URL)
	return requestHostPort(u)
}

// caPEM is the server's (self-signed) certificate, to trust through CloudConfig.CABundle.
func (h *hostileServer) caPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.Certificate().Raw})
}

// hostileVault plays Key Vault up to authentication: a request without a token gets the challenge naming the
// fake's tenant, so the real SDK gets a real token from the fake authority before handle sees the request.
func (e *testEnv) hostileVault(handle http.HandlerFunc) *hostileServer {
	return newHostileServer(e.t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			w.Header().Set("WWW-Authenticate",
				`Bearer authorization="https://login.microsoftonline.com/`+e.s.TenantID()+`", resource="https://vault.azure.net"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		handle(w, r)
	})
}

// configWith is e.config(testSecret) with the vault and/or the authority moved to hostile servers (nil
// keeps the fake), trusting them too.
func (e *testEnv) configWith(vault, authority *hostileServer) Config {
	cfg := e.config(testSecret)
	for _, h := range []*hostileServer{vault, authority} {
		if h != nil {
			cfg.Cloud.CABundle = append(cfg.Cloud.CABundle, h.caPEM()...)
		}
	}
	if vault != nil {
		cfg.VaultURL = vault.url()
	}
	if authority != nil {
		cfg.Cloud.AuthorityHost = authority.url()
	}
	return cfg
}

// accepting answers every request 200 with an empty JSON object: it would take whatever is sent.
func accepting(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{}`))
}

// A vault outside AllowedHosts gets nothing: not the challenge probe, not a call, through the factory's own
// transport and through an injected one.
func TestAllowedHostsRefuseVault(t *testing.T) {
	e := newTestEnv(t)
	evil := newHostileServer(t, accepting)
	cfg := e.configWith(evil, nil)
	cfg.AllowedHosts = []string{e.host()} // the authority only
	c := e.clientFor(t, "VaultConnection/ns/evil", cfg)
	ctx := ctxT(t)
	e.s.ResetCounts()

	_, err := c.GetCertificate(ctx, "web", "")
	var hn *HostNotAllowedError
	if !errors.As(err, &hn) || !IsHostNotAllowed(err) || !errors.Is(err, ErrHostNotAllowed) || hn.Host != evil.hostPort() {
		t.Fatalf("%T %v", err, err)
	}
	want := `vaultcert refused to send a request to host "` + evil.hostPort() + `": not among the hosts allowed for this connection (` + e.host() + `)`
	if err.Error() != want {
		t.Errorf("message %q, want %q", err.Error(), want)
	}
	if IsAuthentication(err) || IsThrottled(err) {
		t.Errorf("misclassified: %v", err)
	}
	for name, call := range map[string]func() error{
		"GetSecret":               func() error { _, err := c.GetSecret(ctx, "web", "0123456789abcdef0123456789abcdef"); return err },
		"ListCertificateVersions": func() error { _, err := c.ListCertificateVersions(ctx, "web"); return err },
		"CheckAccess":             func() error { return c.CheckAccess(ctx) },
		"CreateCertificate": func() error {
			_, err := c.CreateCertificate(ctx, "web", Policy{IssuerName: IssuerSelf}, nil)
			return err
		},
	} {
		if err := call(); !IsHostNotAllowed(err) {
			t.Errorf("%s: %T %v", name, err, err)
		}
	}
	if n := evil.requests.Load(); n != 0 {
		t.Fatalf("the vault outside the allow-list got %d requests", n)
	}
	if counts := e.s.Counts(); len(counts) != 0 {
		t.Errorf("the authority was asked for a token for a refused vault: %v", counts)
	}

	// A transport injected through FactoryOptions (as tests do) is guarded the same way.
	rec := &urlRecorder{next: e.s.HTTPClient()}
	f := NewFactory(FactoryOptions{Governor: e.gov, Transport: rec, retry: fastRetry()})
	cfg = e.config(testSecret)
	cfg.AllowedHosts = []string{"myvault.vault.azure.net", "login.microsoftonline.com"}
	c, err = f.Client("VaultConnection/ns/injected", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetCertificate(ctx, "web", ""); !IsHostNotAllowed(err) {
		t.Fatalf("%T %v", err, err)
	}
	if len(rec.urls) != 0 {
		t.Fatalf("the injected transport sent %v", rec.urls)
	}
}

// An authority outside AllowedHosts gets nothing, and the failure is the allow-list's, not the identity's.
func TestAllowedHostsRefuseAuthority(t *testing.T) {
	e := newWebEnv(t)
	authority := newHostileServer(t, accepting)
	cfg := e.configWith(nil, authority)
	cfg.AllowedHosts = []string{e.host()}
	c := e.clientFor(t, "VaultConnection/ns/authority", cfg)
	e.s.ResetCounts()
	_, err := c.GetCertificate(ctxT(t), "web", "")
	var hn *HostNotAllowedError
	if !errors.As(err, &hn) || hn.Host != authority.hostPort() || IsAuthentication(err) {
		t.Fatalf("%T %v", err, err)
	}
	if n := authority.requests.Load(); n != 0 {
		t.Fatalf("the authority outside the allow-list got %d requests", n)
	}
	if n := e.s.Count(fakevault.OpChallenge); n != 1 {
		t.Errorf("%d challenge probes to the allowed vault, want 1", n)
	}

	// With both hosts allowed (an entry's case and explicit port do not matter), everything works.
	cfg = e.config(testSecret)
	cfg.AllowedHosts = []string{"LOGIN.example", strings.ToUpper(e.host())}
	c = e.clientFor(t, "VaultConnection/ns/allowed", cfg)
	if _, err := c.GetCertificate(ctxT(t), "web", ""); err != nil {
		t.Fatalf("allowed hosts: %v", err)
	}
}

// A redirect is never followed: not from a vault answering an authenticated call (the token would go along),
// not from an authority.
func TestRedirectsAreNotFollowed(t *testing.T) {
	e := newWebEnv(t)
	target := newHostileServer(t, accepting)
	redirect := func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+r.URL.RequestURI(), http.StatusFound)
	}
	ctx := ctxT(t)

	vault := e.hostileVault(redirect)
	c := e.clientFor(t, "VaultConnection/ns/redirecting-vault", e.configWith(vault, nil))
	_, err := c.GetCertificate(ctx, "web", "")
	var se *ServiceError
	if !errors.As(err, &se) || se.StatusCode != http.StatusFound {
		t.Fatalf("%T %v", err, err)
	}
	if vault.requests.Load() != 2 { // the challenge probe, then the call with a token
		t.Errorf("the vault saw %d requests, want 2", vault.requests.Load())
	}

	authority := newHostileServer(t, redirect)
	c = e.clientFor(t, "VaultConnection/ns/redirecting-authority", e.configWith(nil, authority))
	if _, err := c.GetCertificate(ctx, "web", ""); !IsAuthentication(err) {
		t.Fatalf("%T %v", err, err)
	}
	if authority.requests.Load() == 0 {
		t.Error("the authority was never asked")
	}
	if n := target.requests.Load(); n != 0 {
		t.Fatalf("a redirect was followed: the target got %d requests", n)
	}
}

// streamBody answers 200 with a JSON object whose "value" is size bytes, written in chunks as the client
// reads (never held in memory), with or without an honest Content-Length. written counts what went out.
func streamBody(size int64, contentLength bool, written *atomic.Int64, done chan<- struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		defer func() { done <- struct{}{} }()
		prefix, suffix := []byte(`{"value":"`), []byte(`"}`)
		if contentLength {
			w.Header().Set("Content-Length", strconv.FormatInt(size+int64(len(prefix)+len(suffix)), 10))
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(prefix)
		chunk := bytes.Repeat([]byte("A"), 64<<10)
		for sent := int64(0); sent < size; sent += int64(len(chunk)) {
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return // the client hung up
			}
		}
		_, _ = w.Write(suffix)
	}
}

const hugeBody = 64 << 20

// A vault or an authority answering 64 MiB fails the call with the size error, without the process ever
// holding the body: the read stops at the cap.
func TestOversizedResponses(t *testing.T) {
	e := newWebEnv(t)
	ctx := ctxT(t)

	wait := func(t *testing.T, done <-chan struct{}, written *atomic.Int64) {
		t.Helper()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Fatal("the hostile handler is still writing: the client did not hang up")
		}
		if n := written.Load(); n >= hugeBody/2 {
			t.Errorf("the client let the server write %d MiB", n>>20)
		}
	}
	checkErr := func(t *testing.T, err error) {
		t.Helper()
		var tl *ResponseTooLargeError
		if !errors.As(err, &tl) || !IsResponseTooLarge(err) || tl.Limit != MaxResponseBytes {
			t.Fatalf("%T %v", err, err)
		}
		if !strings.Contains(err.Error(), "exceeds 4 MiB") || strings.Contains(err.Error(), "AAAA") {
			t.Errorf("message %q", err.Error())
		}
	}

	for _, tc := range []struct {
		name          string
		contentLength bool
		call          func(Client) error
	}{
		{"GetSecret streamed", false, func(c Client) error {
			_, err := c.GetSecret(ctx, "web", "0123456789abcdef0123456789abcdef")
			return err
		}},
		{"GetCertificate streamed", false, func(c Client) error { _, err := c.GetCertificate(ctx, "web", ""); return err }},
		{"GetSecret with Content-Length", true, func(c Client) error {
			_, err := c.GetSecret(ctx, "web", "0123456789abcdef0123456789abcdef")
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var written atomic.Int64
			done := make(chan struct{}, 4)
			vault := e.hostileVault(streamBody(hugeBody, tc.contentLength, &written, done))
			c := e.clientFor(t, "VaultConnection/ns/"+t.Name(), e.configWith(vault, nil))
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := tc.call(c)
			runtime.ReadMemStats(&after)
			checkErr(t, err)
			if tl := new(ResponseTooLargeError); errors.As(err, &tl) && tl.Host != vault.hostPort() {
				t.Errorf("the error names %s, want %s", tl.Host, vault.hostPort())
			}
			// Everything the call allocated, the server's writes included, stays far below the body.
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 32<<20 {
				t.Errorf("the call allocated %d MiB", grew>>20)
			}
			if n := vault.requests.Load(); n != 2 {
				t.Errorf("the vault saw %d requests, want 2 (challenge, one try: no retry of an oversized body)", n)
			}
			wait(t, done, &written)
		})
	}

	t.Run("token response", func(t *testing.T) {
		// The authority is the fake behind a proxy (discovery names the proxy's token endpoint), except
		// that the token endpoint streams 64 MiB.
		upstream, _ := url.Parse(e.s.URL())
		proxy := httputil.NewSingleHostReverseProxy(upstream)
		proxy.Transport = e.s.HTTPClient().Transport
		proxy.ErrorLog = log.New(io.Discard, "", 0)
		var written, tokenRequests atomic.Int64
		done := make(chan struct{}, 4)
		huge := streamBody(hugeBody, false, &written, done)
		authority := newHostileServer(t, func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token") {
				tokenRequests.Add(1)
				huge(w, r)
				return
			}
			proxy.ServeHTTP(w, r)
		})
		c := e.clientFor(t, "VaultConnection/ns/huge-token", e.configWith(nil, authority))
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := c.GetCertificate(ctx, "web", "")
		runtime.ReadMemStats(&after)
		checkErr(t, err)
		if !IsAuthentication(err) || !strings.HasPrefix(err.Error(), "could not get a token") {
			t.Errorf("want an AuthenticationError, got %T %v", err, err)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 32<<20 {
			t.Errorf("the call allocated %d MiB", grew>>20)
		}
		if n := tokenRequests.Load(); n != 1 {
			t.Errorf("%d token requests, want 1", n)
		}
		wait(t, done, &written)
	})
}

func TestNormalizeAllowedHost(t *testing.T) {
	for in, want := range map[string]string{
		"myvault.vault.azure.net":       "myvault.vault.azure.net:443",
		" MyVault.Vault.Azure.NET:443 ": "myvault.vault.azure.net:443",
		"login.example:8443":            "login.example:8443",
		"169.254.169.254:80":            "169.254.169.254:80",
		"::1":                           "[::1]:443",
		"[::1]":                         "[::1]:443",
		"[::1]:8443":                    "[::1]:8443",
	} {
		if got, err := normalizeAllowedHost(in); err != nil || got != want {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "https://v.vault.azure.net/", "v.vault.azure.net/x", "v:0", "v:http", "user@v", "[::1]:99999", ":443"} {
		if _, err := normalizeAllowedHost(bad); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%q: want ErrInvalidConfig, got %v", bad, err)
		}
	}
	for raw, want := range map[string]string{
		"https://V.example/x":      "v.example:443",
		"https://v.example:8443/":  "v.example:8443",
		"http://169.254.169.254/m": "169.254.169.254:80",
		"https://[::1]:9/":         "[::1]:9",
	} {
		u, _ := url.Parse(raw)
		if got := requestHostPort(u); got != want {
			t.Errorf("%s: %q, want %q", raw, got, want)
		}
	}
	cfg := Config{VaultURL: "https://v.vault.azure.net/", Auth: AuthConfig{Method: AuthManagedIdentity}, AllowedHosts: []string{"https://x/"}}
	if err := cfg.Validate(); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("a URL in AllowedHosts: %v", err)
	}
}

// stubTransport answers with a fixed body and Content-Length, and records whether it was called.
type stubTransport struct {
	body          []byte
	contentLength int64
	called        bool
	closed        bool
}

func (s *stubTransport) Do(req *http.Request) (*http.Response, error) {
	s.called = true
	return &http.Response{StatusCode: 200, ContentLength: s.contentLength, Request: req,
		Body: &closeRecorder{Reader: bytes.NewReader(s.body), closed: &s.closed}}, nil
}

type closeRecorder struct {
	io.Reader
	closed *bool
}

func (c *closeRecorder) Close() error { *c.closed = true; return nil }

func TestGuardTransportCap(t *testing.T) {
	get := func(g *guardTransport) ([]byte, error) {
		req, _ := http.NewRequest(http.MethodGet, "https://v.example/x", nil)
		resp, err := g.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		return io.ReadAll(resp.Body)
	}
	atCap := &stubTransport{body: bytes.Repeat([]byte("x"), MaxResponseBytes), contentLength: -1}
	if b, err := get(newGuardTransport(atCap, nil)); err != nil || len(b) != MaxResponseBytes {
		t.Fatalf("a body of exactly the cap: %d bytes, %v", len(b), err)
	}
	over := &stubTransport{body: bytes.Repeat([]byte("x"), MaxResponseBytes+1), contentLength: -1}
	if _, err := get(newGuardTransport(over, nil)); !IsResponseTooLarge(err) || err.Error() != "response from v.example:443 exceeds 4 MiB" {
		t.Fatalf("one byte over the cap: %v", err)
	}
	lying := &stubTransport{body: []byte("{}"), contentLength: MaxResponseBytes + 1}
	if _, err := get(newGuardTransport(lying, nil)); !IsResponseTooLarge(err) || !lying.closed {
		t.Fatalf("an advertised length over the cap: %v (body closed: %v)", err, lying.closed)
	}
	refused := &stubTransport{body: []byte("{}")}
	if _, err := get(newGuardTransport(refused, []string{"w.example:443"})); !IsHostNotAllowed(err) || refused.called {
		t.Fatalf("a host outside the list: %v (sent: %v)", err, refused.called)
	}
	if _, err := get(newGuardTransport(&stubTransport{body: []byte("{}")}, []string{"v.example:443"})); err != nil {
		t.Fatalf("a listed host: %v", err)
	}

	hc, err := NewHTTPClient(nil)
	if err != nil {
		t.Fatal(err)
	}
	if hc.CheckRedirect == nil || hc.CheckRedirect(nil, nil) != http.ErrUseLastResponse {
		t.Error("the HTTP client follows redirects")
	}
}

package eventgrid

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/vaultcert/vaultcert/internal/fakevault"
)

const (
	testTenant   = "3f2b8c1d-7e4a-4b6c-9d0e-1a2b3c4d5e6f"
	testAudience = "api://vaultcert-webhook"
	testClientID = "6c1a9e2b-4d3f-4a5b-8c7d-9e0f1a2b3c4d" // the webhook application's client ID
)

// Test keys, generated once: RSA generation is slow under -race.
var (
	keysOnce         sync.Once
	rsaKey1, rsaKey2 *rsa.PrivateKey
	ecKey1, ecKey2   *ecdsa.PrivateKey
)

func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		for _, k := range []**rsa.PrivateKey{&rsaKey1, &rsaKey2} {
			if *k, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
				panic(err)
			}
		}
		for _, k := range []**ecdsa.PrivateKey{&ecKey1, &ecKey2} {
			if *k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
				panic(err)
			}
		}
	})
}

// authority serves a tenant's OIDC metadata and JWKS over TLS, with switches for failures.
type authority struct {
	srv        *httptest.Server
	metaHits   atomic.Int32
	keysHits   atomic.Int32
	mu         sync.Mutex
	jwks       []byte
	failMeta   bool
	jwksURI    string // overrides the metadata's jwks_uri
	issuerHost string // overrides the metadata issuer's host
}

func newAuthority(t *testing.T) *authority {
	testKeys(t)
	a := &authority{}
	a.setKeys(t, map[string]any{"rsa-1": &rsaKey1.PublicKey, "ec-1": &ecKey1.PublicKey})
	a.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		switch r.URL.Path {
		case "/" + testTenant + "/v2.0/.well-known/openid-configuration":
			a.metaHits.Add(1)
			if a.failMeta {
				http.Error(w, "unavailable", http.StatusServiceUnavailable)
				return
			}
			host := a.issuerHost
			if host == "" {
				host = "https://" + r.Host
			}
			jwksURI := a.jwksURI
			if jwksURI == "" {
				jwksURI = "https://" + r.Host + "/" + testTenant + "/discovery/v2.0/keys"
			}
			_ = json.NewEncoder(w).Encode(map[string]string{"issuer": host + "/" + testTenant + "/v2.0", "jwks_uri": jwksURI,
				"token_endpoint": "https://" + r.Host + "/" + testTenant + "/oauth2/v2.0/token"})
		case "/" + testTenant + "/discovery/v2.0/keys":
			a.keysHits.Add(1)
			_, _ = w.Write(a.jwks)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// v2Issuer is the issuer the metadata names.
func (a *authority) v2Issuer() string { return a.srv.URL + "/" + testTenant + "/v2.0" }

// setKeys publishes keys (*rsa.PublicKey or *ecdsa.PublicKey) by kid.
func (a *authority) setKeys(t *testing.T, keys map[string]any) {
	t.Helper()
	enc := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	var set []map[string]string
	for kid, k := range keys {
		switch k := k.(type) {
		case *rsa.PublicKey:
			set = append(set, map[string]string{"kty": "RSA", "use": "sig", "kid": kid, "n": enc(k.N.Bytes()),
				"e": enc(big.NewInt(int64(k.E)).Bytes()), "x5t": kid})
		case *ecdsa.PublicKey:
			b, err := k.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			set = append(set, map[string]string{"kty": "EC", "use": "sig", "crv": "P-256", "kid": kid, "alg": "ES256",
				"x": enc(b[1:33]), "y": enc(b[33:])})
		}
	}
	b, err := json.Marshal(map[string]any{"keys": set})
	if err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	a.jwks = b
	a.mu.Unlock()
}

func (a *authority) set(f func(a *authority)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(a)
}

// entraEnv is a handler accepting Entra tokens of the test authority.
func entraEnv(t *testing.T, a *authority, mod func(o *EntraOptions)) *env {
	o := &EntraOptions{TenantID: testTenant, Audiences: []string{testAudience, testClientID}, AuthorityHost: a.srv.URL + "/",
		HTTPClient: a.srv.Client()}
	if mod != nil {
		mod(o)
	}
	return newEnv(t, Options{Entra: o})
}

// claims are the claims of a token Event Grid would present at the test clock's time.
func claims(a *authority, now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"aud": testAudience, "iss": a.v2Issuer(), "iat": now.Add(-time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(),
		"exp": now.Add(time.Hour).Unix(), "azp": EventGridAppID, "tid": testTenant, "sub": "7d9c1e5a-0000-4000-8000-5e0c1a7b9f22",
		"roles": []string{"AzureEventGridSecureWebhookSubscriber"}, "ver": "2.0",
	}
}

// mint signs claims with key under kid (none when kid is "").
func mint(t *testing.T, method jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// postToken delivers one certificate event with the token as bearer.
func (e *env) postToken(token string) *httptest.ResponseRecorder {
	return e.serve(request(http.MethodPost, "/", jsonType, testdata(e.t, "eventgrid-certificate-new-version.json"),
		"Authorization", "Bearer "+token))
}

func TestEntraTokens(t *testing.T) {
	a := newAuthority(t)
	with := func(changes jwt.MapClaims) func(c jwt.MapClaims) {
		return func(c jwt.MapClaims) {
			for k, v := range changes {
				if v == nil {
					delete(c, k)
				} else {
					c[k] = v
				}
			}
		}
	}
	rs, es := jwt.SigningMethodRS256, jwt.SigningMethodES256
	tests := []struct {
		name   string
		opts   func(o *EntraOptions)
		method jwt.SigningMethod
		key    func() any
		kid    string
		claims func(c jwt.MapClaims)
		want   int
	}{
		{name: "RS256, v2 issuer", method: rs, key: func() any { return rsaKey1 }, kid: "rsa-1", want: 200},
		{name: "ES256", method: es, key: func() any { return ecKey1 }, kid: "ec-1", want: 200},
		{name: "v1 token: sts.windows.net issuer, appid", method: rs, key: func() any { return rsaKey1 }, kid: "rsa-1",
			claims: with(jwt.MapClaims{"iss": "https://sts.windows.net/" + testTenant + "/", "azp": nil, "appid": EventGridAppID, "ver": "1.0"}), want: 200},
		{name: "audience as a list with the client ID", method: rs, key: func() any { return rsaKey1 }, kid: "rsa-1",
			claims: with(jwt.MapClaims{"aud": []string{"other", testClientID}}), want: 200},
		{name: "expired", method: rs, key: func() any { return rsaKey1 }, kid: "rsa-1",
			claims: with(jwt.MapClaims{"exp": testStart.Add(-3 * time.Minute).Unix()}), want: 401},
		{name: "expired within the clock skew", method: rs, key: func() any { return rsaKey1 }, kid: "rsa-1",
			claims: with(jwt.MapClaims{"exp": testStart.Add(-time.Minute).Unix()}), want: 200},
		{name: "no expiry", method: rs, key: func() any { return rsaKey1 }, kid: "rsa-1", claims: with(jwt.MapClaims{"exp": nil}), want: 401},
		{name: "not yet valid", method: rs, key: func() any { return rsaKey1 }, kid: "rsa-1",
			claims: with(jwt.MapClaims{"nbf": testStart.Add(10 * time.Minute).Unix()}), want: 401},
		{name: "wrong audience", method: rs, key: func() any { return rsaKey1 }, kid: "rsa-1",
			claims: with(jwt.MapClaims{"aud": "https://vault.azure.net"}), want: 401},
		{name: "no audience", method: rs, key: func() any { return rsaKey1 }, kid: "rsa-1", claims: with(jwt.MapClaims{"aud": nil}), want: 401},
		{name: "wrong issuer", method: rs, key: func() any { return rsaKey1 }, kid: "rsa-1",
			claims: with(jwt.MapClaims{"iss": "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0"}), want: 401},
		{name: "v1 issuer of another tenant", method: rs, key: func() any { return rsaKey1 }, kid: "rsa-1",
			claims: with(jwt.MapClaims{"iss": "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/"}), want: 401},
		{name: "bad signature: another key under a published kid", method: rs, key: func() any { return rsaKey2 }, kid: "rsa-1", want: 401},
		{name: "EC key under the RSA kid", method: es, key: func() any { return ecKey1 }, kid: "rsa-1", want: 401},
		{name: "unknown kid", method: rs, key: func() any { return rsaKey2 }, kid: "rsa-9", want: 401},
		{name: "no kid", method: rs, key: func() any { return rsaKey1 }, want: 401},
		{name: "alg none", method: jwt.SigningMethodNone, key: func() any { return jwt.UnsafeAllowNoneSignatureType }, kid: "rsa-1", want: 401},
		{name: "HS256 keyed with the public modulus", method: jwt.SigningMethodHS256, key: func() any { return rsaKey1.N.Bytes() }, kid: "rsa-1", want: 401},
		{name: "RS384 is not accepted", method: jwt.SigningMethodRS384, key: func() any { return rsaKey1 }, kid: "rsa-1", want: 401},
		{name: "caller is Event Grid", opts: func(o *EntraOptions) { o.AllowedAppIDs = []string{EventGridAppID} },
			method: rs, key: func() any { return rsaKey1 }, kid: "rsa-1", want: 200},
		{name: "caller is not Event Grid", opts: func(o *EntraOptions) { o.AllowedAppIDs = []string{EventGridAppID} },
			method: rs, key: func() any { return rsaKey1 }, kid: "rsa-1", claims: with(jwt.MapClaims{"azp": testClientID}), want: 401},
		{name: "caller unknown", opts: func(o *EntraOptions) { o.AllowedAppIDs = []string{EventGridAppID} },
			method: rs, key: func() any { return rsaKey1 }, kid: "rsa-1", claims: with(jwt.MapClaims{"azp": nil}), want: 401},
		{name: "required role present", opts: func(o *EntraOptions) { o.RequiredRole = "AzureEventGridSecureWebhookSubscriber" },
			method: rs, key: func() any { return rsaKey1 }, kid: "rsa-1", want: 200},
		{name: "required role missing", opts: func(o *EntraOptions) { o.RequiredRole = "AzureEventGridSecureWebhookSubscriber" },
			method: rs, key: func() any { return rsaKey1 }, kid: "rsa-1", claims: with(jwt.MapClaims{"roles": []string{"Reader"}}), want: 401},
		{name: "configured issuers replace the defaults", opts: func(o *EntraOptions) { o.Issuers = []string{"https://sts.chinacloudapi.cn/" + testTenant + "/"} },
			method: rs, key: func() any { return rsaKey1 }, kid: "rsa-1", want: 401},
		{name: "configured issuer accepted", opts: func(o *EntraOptions) { o.Issuers = []string{"https://sts.chinacloudapi.cn/" + testTenant + "/"} },
			method: rs, key: func() any { return rsaKey1 }, kid: "rsa-1",
			claims: with(jwt.MapClaims{"iss": "https://sts.chinacloudapi.cn/" + testTenant + "/"}), want: 200},
	}
	// Why each refused token is refused, as logged: a refusal for another reason would hide a gap.
	reasons := map[string]string{
		"expired":                     "token is expired",
		"no expiry":                   "exp claim is required",
		"not yet valid":               "token is not valid yet",
		"wrong audience":              "invalid audience",
		"no audience":                 "aud claim is required",
		"wrong issuer":                errBadIssuer.Error(),
		"v1 issuer of another tenant": errBadIssuer.Error(),
		"bad signature: another key under a published kid": "verification error",
		"EC key under the RSA kid":                         "key is of invalid type",
		"unknown kid":                                      errUnknownKey.Error(),
		"no kid":                                           errUnknownKey.Error(),
		"alg none":                                         "signing method none is invalid",
		"HS256 keyed with the public modulus":              "signing method HS256 is invalid",
		"RS384 is not accepted":                            "signing method RS384 is invalid",
		"caller is not Event Grid":                         errBadApp.Error(),
		"caller unknown":                                   errBadApp.Error(),
		"required role missing":                            errMissingRole.Error(),
		"configured issuers replace the defaults":          errBadIssuer.Error(),
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := entraEnv(t, a, tt.opts)
			c := claims(a, testStart)
			if tt.claims != nil {
				tt.claims(c)
			}
			token := mint(t, tt.method, tt.key(), tt.kid, c)
			before := snapshot()
			w := e.postToken(token)
			if w.Code != tt.want {
				t.Fatalf("status %d (%s), want %d; log:\n%s", w.Code, strings.TrimSpace(w.Body.String()), tt.want, e.log())
			}
			checkDelivered(t, e, before, w.Code)
			checkNoLeak(t, e, w, token)
			if tt.want == 200 {
				return
			}
			if reason, ok := reasons[tt.name]; !ok || !strings.Contains(e.log(), reason) {
				t.Errorf("refused for another reason than %q (the table must name it):\n%s", reason, e.log())
			}
		})
	}
}

func TestEntraKeyCache(t *testing.T) {
	a := newAuthority(t)
	e := entraEnv(t, a, nil)
	good := func() string { return mint(t, jwt.SigningMethodRS256, rsaKey1, "rsa-1", claims(a, e.now())) }
	expect := func(token string, want int) {
		t.Helper()
		if w := e.postToken(token); w.Code != want {
			t.Fatalf("status %d, want %d; log:\n%s", w.Code, want, e.log())
		}
		e.take()
	}
	hits := func(meta, keys int32) {
		t.Helper()
		if m, k := a.metaHits.Load(), a.keysHits.Load(); m != meta || k != keys {
			t.Fatalf("metadata fetched %d times and keys %d times, want %d and %d", m, k, meta, keys)
		}
	}

	for range 3 {
		expect(good(), 200)
	}
	hits(1, 1)

	// Unknown key IDs cost at most one fetch per KeysMinRefresh.
	for i := range 3 {
		expect(mint(t, jwt.SigningMethodRS256, rsaKey2, "rsa-"+string(rune('a'+i)), claims(a, e.now())), 401)
	}
	hits(1, 1)
	e.advance(DefaultKeysMinRefresh)
	expect(mint(t, jwt.SigningMethodRS256, rsaKey2, "rsa-x", claims(a, e.now())), 401)
	hits(2, 2)

	// An unknown kid when the set is older than KeysMinRefresh and cannot be refreshed may be a new key: 503,
	// which Event Grid retries, not 401, which it would not.
	a.set(func(a *authority) { a.failMeta = true })
	e.advance(DefaultKeysMinRefresh)
	expect(mint(t, jwt.SigningMethodRS256, rsaKey2, "rsa-y", claims(a, e.now())), 503)
	expect(good(), 200) // the known keys still serve
	hits(3, 2)
	a.set(func(a *authority) { a.failMeta = false })
	e.advance(DefaultKeysMinRefresh)
	expect(good(), 200)
	hits(3, 2)

	// Rotation: a new key is found by the refresh an unknown kid triggers.
	a.setKeys(t, map[string]any{"rsa-2": &rsaKey2.PublicKey, "ec-1": &ecKey1.PublicKey})
	e.advance(DefaultKeysMinRefresh)
	expect(mint(t, jwt.SigningMethodRS256, rsaKey2, "rsa-2", claims(a, e.now())), 200)
	hits(4, 3)
	// The withdrawn key is gone after that refresh.
	expect(good(), 401)

	// After KeysTTL the keys are fetched again; a failing fetch keeps the old keys in use for a while.
	a.set(func(a *authority) { a.failMeta = true })
	e.advance(DefaultKeysTTL)
	es := func() string { return mint(t, jwt.SigningMethodES256, ecKey1, "ec-1", claims(a, e.now())) }
	expect(es(), 200)
	hits(5, 3)
	if !strings.Contains(e.log(), "cannot fetch the Entra ID signing keys") {
		t.Errorf("the failed fetch was not logged:\n%s", e.log())
	}
	// Past TTL plus the staleness bound, nothing is trusted: 503, which Event Grid retries.
	e.advance(maxStale)
	before := snapshot()
	w := e.postToken(es())
	if w.Code != 503 || w.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	checkDelta(t, before, counters{"deliveries/unavailable": 1})

	// Entra back: the next refresh (not before KeysMinRefresh) restores service.
	a.set(func(a *authority) { a.failMeta = false })
	expect(es(), 503)
	e.advance(DefaultKeysMinRefresh)
	expect(es(), 200)
}

func TestEntraFetchFailures(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(a *authority)
		opts   func(o *EntraOptions)
		reason string // in the logged error
	}{
		{"metadata unavailable", func(a *authority) { a.failMeta = true }, nil, "status 503"},
		{"JWKS larger than the bound", func(a *authority) {
			a.jwks = []byte(`{"keys":[],"pad":"` + strings.Repeat("x", 2048) + `"}`)
		}, func(o *EntraOptions) { o.MaxFetchBytes = 1024 }, "answer larger than 1024 bytes"},
		{"JWKS over plain http", func(a *authority) { a.jwksURI = "http://" + a.srv.Listener.Addr().String() + "/keys" }, nil, "no https jwks_uri"},
		{"JWKS without usable keys", func(a *authority) {
			a.jwks = []byte(`{"keys":[{"kty":"RSA","kid":"small","n":"AQAB","e":"AQAB"},{"kty":"EC","crv":"P-256","kid":"off-curve","x":"AQ","y":"Ag"},` +
				`{"kty":"oct","kid":"sym","k":"c2VjcmV0"},{"kty":"EC","crv":"P-256","kid":"enc","use":"enc","x":"AQ","y":"Ag"}]}`)
		}, nil, "no usable RS256 or ES256 signing key"},
		{"JWKS not JSON", func(a *authority) { a.jwks = []byte("<html>") }, nil, "not the expected JSON"},
		{"client does not trust the authority", nil, func(o *EntraOptions) { o.HTTPClient = &http.Client{Timeout: 5 * time.Second} }, "certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAuthority(t)
			if tt.setup != nil {
				a.set(tt.setup)
			}
			e := entraEnv(t, a, tt.opts)
			before := snapshot()
			w := e.postToken(mint(t, jwt.SigningMethodRS256, rsaKey1, "rsa-1", claims(a, testStart)))
			if w.Code != 503 {
				t.Fatalf("status %d, want 503; log:\n%s", w.Code, e.log())
			}
			checkDelta(t, before, counters{"deliveries/unavailable": 1})
			if !strings.Contains(e.log(), tt.reason) {
				t.Errorf("log does not say %q:\n%s", tt.reason, e.log())
			}
			if n := e.take(); len(n) != 0 {
				t.Errorf("notified %v", n)
			}
		})
	}
}

func TestEntraWithSecretsAndHandshake(t *testing.T) {
	a := newAuthority(t)
	e := newEnv(t, Options{Secrets: []string{testSecret}, Entra: &EntraOptions{TenantID: testTenant, Audiences: []string{testAudience},
		AuthorityHost: a.srv.URL, HTTPClient: a.srv.Client(), AllowedAppIDs: []string{EventGridAppID}}})
	token := mint(t, jwt.SigningMethodES256, ecKey1, "ec-1", claims(a, testStart))
	if w := e.postToken(token); w.Code != 200 {
		t.Fatalf("token: status %d", w.Code)
	}
	if w := e.postToken(testSecret); w.Code != 200 {
		t.Fatalf("secret: status %d", w.Code)
	}
	if w := e.postToken("not.a.token"); w.Code != 401 {
		t.Fatalf("garbage: status %d", w.Code)
	}
	if w := e.postToken(strings.Repeat("a", maxTokenBytes) + ".b.c"); w.Code != 401 {
		t.Fatalf("huge token: status %d", w.Code)
	}
	w := e.serve(request(http.MethodPost, "/", jsonType, testdata(t, "eventgrid-subscription-validation.json"), "Authorization", "Bearer "+token))
	if w.Code != 200 || !strings.Contains(w.Body.String(), "7c0f3a52-91d4-4e2b-8f16-b3a9e0d5c874") {
		t.Fatalf("validation with a token: status %d, body %q", w.Code, w.Body.String())
	}
	if w := e.serve(request(http.MethodOptions, "/", "", nil, "WebHook-Request-Origin", "eventgrid.azure.net", "Authorization", "Bearer "+token)); w.Code != 200 {
		t.Fatalf("OPTIONS with a token: status %d", w.Code)
	}
	for _, s := range []string{token, testSecret} {
		if strings.Contains(e.log(), s) {
			t.Error("a credential leaked into the log")
		}
	}
}

// TestFakevaultAuthority checks the validator against internal/fakevault's Entra-like authority: ES256 keys
// from its discovery endpoints, v1 tokens with iss https://sts.windows.net/{tenant}/ and appid.
func TestFakevaultAuthority(t *testing.T) {
	s, err := fakevault.Start(fakevault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	var got []Notification
	var mu sync.Mutex
	h, err := New(Options{
		Notify: func(n Notification) { mu.Lock(); got = append(got, n); mu.Unlock() },
		Entra: &EntraOptions{TenantID: s.TenantID(), AuthorityHost: s.AuthorityHost(), HTTPClient: s.HTTPClient(),
			Audiences: []string{testAudience}, AllowedAppIDs: []string{EventGridAppID}},
	})
	if err != nil {
		t.Fatal(err)
	}
	serve := func(token string) int {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, request(http.MethodPost, "/", jsonType, testdata(t, "eventgrid-certificate-new-version.json"), "Authorization", "Bearer "+token))
		return w.Code
	}
	issue := func(clientID, resource string) string {
		tok, err := s.IssueTokenFor(clientID, resource)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	if code := serve(issue(EventGridAppID, testAudience)); code != 200 {
		t.Fatalf("Event Grid's token: status %d", code)
	}
	if code := serve(issue(testClientID, testAudience)); code != 401 {
		t.Errorf("another caller's token: status %d", code)
	}
	if code := serve(issue(EventGridAppID, fakevault.VaultResource)); code != 401 {
		t.Errorf("a vault token: status %d", code)
	}
	vaultToken, err := s.IssueToken(EventGridAppID)
	if err != nil {
		t.Fatal(err)
	}
	if code := serve(vaultToken); code != 401 {
		t.Errorf("IssueToken's vault token: status %d", code)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].Certificate != "web-frontend" {
		t.Errorf("notifications %v", got)
	}
}

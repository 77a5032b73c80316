package fakevault_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azcertificates"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/vaultcert/vaultcert/internal/fakevault"
)

const (
	testClientID = "00000000-0000-4000-8000-0000000c11e7"
	testSecret   = "s3cr3t-value"
)

// noRetry makes the SDK return the first answer.
var noRetry = policy.RetryOptions{MaxRetries: -1}

// fastRetry retries quickly.
var fastRetry = policy.RetryOptions{MaxRetries: 3, RetryDelay: time.Millisecond, MaxRetryDelay: 5 * time.Millisecond}

func startServer(t *testing.T, opts ...fakevault.Options) *fakevault.Server {
	t.Helper()
	var o fakevault.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	s, err := fakevault.Start(o)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(s.Close)
	s.AddClientSecret(testClientID, testSecret)
	return s
}

// seed seeds spec, failing the test when the fake refuses it.
func seed(t *testing.T, s *fakevault.Server, spec fakevault.CertSpec) fakevault.Version {
	t.Helper()
	v, err := s.Seed(spec)
	if err != nil {
		t.Fatalf("seed %s: %v", spec.Name, err)
	}
	return v
}

// seedEC seeds an EC certificate under each name.
func seedEC(t *testing.T, s *fakevault.Server, names ...string) {
	t.Helper()
	for _, n := range names {
		seed(t, s, fakevault.CertSpec{Name: n, KeyType: "EC"})
	}
}

// startWithEC starts a server holding an EC certificate under each name, with SDK clients for testClientID.
func startWithEC(t *testing.T, retry policy.RetryOptions, names ...string) (*fakevault.Server, clients) {
	t.Helper()
	s := startServer(t)
	seedEC(t, s, names...)
	return s, newClients(t, s, nil, retry)
}

func secretCredential(t *testing.T, s *fakevault.Server, id, secret string) azcore.TokenCredential {
	t.Helper()
	cred, err := azidentity.NewClientSecretCredential(s.TenantID(), id, secret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions: azcore.ClientOptions{
			Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: s.AuthorityHost()},
			Transport: s.HTTPClient(),
			Retry:     noRetry,
		},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatalf("NewClientSecretCredential: %v", err)
	}
	return cred
}

type clients struct {
	certs   *azcertificates.Client
	secrets *azsecrets.Client
}

func newClients(t *testing.T, s *fakevault.Server, cred azcore.TokenCredential, retry policy.RetryOptions) clients {
	t.Helper()
	if cred == nil {
		cred = secretCredential(t, s, testClientID, testSecret)
	}
	co := azcore.ClientOptions{Transport: s.HTTPClient(), Retry: retry}
	cc, err := azcertificates.NewClient(s.URL(), cred, &azcertificates.ClientOptions{ClientOptions: co})
	if err != nil {
		t.Fatal(err)
	}
	sc, err := azsecrets.NewClient(s.URL(), cred, &azsecrets.ClientOptions{ClientOptions: co})
	if err != nil {
		t.Fatal(err)
	}
	return clients{cc, sc}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// respErr asserts err is an azcore.ResponseError with status and code; it returns the inner code.
func respErr(t *testing.T, err error, status int, code string) string {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("want ResponseError %d %s, got %v", status, code, err)
	}
	if re.StatusCode != status || re.ErrorCode != code {
		t.Fatalf("want %d %s, got %d %s", status, code, re.StatusCode, re.ErrorCode)
	}
	body, _ := runtime.Payload(re.RawResponse)
	var e struct {
		Error struct {
			Code       string
			Message    string
			InnerError *struct{ Code string } `json:"innererror"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	if e.Error.Code != code || e.Error.Message == "" {
		t.Fatalf("error body %s", body)
	}
	if e.Error.InnerError != nil {
		return e.Error.InnerError.Code
	}
	return ""
}

// rawDo sends a raw request with a fresh token.
func rawDo(t *testing.T, s *fakevault.Server, method, path, body string) (*http.Response, []byte) {
	t.Helper()
	tok, err := s.IssueToken(testClientID)
	if err != nil {
		t.Fatal(err)
	}
	return rawDoAuth(t, s, method, path, body, "Bearer "+tok)
}

func rawDoAuth(t *testing.T, s *fakevault.Server, method, path, body, authz string) (*http.Response, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	u := path
	if !strings.HasPrefix(u, "https://") {
		u = strings.TrimSuffix(s.URL(), "/") + path
	}
	req, err := http.NewRequest(method, u, r)
	if err != nil {
		t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// fakeClock is a settable clock for Options.Now.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now().Truncate(time.Second)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func readPayload(resp *http.Response) ([]byte, error) { return runtime.Payload(resp) }

func readAll(resp *http.Response) ([]byte, error) { return io.ReadAll(resp.Body) }

type azidentityAuthErr = azidentity.AuthenticationFailedError

func errorsAsAuth(err error, target **azidentityAuthErr) bool { return errors.As(err, target) }

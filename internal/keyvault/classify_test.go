package keyvault

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
)

// responseError builds the *azcore.ResponseError the SDK would return for this answer.
func responseError(t *testing.T, status int, header http.Header, body string) error {
	t.Helper()
	if header == nil {
		header = http.Header{}
	}
	req, _ := http.NewRequest(http.MethodGet, "https://v.vault.azure.net/secrets/s/1", nil)
	resp := &http.Response{
		StatusCode: status,
		Status:     http.StatusText(status),
		Header:     header,
		Body:       io.NopCloser(strings.NewReader(body)),
		Request:    req,
	}
	return runtime.NewResponseError(resp)
}

func kvBody(code, message, inner string) string {
	b := `{"error":{"code":"` + code + `","message":"` + message + `"`
	if inner != "" {
		b += `,"innererror":{"code":"` + inner + `"}`
	}
	return b + `}}`
}

func TestClassifyStatuses(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name      string
		status    int
		header    http.Header
		body      string
		check     func(error) bool
		code      string
		inner     string
		retry     time.Duration
		wantMsgIn string
	}{
		{name: "404", status: 404, body: kvBody("CertificateNotFound", "A certificate with (name/id) x was not found in this key vault.", ""),
			check: IsNotFound, code: "CertificateNotFound"},
		{name: "401", status: 401, body: kvBody("Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.", ""),
			check: IsUnauthorized, code: "Unauthorized"},
		{name: "403 firewall", status: 403, body: kvBody("Forbidden", "Client address is not authorized and caller is not a trusted service.", "ForbiddenByFirewall"),
			check: IsForbidden, code: "Forbidden", inner: "ForbiddenByFirewall"},
		{name: "403 public network disabled is not a disabled object", status: 403,
			body:  kvBody("Forbidden", "Public network access is disabled and request is not from a trusted service nor via an approved private link.", "ForbiddenByConnection"),
			check: IsForbidden, code: "Forbidden", inner: "ForbiddenByConnection"},
		{name: "403 secret disabled", status: 403, body: kvBody("Forbidden", "Operation get is not allowed on a disabled secret.", "SecretDisabled"),
			check: IsDisabled, code: "Forbidden", inner: "SecretDisabled", wantMsgIn: "disabled secret"},
		{name: "403 certificate disabled", status: 403, body: kvBody("Forbidden", "Operation get is not allowed on a disabled certificate.", "CertificateDisabled"),
			check: IsDisabled, code: "Forbidden", inner: "CertificateDisabled"},
		{name: "403 disabled by message only", status: 403, body: kvBody("Forbidden", "Operation get is not allowed on a disabled secret.", ""),
			check: IsDisabled, code: "Forbidden"},
		{name: "409 nested inner", status: 409,
			body:  `{"error":{"code":"Conflict","message":"deleted but recoverable","innererror":{"code":"Outer","innererror":{"code":"ObjectIsDeletedButRecoverable"}}}}`,
			check: IsConflict, code: "Conflict", inner: "ObjectIsDeletedButRecoverable"},
		{name: "x-ms-error-code wins", status: 404, header: http.Header{"X-Ms-Error-Code": {"SecretNotFound"}}, body: kvBody("Other", "m", ""),
			check: IsNotFound, code: "SecretNotFound"},
		{name: "429 Retry-After seconds", status: 429, header: http.Header{"Retry-After": {"7"}}, body: kvBody("Throttled", "Request was not processed", ""),
			check: IsThrottled, code: "Throttled", retry: 7 * time.Second},
		{name: "429 Retry-After-Ms first", status: 429, header: http.Header{"Retry-After": {"7"}, "Retry-After-Ms": {"1500"}, "X-Ms-Retry-After-Ms": {"2500"}},
			check: IsThrottled, retry: 1500 * time.Millisecond},
		{name: "429 x-ms-retry-after-ms before Retry-After", status: 429, header: http.Header{"Retry-After": {"7"}, "X-Ms-Retry-After-Ms": {"2500"}},
			check: IsThrottled, retry: 2500 * time.Millisecond},
		{name: "429 Retry-After date", status: 429, header: http.Header{"Retry-After": {now.Add(9 * time.Second).Format(http.TimeFormat)}},
			check: IsThrottled, retry: 9 * time.Second},
		{name: "429 no hint", status: 429, check: IsThrottled},
		{name: "429 garbage hint", status: 429, header: http.Header{"Retry-After": {"soon"}}, check: IsThrottled},
		{name: "400 plain service error", status: 400, body: kvBody("BadParameter", "bad", ""),
			check: func(err error) bool { var se *ServiceError; return errors.As(err, &se) && se.StatusCode == 400 }, code: "BadParameter"},
		{name: "non-JSON body", status: 404, body: "<html>not found</html>", check: IsNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := classifyAt("GetSecret", responseError(t, tt.status, tt.header, tt.body), now)
			if !tt.check(err) {
				t.Fatalf("classified as %T: %v", err, err)
			}
			se := serviceErrorOf(t, err)
			if se.StatusCode != tt.status || se.Operation != "GetSecret" {
				t.Errorf("status %d operation %q", se.StatusCode, se.Operation)
			}
			if tt.code != "" && se.Code != tt.code {
				t.Errorf("code %q, want %q", se.Code, tt.code)
			}
			if se.InnerCode != tt.inner {
				t.Errorf("inner code %q, want %q", se.InnerCode, tt.inner)
			}
			if tt.wantMsgIn != "" && !strings.Contains(err.Error(), tt.wantMsgIn) {
				t.Errorf("message %q lacks %q", err.Error(), tt.wantMsgIn)
			}
			if strings.Contains(err.Error(), "<html>") || strings.Contains(err.Error(), "RESPONSE") {
				t.Errorf("message dumps the body: %q", err.Error())
			}
			if th, ok := AsThrottled(err); ok && th.RetryAfter != tt.retry {
				t.Errorf("RetryAfter %v, want %v", th.RetryAfter, tt.retry)
			}
			var re *azcore.ResponseError
			if !errors.As(err, &re) {
				t.Errorf("the ResponseError is not reachable with errors.As")
			}
		})
	}
}

// serviceErrorOf digs the embedded ServiceError out of any typed error.
func serviceErrorOf(t *testing.T, err error) ServiceError {
	t.Helper()
	var typed interface{ service() *ServiceError }
	if !errors.As(err, &typed) {
		t.Fatalf("%T is not a service error", err)
	}
	return *typed.service()
}

func TestClassifyPassThrough(t *testing.T) {
	if Classify("x", nil) != nil {
		t.Fatal("nil must stay nil")
	}
	err := Classify("GetCertificate", context.DeadlineExceeded)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "GetCertificate") {
		t.Fatalf("context error: %v", err)
	}
	typed := &NotFoundError{ServiceError{StatusCode: 404, Operation: "GetSecret"}}
	if got := Classify("Other", typed); got != error(typed) {
		t.Fatalf("typed error was rewrapped: %v", got)
	}
	paused := &noRetryError{&ThrottledError{RetryAfter: time.Second}}
	if th, ok := AsThrottled(Classify("GetSecret", paused)); !ok || th.RetryAfter != time.Second {
		t.Fatalf("pause lost: %v", th)
	}
}

func TestClassifyTokenErrors(t *testing.T) {
	err := Classify("GetSecret", &tokenError{err: errors.New("ClientSecretCredential: tenant refused")})
	var ae *AuthenticationError
	if !errors.As(err, &ae) || !IsAuthentication(err) {
		t.Fatalf("want AuthenticationError, got %T %v", err, err)
	}
	if !strings.Contains(err.Error(), "tenant refused") {
		t.Errorf("message %q", err.Error())
	}
}

func TestThrottledRequeueAfter(t *testing.T) {
	now := time.Unix(1000, 0)
	cases := []struct {
		e    ThrottledError
		want time.Duration
	}{
		{ThrottledError{}, time.Second},
		{ThrottledError{RetryAfter: 5 * time.Second}, 5 * time.Second},
		{ThrottledError{RetryAfter: 5 * time.Second, PausedUntil: now.Add(8 * time.Second)}, 8 * time.Second},
		{ThrottledError{RetryAfter: 5 * time.Second, PausedUntil: now.Add(-time.Second)}, 5 * time.Second},
	}
	for i, c := range cases {
		if got := c.e.RequeueAfter(now); got != c.want {
			t.Errorf("%d: %v, want %v", i, got, c.want)
		}
	}
}

func TestAuthenticationErrorMessage(t *testing.T) {
	e := &AuthenticationError{Err: errors.New("long\nmultiline"), StatusCode: 401, Code: "invalid_client", Message: "AADSTS7000215: Invalid client secret provided."}
	want := "could not get a token for the connection's identity: 401 invalid_client: AADSTS7000215: Invalid client secret provided."
	if e.Error() != want {
		t.Fatalf("%q", e.Error())
	}
}

package fakevault_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/vaultcert/vaultcert/internal/fakevault"
)

func TestFault429WithAndWithoutRetryAfter(t *testing.T) {
	s, c := startWithEC(t, noRetry, "t")

	s.InjectFault(fakevault.Fault{Operation: fakevault.OpGetCertificate, Status: 429, RetryAfter: "7", Times: 1})
	_, err := c.certs.GetCertificate(ctx(t), "t", "", nil)
	respErr(t, err, 429, "Throttled")
	var re *azcore.ResponseError
	errors.As(err, &re)
	if re.RawResponse.Header.Get("Retry-After") != "7" {
		t.Fatalf("Retry-After %q", re.RawResponse.Header.Get("Retry-After"))
	}
	body, _ := rawBody(re)
	if !strings.Contains(body, "VaultRequestTypeLimitReached") {
		t.Fatalf("message %s", body)
	}
	// Times: 1 is used up
	if _, err := c.certs.GetCertificate(ctx(t), "t", "", nil); err != nil {
		t.Fatal(err)
	}

	s.InjectFault(fakevault.Fault{Status: 429})
	_, err = c.secrets.GetSecret(ctx(t), "t", "", nil)
	respErr(t, err, 429, "Throttled")
	errors.As(err, &re)
	if _, ok := re.RawResponse.Header["Retry-After"]; ok {
		t.Fatal("Retry-After present")
	}
	s.ClearFaults()
	if _, err := c.secrets.GetSecret(ctx(t), "t", "", nil); err != nil {
		t.Fatal(err)
	}
	if n := s.Count(fakevault.OpThrottled); n != 2 {
		t.Fatalf("throttled %d", n)
	}
	if n := s.Count(fakevault.OpGetSecret); n != 2 {
		t.Fatalf("GetSecret count %d (faulted requests count too)", n)
	}
}

func rawBody(re *azcore.ResponseError) (string, error) {
	b, err := readPayload(re.RawResponse)
	return string(b), err
}

func TestFaultRetriedBySDK(t *testing.T) {
	s, c := startWithEC(t, fastRetry, "t")
	s.InjectFault(fakevault.Fault{Operation: fakevault.OpGetCertificate, Status: 503, Times: 2, RetryAfterMs: "1"})
	if _, err := c.certs.GetCertificate(ctx(t), "t", "", nil); err != nil {
		t.Fatal(err)
	}
	if n := s.Count(fakevault.OpGetCertificate); n != 3 {
		t.Fatalf("count %d", n)
	}
}

func TestFaultForbiddenInnerCodesAndNames(t *testing.T) {
	s, c := startWithEC(t, noRetry, "a", "b")
	s.InjectFault(fakevault.Fault{Name: "A", Status: 403, InnerCode: "ForbiddenByFirewall"})
	_, err := c.certs.GetCertificate(ctx(t), "a", "", nil)
	if inner := respErr(t, err, 403, "Forbidden"); inner != "ForbiddenByFirewall" {
		t.Fatalf("inner %q", inner)
	}
	var re *azcore.ResponseError
	errors.As(err, &re)
	if body, _ := rawBody(re); !strings.Contains(body, "Client address is not authorized and caller is not a trusted service.") {
		t.Fatalf("message %s", body)
	}
	if _, err := c.certs.GetCertificate(ctx(t), "b", "", nil); err != nil {
		t.Fatalf("other name faulted: %v", err)
	}
	s.ClearFaults()
	s.InjectFault(fakevault.Fault{Operation: fakevault.OpGetSecret, Status: 403, InnerCode: "AccessDenied", Code: "Forbidden", Message: "custom"})
	_, err = c.secrets.GetSecret(ctx(t), "b", "", nil)
	if inner := respErr(t, err, 403, "Forbidden"); inner != "AccessDenied" {
		t.Fatal(inner)
	}
	s.ClearFaults()
	s.InjectFault(fakevault.Fault{Operation: fakevault.OpGetCertificate, Status: 500})
	_, err = c.certs.GetCertificate(ctx(t), "b", "", nil)
	respErr(t, err, 500, "InternalServerError")
}

func TestFaultReset(t *testing.T) {
	s, c := startWithEC(t, noRetry, "t")
	if _, err := c.certs.GetCertificate(ctx(t), "t", "", nil); err != nil { // warm up token
		t.Fatal(err)
	}
	s.InjectFault(fakevault.Fault{Operation: fakevault.OpGetCertificate, Kind: fakevault.FaultReset})
	_, err := c.certs.GetCertificate(ctx(t), "t", "", nil)
	var re *azcore.ResponseError
	if err == nil || errors.As(err, &re) {
		t.Fatalf("want a transport error, got %v", err)
	}
	s.ClearFaults()
	if _, err := c.certs.GetCertificate(ctx(t), "t", "", nil); err != nil {
		t.Fatalf("after reset: %v", err)
	}
}

func TestFaultLatencyAndTimeout(t *testing.T) {
	s, c := startWithEC(t, noRetry, "t")
	if _, err := c.certs.GetCertificate(ctx(t), "t", "", nil); err != nil {
		t.Fatal(err)
	}
	s.InjectFault(fakevault.Fault{Operation: fakevault.OpGetCertificate, Latency: 150 * time.Millisecond, Times: 1})
	start := time.Now()
	if _, err := c.certs.GetCertificate(ctx(t), "t", "", nil); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("latency %v", d)
	}
	// latency respects the client's cancellation
	s.InjectFault(fakevault.Fault{Operation: fakevault.OpGetCertificate, Latency: 10 * time.Second, Times: 1})
	cctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err := c.certs.GetCertificate(cctx, "t", "", nil)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("latency with deadline: %v", err)
	}
	// timeout hangs until the client gives up
	s.InjectFault(fakevault.Fault{Operation: fakevault.OpGetSecret, Kind: fakevault.FaultTimeout})
	cctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if _, err := c.secrets.GetSecret(cctx2, "t", "", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout: %v", err)
	}
}

func TestFaultMalformedAndTruncate(t *testing.T) {
	s, c := startWithEC(t, noRetry, "t")
	s.InjectFault(fakevault.Fault{Operation: fakevault.OpGetCertificate, Kind: fakevault.FaultMalformed, Times: 1})
	_, err := c.certs.GetCertificate(ctx(t), "t", "", nil)
	var re *azcore.ResponseError
	if err == nil || errors.As(err, &re) {
		t.Fatalf("want a decode error, got %v", err)
	}
	s.InjectFault(fakevault.Fault{Operation: fakevault.OpGetSecret, Kind: fakevault.FaultTruncate, Times: 1})
	sec, err := c.secrets.GetSecret(ctx(t), "t", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	der, err := base64.StdEncoding.DecodeString(*sec.Value)
	if err != nil {
		t.Fatalf("truncated value should stay valid base64: %v", err)
	}
	if _, _, _, err := pkcs12.DecodeChain(der, ""); err == nil {
		t.Fatal("truncated PFX decoded")
	}
	sec, err = c.secrets.GetSecret(ctx(t), "t", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	der, _ = base64.StdEncoding.DecodeString(*sec.Value)
	if _, _, _, err := pkcs12.DecodeChain(der, ""); err != nil {
		t.Fatal(err)
	}
}

func TestLimitMode(t *testing.T) {
	s, c := startWithEC(t, noRetry, "t")
	s.SetLimitWindow(800 * time.Millisecond)
	s.SetLimit(3, true)
	for i := 0; i < 3; i++ {
		if _, err := c.certs.GetCertificate(ctx(t), "t", "", nil); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	_, err := c.certs.GetCertificate(ctx(t), "t", "", nil)
	respErr(t, err, 429, "Throttled")
	var re *azcore.ResponseError
	errors.As(err, &re)
	ra, convErr := strconv.Atoi(re.RawResponse.Header.Get("Retry-After"))
	if convErr != nil || ra < 1 || ra > 1 {
		t.Fatalf("Retry-After %q", re.RawResponse.Header.Get("Retry-After"))
	}
	time.Sleep(900 * time.Millisecond)
	if _, err := c.certs.GetCertificate(ctx(t), "t", "", nil); err != nil {
		t.Fatalf("after the window: %v", err)
	}
	// without Retry-After, 10 s window
	s.SetLimitWindow(0)
	s.SetLimit(1, false)
	c.certs.GetCertificate(ctx(t), "t", "", nil)
	_, err = c.certs.GetCertificate(ctx(t), "t", "", nil)
	respErr(t, err, 429, "Throttled")
	errors.As(err, &re)
	if _, ok := re.RawResponse.Header["Retry-After"]; ok {
		t.Fatal("Retry-After sent")
	}
	s.SetLimit(0, false)
	if _, err := c.certs.GetCertificate(ctx(t), "t", "", nil); err != nil {
		t.Fatal(err)
	}
	if s.Count(fakevault.OpThrottled) != 2 {
		t.Fatalf("counts %v", s.Counts())
	}
}

func TestTokenFault(t *testing.T) {
	s := startServer(t)
	seedEC(t, s, "t")
	s.InjectFault(fakevault.Fault{Status: 500}) // "" does not hit the authority
	s.InjectFault(fakevault.Fault{Operation: fakevault.OpToken, Status: 503, Times: 1})
	c := newClients(t, s, nil, noRetry)
	_, err := c.certs.GetCertificate(ctx(t), "t", "", nil)
	var afe *azidentityAuthErr
	if err == nil || !errorsAsAuth(err, &afe) {
		t.Fatalf("want authentication failure, got %v", err)
	}
	s.ClearFaults()
	if _, err := c.certs.GetCertificate(ctx(t), "t", "", nil); err != nil {
		t.Fatal(err)
	}
	if s.Count(fakevault.OpToken) != 2 {
		t.Fatalf("tokens %d", s.Count(fakevault.OpToken))
	}
}

func TestAdminAPI(t *testing.T) {
	s := startServer(t)
	hc := s.HTTPClient()
	do := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, s.URL()+strings.TrimPrefix(path, "/"), strings.NewReader(body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := readAll(resp)
		return resp.StatusCode, string(b)
	}
	if code, body := do("POST", "/admin/certificates", `{"name":"adm","keyType":"EC","chainDepth":2,"validity":"48h"}`); code != 200 || !strings.Contains(body, `"version"`) {
		t.Fatalf("seed: %d %s", code, body)
	}
	v, _ := s.Latest("adm")
	if got := v.Leaf.NotAfter.Sub(v.Leaf.NotBefore); got != 48*time.Hour+10*time.Minute {
		t.Fatalf("validity %v", got)
	}
	if code, body := do("POST", "/admin/certificates/adm/rotate", ""); code != 200 || strings.Contains(body, v.Version) {
		t.Fatalf("rotate: %d %s", code, body)
	}
	if code, _ := do("POST", "/admin/certificates/adm/versions/latest/enabled", `{"enabled":false}`); code != 200 {
		t.Fatal("enabled")
	}
	if l, _ := s.Latest("adm"); l.Enabled {
		t.Fatal("still enabled")
	}
	if code, _ := do("POST", "/admin/faults", `{"operation":"GetCertificate","status":429,"retryAfter":"3","latency":"5ms","times":1}`); code != 200 {
		t.Fatal("fault")
	}
	if f := s.Faults(); len(f) != 1 || f[0].Latency != 5*time.Millisecond || f[0].RetryAfter != "3" {
		t.Fatalf("faults %+v", f)
	}
	resp, _ := rawDo(t, s, "GET", "/certificates/adm/?api-version=7.5", "")
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "3" {
		t.Fatalf("fault not applied: %d", resp.StatusCode)
	}
	if code, body := do("GET", "/admin/counts", ""); code != 200 || !strings.Contains(body, `"Throttled": 1`) {
		t.Fatalf("counts %s", body)
	}
	do("DELETE", "/admin/counts", "")
	if len(s.Counts()) != 0 {
		t.Fatal("counts not reset")
	}
	do("POST", "/admin/faults", `{"status":500}`)
	do("DELETE", "/admin/faults", "")
	if len(s.Faults()) != 0 {
		t.Fatal("faults not cleared")
	}
	if code, _ := do("POST", "/admin/limit", `{"requestsPer10s":5,"sendRetryAfter":true}`); code != 200 {
		t.Fatal("limit")
	}
	if code, _ := do("POST", "/admin/identities", `{"clientId":"x","clientSecret":"y"}`); code != 200 {
		t.Fatal("identity")
	}
	if code, _ := do("POST", "/admin/certificates", `{"name":"bad name"}`); code != 400 {
		t.Fatal("bad seed accepted")
	}
	if code, _ := do("DELETE", "/admin/certificates/adm", ""); code != 200 {
		t.Fatal("delete")
	}
	if _, err := s.Latest("adm"); err == nil {
		t.Fatal("not deleted")
	}
	if code, body := do("GET", "/admin/ca", ""); code != 200 || !strings.Contains(body, "BEGIN CERTIFICATE") {
		t.Fatal("ca")
	}
}

func TestChallengeFault(t *testing.T) {
	s := startServer(t)
	seedEC(t, s, "t")
	s.InjectFault(fakevault.Fault{Operation: fakevault.OpChallenge, Status: 503, Times: 1})
	c := newClients(t, s, nil, noRetry)
	_, err := c.certs.GetCertificate(ctx(t), "t", "", nil)
	respErr(t, err, 503, "ServiceUnavailable")
	if _, err := c.certs.GetCertificate(ctx(t), "t", "", nil); err != nil {
		t.Fatal(err)
	}
}

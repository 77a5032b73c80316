package keyvault

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azcertificates"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/vaultcert/vaultcert/internal/fakevault"
)

func TestCreateCertificateMapsPolicyAndOperation(t *testing.T) {
	e := newTestEnv(t)
	e.s.SetPendingDuration(time.Hour)
	c := e.client()
	ctx := ctxT(t)

	want := Policy{
		IssuerName: IssuerSelf, Subject: "CN=api.example.com", DNSNames: []string{"api.example.com"},
		IPAddresses: []string{"192.0.2.1"}, Emails: []string{"ops@example.com"},
		KeyType: "EC", Curve: "P-384", ReuseKey: true, ValidityMonths: 3, ContentType: ContentTypePEM,
		ExtendedKeyUsages: []string{"1.3.6.1.5.5.7.3.1"}, KeyUsages: []string{"digitalSignature"},
		AutoRenew: &LifetimeTrigger{DaysBeforeExpiry: 20},
	}
	op, err := c.CreateCertificate(ctx, "api", want, nil)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if !op.Pending() || op.Status != OperationInProgress || op.StatusDetails == "" {
		t.Errorf("operation = %+v, want inProgress with details", op)
	}
	if op.RetryAfter != 10*time.Second {
		t.Errorf("RetryAfter = %v, want Key Vault's 10s", op.RetryAfter)
	}
	block, _ := pem.Decode(op.CSR)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		t.Fatalf("CSR is not PEM: %q", op.CSR)
	}
	if csr, err := x509.ParseCertificateRequest(block.Bytes); err != nil || csr.Subject.CommonName != "api.example.com" {
		t.Errorf("CSR: %v %v", err, csr)
	}

	// While pending, a second create is refused and the operation can be read back.
	if _, err := c.CreateCertificate(ctx, "api", want, nil); !IsConflict(err) {
		t.Errorf("second create while pending: %v, want a 409", err)
	}
	got, err := c.GetCertificateOperation(ctx, "api")
	if err != nil || !got.Pending() || got.RequestID != op.RequestID {
		t.Fatalf("get operation: %+v %v", got, err)
	}

	p, err := c.GetCertificatePolicy(ctx, "api")
	if err != nil {
		t.Fatal(err)
	}
	if !p.Exportable {
		t.Error("exportable must always be sent as true")
	}
	p.Exportable = false
	p.EmailContacts = nil
	w := want
	w.Exportable = false
	w.KeySize = 384 // the service fills in the EC key size from the curve
	if !reflect.DeepEqual(*p, w) {
		t.Errorf("policy round trip:\n got %+v\nwant %+v", *p, w)
	}
}

func TestCompletedCertificateCarriesPolicy(t *testing.T) {
	e := newTestEnv(t)
	c := e.client()
	ctx := ctxT(t)
	if _, err := c.CreateCertificate(ctx, "done", Policy{DNSNames: []string{"done.example.com"}, AutoRenew: &LifetimeTrigger{LifetimePercentage: 60}}, nil); err != nil {
		t.Fatal(err)
	}
	op, err := c.GetCertificateOperation(ctx, "done")
	if err != nil || op.Status != OperationCompleted || op.Target == "" {
		t.Fatalf("operation: %+v %v", op, err)
	}
	cert, err := c.GetCertificate(ctx, "done", "")
	if err != nil {
		t.Fatal(err)
	}
	if cert.Pending() || cert.Policy == nil || cert.Policy.AutoRenew == nil || cert.Policy.AutoRenew.LifetimePercentage != 60 {
		t.Fatalf("certificate policy: %+v", cert.Policy)
	}
	if cert.Policy.KeyType != "RSA" || cert.Policy.KeySize != 2048 || cert.Policy.IssuerName != IssuerSelf {
		t.Errorf("service defaults not read back: %+v", cert.Policy)
	}
}

func TestPendingFirstVersionAndMissingOperation(t *testing.T) {
	e := newTestEnv(t)
	e.s.SetPendingDuration(time.Hour)
	c := e.client()
	ctx := ctxT(t)
	if _, err := c.GetCertificateOperation(ctx, "nothing"); !IsNotFound(err) {
		t.Errorf("operation of a missing certificate: %v, want NotFound", err)
	}
	if _, err := c.CreateCertificate(ctx, "slow", Policy{Subject: "CN=slow"}, nil); err != nil {
		t.Fatal(err)
	}
	cert, err := c.GetCertificate(ctx, "slow", "")
	if err != nil {
		t.Fatal(err)
	}
	if !cert.Pending() {
		t.Errorf("a first version still being issued should read as pending: %+v", cert)
	}
}

func TestFailedOperationCarriesError(t *testing.T) {
	e := newTestEnv(t)
	c := e.client()
	ctx := ctxT(t)
	e.s.FailNextOperation("bad", "CertificateIssuanceFailed", "The CA refused the request")
	if _, err := c.CreateCertificate(ctx, "bad", Policy{Subject: "CN=bad"}, nil); err != nil {
		t.Fatal(err)
	}
	op, err := c.GetCertificateOperation(ctx, "bad")
	if err != nil {
		t.Fatal(err)
	}
	if !op.Failed() || op.ErrorCode != "CertificateIssuanceFailed" || op.ErrorMessage != "The CA refused the request" {
		t.Fatalf("operation = %+v", op)
	}
	if got := op.Problem(); got != "CertificateIssuanceFailed: The CA refused the request" {
		t.Errorf("Problem() = %q", got)
	}
}

func TestUpdatePolicyAndRecover(t *testing.T) {
	e := newTestEnv(t)
	c := e.client()
	ctx := ctxT(t)
	e.seed(fakevault.CertSpec{Name: "pol"})
	p, err := c.UpdateCertificatePolicy(ctx, "pol", Policy{IssuerName: IssuerSelf, ValidityMonths: 6, ReuseKey: true,
		AutoRenew: &LifetimeTrigger{LifetimePercentage: 50}})
	if err != nil {
		t.Fatal(err)
	}
	if p.ValidityMonths != 6 || !p.ReuseKey || p.AutoRenew == nil || p.AutoRenew.LifetimePercentage != 50 {
		t.Errorf("patched policy: %+v", p)
	}

	if err := e.s.Delete("pol"); err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateCertificate(ctx, "pol", Policy{Subject: "CN=pol"}, nil)
	var conflict *ConflictError
	if !errors.As(err, &conflict) || conflict.InnerCode != "ObjectIsDeletedButRecoverable" {
		t.Fatalf("create on a soft-deleted name: %v, want 409 ObjectIsDeletedButRecoverable", err)
	}
	if err := c.RecoverDeletedCertificate(ctx, "pol"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetCertificate(ctx, "pol", ""); err != nil {
		t.Errorf("recovered certificate: %v", err)
	}
	if err := c.RecoverDeletedCertificate(ctx, "pol"); !IsNotFound(err) {
		t.Errorf("recovering twice: %v, want NotFound", err)
	}
}

// TestOperationRetryAfterIsBounded: an operation's poll hint is read like a 429's (seconds, or milliseconds) and
// clamped, so a hostile value can neither overflow nor park the certificate for days.
func TestOperationRetryAfterIsBounded(t *testing.T) {
	for in, want := range map[string]time.Duration{"": 0, "10": 10 * time.Second, "0": 0, "-3": 0, "soon": 0,
		"99999999999999": maxOperationRetryAfter, "86400": maxOperationRetryAfter} {
		raw := &http.Response{Header: http.Header{}}
		if in != "" {
			raw.Header.Set("Retry-After", in)
		}
		if got := mapOperation(azcertificates.CertificateOperation{}, raw).RetryAfter; got != want {
			t.Errorf("Retry-After %q = %v, want %v", in, got, want)
		}
	}
}

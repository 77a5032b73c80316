package keyvault

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azcertificates"
)

// Secret content types of a certificate policy.
const (
	// ContentTypePKCS12 stores the certificate-backed secret as a base64 PFX.
	ContentTypePKCS12 = "application/x-pkcs12"
	// ContentTypePEM stores the certificate-backed secret as PEM text.
	ContentTypePEM = "application/x-pem-file"
)

// Issuer names with a special meaning in a policy.
const (
	// IssuerSelf issues a self-signed certificate.
	IssuerSelf = "Self"
	// IssuerUnknown produces a CSR and waits for a signed certificate to be merged.
	IssuerUnknown = "Unknown"
)

// OperationStatus is the status of a certificate operation.
type OperationStatus string

// Certificate operation statuses, as Key Vault spells them.
const (
	// OperationInProgress: Key Vault is still issuing (or, for issuer Unknown, waiting for a merge).
	OperationInProgress OperationStatus = "inProgress"
	// OperationCompleted: the new version exists.
	OperationCompleted OperationStatus = "completed"
	// OperationFailed: the issuer failed; Error says why.
	OperationFailed OperationStatus = "failed"
	// OperationCancelled: someone cancelled the operation.
	OperationCancelled OperationStatus = "cancelled"
)

// LifetimeTrigger is when a lifetime action fires. Exactly one field is non-zero.
type LifetimeTrigger struct {
	// DaysBeforeExpiry fires this many days before the certificate expires.
	DaysBeforeExpiry int32
	// LifetimePercentage fires when this share (1-99) of the lifetime has passed.
	LifetimePercentage int32
}

// IsZero reports whether the trigger is unset.
func (t LifetimeTrigger) IsZero() bool { return t.DaysBeforeExpiry == 0 && t.LifetimePercentage == 0 }

// Policy is the part of a Key Vault certificate policy vaultcert writes and compares.
// Empty or zero fields mean "Key Vault's default" when creating, and "not managed" when updating.
type Policy struct {
	// IssuerName is Self, Unknown or the name of an issuer configured in the vault.
	IssuerName string
	// Subject is the X.500 distinguished name, e.g. "CN=app.example.com".
	Subject string
	// DNSNames, IPAddresses and Emails are the subject alternative names.
	DNSNames, IPAddresses, Emails []string
	// KeyType is RSA, EC, RSA-HSM or EC-HSM.
	KeyType string
	// KeySize is the RSA key size in bits.
	KeySize int32
	// Curve is the EC curve (P-256, P-384, P-521, P-256K).
	Curve string
	// ReuseKey keeps the key across renewals.
	ReuseKey bool
	// Exportable lets the private key be read from the certificate's secret. vaultcert always sets it.
	Exportable bool
	// ValidityMonths is the lifetime of issued certificates.
	ValidityMonths int32
	// ContentType is ContentTypePKCS12 or ContentTypePEM.
	ContentType string
	// ExtendedKeyUsages are EKU OIDs.
	ExtendedKeyUsages []string
	// KeyUsages are Key Vault key usage names (digitalSignature, keyEncipherment, ...).
	KeyUsages []string
	// AutoRenew is the AutoRenew lifetime action's trigger; nil when the policy has none.
	AutoRenew *LifetimeTrigger
	// EmailContacts is the EmailContacts lifetime action's trigger; nil when the policy has none.
	// It is read from Key Vault only; vaultcert never writes it.
	EmailContacts *LifetimeTrigger
}

// Operation is a certificate operation (Key Vault's /certificates/{name}/pending).
type Operation struct {
	// Status is inProgress, completed, failed or cancelled.
	Status OperationStatus
	// StatusDetails is Key Vault's human-readable status.
	StatusDetails string
	// ErrorCode and ErrorMessage are Key Vault's error for a failed operation.
	ErrorCode, ErrorMessage string
	// IssuerName is the issuer of the operation.
	IssuerName string
	// CSR is the PEM certificate signing request ("CERTIFICATE REQUEST"); not secret.
	CSR []byte
	// Target is the certificate's identifier once the operation completed.
	Target string
	// RequestID identifies the operation.
	RequestID string
	// CancellationRequested says someone asked to cancel it.
	CancellationRequested bool
	// RetryAfter is the service's hint for the next poll; zero when it sent none.
	RetryAfter time.Duration
}

// Pending reports whether the operation is still in progress.
func (o *Operation) Pending() bool { return o != nil && o.Status == OperationInProgress }

// Failed reports whether the operation ended without a certificate (failed or cancelled).
func (o *Operation) Failed() bool {
	return o != nil && (o.Status == OperationFailed || o.Status == OperationCancelled)
}

// Problem describes why a failed or cancelled operation ended, for conditions and events.
func (o *Operation) Problem() string {
	if o == nil {
		return ""
	}
	switch {
	case o.ErrorCode != "" && o.ErrorMessage != "":
		return o.ErrorCode + ": " + o.ErrorMessage
	case o.ErrorCode != "":
		return o.ErrorCode
	case o.ErrorMessage != "":
		return o.ErrorMessage
	case o.StatusDetails != "":
		return o.StatusDetails
	}
	return "the operation ended with status " + string(o.Status)
}

// GetCertificateOperation implements Client. A NotFoundError means no operation exists.
func (c *azureClient) GetCertificateOperation(ctx context.Context, name string) (*Operation, error) {
	const op = "GetCertificateOperation"
	if name == "" {
		return nil, fmt.Errorf("Key Vault %s: empty certificate name", op)
	}
	var raw *http.Response
	resp, err := c.certs.GetCertificateOperation(runtime.WithCaptureResponse(ctx, &raw), name, nil)
	if err != nil {
		return nil, c.classify(op, err)
	}
	return mapOperation(resp.CertificateOperation, raw), nil
}

// GetCertificatePolicy implements Client.
func (c *azureClient) GetCertificatePolicy(ctx context.Context, name string) (*Policy, error) {
	const op = "GetCertificatePolicy"
	if name == "" {
		return nil, fmt.Errorf("Key Vault %s: empty certificate name", op)
	}
	resp, err := c.certs.GetCertificatePolicy(ctx, name, nil)
	if err != nil {
		return nil, c.classify(op, err)
	}
	return fromSDKPolicy(&resp.CertificatePolicy), nil
}

// UpdateCertificatePolicy implements Client: a PATCH of the policy with p's managed fields. It changes what
// the next version is issued with, never the current version.
func (c *azureClient) UpdateCertificatePolicy(ctx context.Context, name string, p Policy) (*Policy, error) {
	const op = "UpdateCertificatePolicy"
	if name == "" {
		return nil, fmt.Errorf("Key Vault %s: empty certificate name", op)
	}
	resp, err := c.certs.UpdateCertificatePolicy(ctx, name, *toSDKPolicy(p), nil)
	if err != nil {
		return nil, c.classify(op, err)
	}
	return fromSDKPolicy(&resp.CertificatePolicy), nil
}

// RecoverDeletedCertificate implements Client. Recovery is asynchronous in Key Vault: the certificate can
// answer 404 for a short while afterwards.
func (c *azureClient) RecoverDeletedCertificate(ctx context.Context, name string) error {
	const op = "RecoverDeletedCertificate"
	if name == "" {
		return fmt.Errorf("Key Vault %s: empty certificate name", op)
	}
	if _, err := c.certs.RecoverDeletedCertificate(ctx, name, nil); err != nil {
		return c.classify(op, err)
	}
	return nil
}

// toSDKPolicy maps a Policy to the SDK's. Exportable is always sent as true: vaultcert must read the key.
func toSDKPolicy(p Policy) *azcertificates.CertificatePolicy {
	out := &azcertificates.CertificatePolicy{
		KeyProperties:             &azcertificates.KeyProperties{Exportable: to.Ptr(true), ReuseKey: to.Ptr(p.ReuseKey)},
		X509CertificateProperties: &azcertificates.X509CertificateProperties{},
	}
	if p.IssuerName != "" {
		out.IssuerParameters = &azcertificates.IssuerParameters{Name: to.Ptr(p.IssuerName)}
	}
	kp := out.KeyProperties
	if p.KeyType != "" {
		kp.KeyType = to.Ptr(azcertificates.KeyType(p.KeyType))
	}
	if p.KeySize != 0 {
		kp.KeySize = to.Ptr(p.KeySize)
	}
	if p.Curve != "" {
		kp.Curve = to.Ptr(azcertificates.CurveName(p.Curve))
	}
	if p.ContentType != "" {
		out.SecretProperties = &azcertificates.SecretProperties{ContentType: to.Ptr(p.ContentType)}
	}
	xp := out.X509CertificateProperties
	if p.Subject != "" {
		xp.Subject = to.Ptr(p.Subject)
	}
	if len(p.DNSNames)+len(p.IPAddresses)+len(p.Emails) > 0 {
		xp.SubjectAlternativeNames = &azcertificates.SubjectAlternativeNames{
			DNSNames: ptrs(p.DNSNames), IPAddresses: ptrs(p.IPAddresses), Emails: ptrs(p.Emails),
		}
	}
	if p.ValidityMonths != 0 {
		xp.ValidityInMonths = to.Ptr(p.ValidityMonths)
	}
	if len(p.ExtendedKeyUsages) > 0 {
		xp.EnhancedKeyUsage = ptrs(p.ExtendedKeyUsages)
	}
	for _, u := range p.KeyUsages {
		xp.KeyUsage = append(xp.KeyUsage, to.Ptr(azcertificates.KeyUsageType(u)))
	}
	if t := p.AutoRenew; t != nil && !t.IsZero() {
		trig := &azcertificates.LifetimeActionTrigger{}
		if t.DaysBeforeExpiry > 0 {
			trig.DaysBeforeExpiry = to.Ptr(t.DaysBeforeExpiry)
		} else {
			trig.LifetimePercentage = to.Ptr(t.LifetimePercentage)
		}
		out.LifetimeActions = []*azcertificates.LifetimeAction{{
			Trigger: trig,
			Action:  &azcertificates.LifetimeActionType{ActionType: to.Ptr(azcertificates.CertificatePolicyActionAutoRenew)},
		}}
	}
	return out
}

// fromSDKPolicy maps the SDK's policy to a Policy; nil for nil.
func fromSDKPolicy(in *azcertificates.CertificatePolicy) *Policy {
	if in == nil {
		return nil
	}
	p := &Policy{}
	if ip := in.IssuerParameters; ip != nil && ip.Name != nil {
		p.IssuerName = *ip.Name
	}
	if kp := in.KeyProperties; kp != nil {
		if kp.KeyType != nil {
			p.KeyType = string(*kp.KeyType)
		}
		if kp.KeySize != nil {
			p.KeySize = *kp.KeySize
		}
		if kp.Curve != nil {
			p.Curve = string(*kp.Curve)
		}
		p.ReuseKey = kp.ReuseKey != nil && *kp.ReuseKey
		p.Exportable = kp.Exportable != nil && *kp.Exportable
	}
	if sp := in.SecretProperties; sp != nil && sp.ContentType != nil {
		p.ContentType = *sp.ContentType
	}
	if xp := in.X509CertificateProperties; xp != nil {
		if xp.Subject != nil {
			p.Subject = *xp.Subject
		}
		if s := xp.SubjectAlternativeNames; s != nil {
			p.DNSNames, p.IPAddresses, p.Emails = strs(s.DNSNames), strs(s.IPAddresses), strs(s.Emails)
		}
		if xp.ValidityInMonths != nil {
			p.ValidityMonths = *xp.ValidityInMonths
		}
		p.ExtendedKeyUsages = strs(xp.EnhancedKeyUsage)
		for _, u := range xp.KeyUsage {
			if u != nil {
				p.KeyUsages = append(p.KeyUsages, string(*u))
			}
		}
	}
	for _, la := range in.LifetimeActions {
		if la == nil || la.Trigger == nil || la.Action == nil || la.Action.ActionType == nil {
			continue
		}
		t := &LifetimeTrigger{}
		if la.Trigger.DaysBeforeExpiry != nil {
			t.DaysBeforeExpiry = *la.Trigger.DaysBeforeExpiry
		}
		if la.Trigger.LifetimePercentage != nil {
			t.LifetimePercentage = *la.Trigger.LifetimePercentage
		}
		switch *la.Action.ActionType {
		case azcertificates.CertificatePolicyActionAutoRenew:
			p.AutoRenew = t
		case azcertificates.CertificatePolicyActionEmailContacts:
			p.EmailContacts = t
		}
	}
	return p
}

// mapOperation maps the SDK's operation; raw (may be nil) gives the Retry-After hint.
func mapOperation(in azcertificates.CertificateOperation, raw *http.Response) *Operation {
	op := &Operation{}
	if in.Status != nil {
		op.Status = OperationStatus(*in.Status)
	}
	if in.StatusDetails != nil {
		op.StatusDetails = truncate(*in.StatusDetails)
	}
	if in.IssuerParameters != nil && in.IssuerParameters.Name != nil {
		op.IssuerName = *in.IssuerParameters.Name
	}
	if in.Target != nil {
		op.Target = *in.Target
	}
	if in.RequestID != nil {
		op.RequestID = *in.RequestID
	}
	op.CancellationRequested = in.CancellationRequested != nil && *in.CancellationRequested
	if len(in.CSR) > 0 {
		op.CSR = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: in.CSR})
	}
	if in.Error != nil {
		op.ErrorCode = in.Error.Code
		var body struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		if json.Unmarshal([]byte(in.Error.Error()), &body) == nil {
			op.ErrorMessage = truncate(body.Message)
			if op.ErrorCode == "" {
				op.ErrorCode = body.Code
			}
		}
	}
	if raw != nil {
		op.RetryAfter = min(retryAfter(raw.Header, time.Now()), maxOperationRetryAfter)
	}
	return op
}

// maxOperationRetryAfter bounds an operation's Retry-After: Key Vault sends 10 s, and a hostile or broken
// value must not turn into an absurd poll.
const maxOperationRetryAfter = 5 * time.Minute

func ptrs(in []string) []*string {
	if len(in) == 0 {
		return nil
	}
	out := make([]*string, len(in))
	for i := range in {
		out[i] = to.Ptr(in[i])
	}
	return out
}

func strs(in []*string) []string {
	var out []string
	for _, s := range in {
		if s != nil {
			out = append(out, *s)
		}
	}
	return out
}

package controllers

import (
	"errors"
	"fmt"
	"time"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/connection"
	"github.com/vaultcert/vaultcert/internal/keyvault"
	"github.com/vaultcert/vaultcert/internal/pki"
)

// failure is a classified reconcile failure: the Ready reason, a message saying what to fix, and how to retry.
type failure struct {
	reason  string
	message string
	// transient failures keep Ready=True while the Secret holds a valid certificate and retry with backoff.
	transient bool
	// retryAfter, when set, is the server's or the governor's pause (throttling).
	retryAfter time.Duration
	err        error
}

// Error returns the message.
func (f *failure) Error() string { return f.message }

// Unwrap returns the cause.
func (f *failure) Unwrap() error { return f.err }

// classify maps any error of the sync path to a failure. what describes the object being read, e.g.
// `certificate "web" in https://myvault.vault.azure.net/`.
func classify(err error, what string) *failure {
	var (
		f      *failure
		ce     *connection.Error
		thr    *keyvault.ThrottledError
		forbid *keyvault.ForbiddenError
		conf   *keyvault.ConflictError
	)
	switch {
	case errors.As(err, &f):
		return f
	case errors.As(err, &ce):
		return &failure{reason: ce.Reason, message: ce.Message, err: err}
	case errors.As(err, &thr):
		return &failure{reason: vaultcertv1.ReasonThrottled, transient: true, retryAfter: thr.RequeueAfter(time.Now()), err: err,
			message: fmt.Sprintf("Key Vault is throttling requests (429) while reading %s; vaultcert pauses this vault and retries: %v", what, err)}
	case keyvault.IsHostNotAllowed(err):
		// A hop the connection's checks did not foresee (e.g. a URL the vault handed back): refused, not sent.
		return &failure{reason: vaultcertv1.ReasonConnectionNotAllowed, err: err,
			message: fmt.Sprintf("reading %s needed a request to a host the connection may not reach, so it was not sent: %v", what, err)}
	case keyvault.IsResponseTooLarge(err):
		return &failure{reason: vaultcertv1.ReasonKeyVaultError, err: err,
			message: fmt.Sprintf("reading %s failed: %v; no real Key Vault or Entra ID answer is that large, so vaultcert stops reading it (check the vault URL and the authority)", what, err)}
	case keyvault.IsAuthentication(err):
		return &failure{reason: vaultcertv1.ReasonAuthenticationFailed, err: err,
			message: fmt.Sprintf("%v; %s", err, connection.AuthenticationFix(err))}
	case keyvault.IsUnauthorized(err):
		return &failure{reason: vaultcertv1.ReasonAuthenticationFailed, err: err,
			message: fmt.Sprintf("Key Vault refused the connection's token reading %s: %v; check that tenantID is the vault's tenant", what, err)}
	case keyvault.IsDisabled(err):
		return &failure{reason: vaultcertv1.ReasonCertificateDisabled, err: err,
			message: fmt.Sprintf("%s is disabled in Key Vault: %v; enable the version or pin another one", what, err)}
	case errors.As(err, &forbid):
		return &failure{reason: vaultcertv1.ReasonAccessDenied, err: err, message: forbiddenMessage(forbid, what)}
	case keyvault.IsNotFound(err):
		return &failure{reason: vaultcertv1.ReasonCertificateNotFound, err: err,
			message: fmt.Sprintf("%s was not found: check spec.certificateName and spec.version, or that it was not deleted (%v)", what, err)}
	case errors.As(err, &conf) && conf.InnerCode == "ObjectIsDeletedButRecoverable":
		return &failure{reason: vaultcertv1.ReasonCertificateSoftDeleted, err: err,
			message: fmt.Sprintf("%s is soft-deleted in Key Vault, so the name cannot be created again: recover it with its versions "+
				"(az keyvault certificate recover --vault-name <vault> --name <name>), or set spec.issuance.recoverSoftDeleted: true "+
				"and vaultcert recovers it; or purge it for good (az keyvault certificate purge --vault-name <vault> --name <name>; "+
				"vaultcert never purges) and vaultcert creates a new one", what)}
	case errors.Is(err, pki.ErrNoPrivateKey):
		return &failure{reason: vaultcertv1.ReasonKeyNotExportable, err: err,
			message: fmt.Sprintf("Key Vault returned no private key for %s: its policy has exportable=false, and a non-exportable key can never be read; re-create the certificate with key_props.exportable=true", what)}
	case errors.Is(err, pki.ErrKeyMismatch), errors.Is(err, pki.ErrChainBroken), errors.Is(err, pki.ErrMalformed):
		return &failure{reason: vaultcertv1.ReasonInvalidCertificate, err: err,
			message: fmt.Sprintf("%s is not usable: %v; the Secret keeps its last good certificate", what, err)}
	default:
		return &failure{reason: vaultcertv1.ReasonKeyVaultError, transient: true, err: err,
			message: fmt.Sprintf("reading %s failed: %v; retrying with backoff", what, err)}
	}
}

// forbiddenMessage names the missing permission, role, firewall rule or policy for a 403.
func forbiddenMessage(e *keyvault.ForbiddenError, what string) string {
	need := "the 'Key Vault Certificate User' role (certificate metadata)"
	switch e.Operation {
	case "GetSecret":
		need = "the 'Key Vault Secrets User' role (the private key is read from the certificate's secret), and the 'Key Vault Certificate User' role to follow new versions"
	case "CreateCertificate", "GetCertificateOperation", "GetCertificatePolicy", "UpdateCertificatePolicy", "RecoverDeletedCertificate", "UpdateCertificate":
		need = "the 'Key Vault Certificates Officer' role (spec.issuance creates certificates, manages their policy and recovers them)"
	}
	switch e.InnerCode {
	case "ForbiddenByFirewall":
		return fmt.Sprintf("Key Vault's firewall blocks the controller reading %s (%v): add the cluster's egress address to the vault's network rules, or reach the vault through a private endpoint", what, e)
	case "ForbiddenByPolicy":
		return fmt.Sprintf("an Azure Policy assignment denies reading %s (%v): ask the policy owner for an exemption", what, e)
	case "AccessDenied":
		return fmt.Sprintf("the vault's access policy does not let the connection's identity read %s (%v): grant it certificates get/list and secrets get, or move the vault to Azure RBAC and assign %s", what, e, need)
	default:
		return fmt.Sprintf("the connection's identity may not read %s (%v): assign it %s on the vault or on the certificate", what, e, need)
	}
}

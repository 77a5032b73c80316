package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/connection"
	"github.com/vaultcert/vaultcert/internal/decide"
	"github.com/vaultcert/vaultcert/internal/keyvault"
)

// defaultIssuancePoll is how often a pending certificate operation is polled when Key Vault gives no Retry-After
// (it normally sends 10 s).
const defaultIssuancePoll = 10 * time.Second

// issuanceResult is what the issuance step hands back to the sync: go on with cert (with a note for the Ready
// message, and a poll while a new version is issued), wait for a first version, or fail.
type issuanceResult struct {
	// cert is the certificate to sync (re-read when an operation just completed).
	cert *keyvault.Certificate
	// poll > 0 means an operation is in flight: check again this soon.
	poll time.Duration
	// note is appended to the Ready message (an overdue renewal, a failed renewal, why spec.issuance is not
	// applied).
	note string
	// noteEvent, when set, is the reason of a Warning event carrying note, sent when the Ready condition changes.
	noteEvent string
	// waitFirst: no version exists yet; the sync sets Ready=False Issuing with waiting as its message, and
	// requeues after poll.
	waitFirst bool
	waiting   string
	// failure ends the sync through fail() (condition, event, retry).
	failure *failure
}

// ends reports whether the sync stops here (waiting or failed) instead of going on with cert.
func (res issuanceResult) ends() bool { return res.failure != nil || res.waitFirst }

// failedWith is the result that ends the sync with f.
func failedWith(f *failure) issuanceResult { return issuanceResult{failure: f} }

// withCert makes a non-stopping result carry the certificate to sync.
func (res issuanceResult) withCert(cert *keyvault.Certificate) issuanceResult {
	if !res.ends() && res.cert == nil {
		res.cert = cert
	}
	return res
}

// issuanceStep is one run of the issuance step of a VaultCertificate with spec.issuance: what every part of it
// works on.
type issuanceStep struct {
	r    *VaultCertificateReconciler
	vc   *vaultcertv1.VaultCertificate
	conn *connection.Resolved
	kv   keyvault.Client
	// name is the Key Vault certificate name; what describes it in messages.
	name, what string
	// want is spec.issuance as a Key Vault policy.
	want keyvault.Policy
}

// reconcileIssuance runs instead of a plain read of the latest version when spec.issuance is set (and no version
// is pinned): it creates the certificate when missing, follows a pending operation, keeps Key Vault's policy to
// the spec, and requests new versions for a changed policy, the vaultcert.io/renew annotation and an overdue
// renewal; then it hands the latest version to the sync.
//
// It writes to Key Vault only when the connection allows issuance (issuanceRefusal) and the certificate is this
// VaultCertificate's (owner tags, checkOwner); otherwise the certificate is only synced and the Ready message
// says why.
func (r *VaultCertificateReconciler) reconcileIssuance(ctx context.Context, run *syncRun) issuanceResult {
	s := &issuanceStep{r: r, vc: run.vc, conn: run.conn, kv: run.kv, name: run.vc.Spec.CertificateName, what: run.what,
		want: decide.IssuancePolicy(run.vc.Spec.Issuance)}
	cert, err := s.kv.GetCertificate(ctx, s.name, "")
	switch {
	case keyvault.IsNotFound(err) || (err == nil && cert.Pending()):
		return s.createFirst(ctx, cert)
	case err != nil:
		return failedWith(classify(err, s.what))
	}
	// The certificate exists: only its owner, through a connection that allows issuance, changes it.
	if refusal := s.refusal(ctx); refusal != "" {
		return s.readOnly(vaultcertv1.ReasonConnectionNotAllowed,
			"spec.issuance is not applied (the certificate is only synced): "+refusal+"; or remove spec.issuance").withCert(cert)
	}
	if res, done := s.checkOwner(ctx, cert); done {
		return res.withCert(cert)
	}
	cert, res, done := s.followOperation(ctx, cert)
	if done {
		return res.withCert(cert)
	}
	for _, step := range []func(context.Context, *keyvault.Certificate) (issuanceResult, bool){s.keepPolicy, s.renewOnRequest, s.renewIfOverdue} {
		if res, done := step(ctx, cert); done {
			return res.withCert(cert)
		}
	}
	return issuanceResult{cert: cert}
}

// refusal says why this VaultCertificate may not write to Key Vault through its connection; "" when it may.
func (s *issuanceStep) refusal(ctx context.Context) string {
	if refusal := issuanceRefusal(s.vc, s.conn); refusal != "" {
		return refusal
	}
	return s.longerNamespacePrefix(ctx)
}

// createFirst handles a certificate with no usable version: it follows the pending first operation, backs off
// after a failed one, and otherwise requests the first version (only its owner asks again after a failure).
// cert is the pending certificate, nil when Key Vault has none.
func (s *issuanceStep) createFirst(ctx context.Context, cert *keyvault.Certificate) issuanceResult {
	if refusal := s.refusal(ctx); refusal != "" {
		return failedWith(&failure{reason: vaultcertv1.ReasonConnectionNotAllowed, message: fmt.Sprintf(
			"%s does not exist and vaultcert may not create it: %s; or create the certificate in Key Vault and vaultcert syncs it", s.what, refusal)})
	}
	op, err := s.kv.GetCertificateOperation(ctx, s.name)
	switch {
	case err == nil && op.Pending():
		return s.issuing(op, true)
	case err == nil && op.Failed():
		if retryAt, isNew := s.failedOperation(op); isNew || s.r.now().Before(retryAt) {
			return s.firstFailed(op, retryAt)
		}
		// The backoff has passed: try again below.
	case err != nil && !keyvault.IsNotFound(err):
		return failedWith(classify(err, "the pending operation of "+s.what))
	}
	// No operation, a completed one (the certificate is gone since), or a failed one due for a retry.
	if cert != nil || (err == nil && op != nil) {
		// A first version was asked for (pending, failed or gone): only its owner asks again, within the daily
		// limit. Without a readable version, the versions' tags tell who asked.
		first := cert
		if first == nil {
			first = &keyvault.Certificate{}
		}
		if res, done := s.retryFirstVersion(ctx, first); done {
			return res
		}
	}
	if renew := s.vc.Annotations[vaultcertv1.AnnotationRenew]; renew != "" {
		s.vc.Status.LastRenewRequest = renew // the first version answers any renewal request made so far
	}
	return s.requestVersion(ctx, versionRequest{missing: true,
		why: fmt.Sprintf("created certificate %q in Key Vault (issuer %s)", s.name, s.want.IssuerName)})
}

// followOperation follows an operation vaultcert started (Issuing=True): still pending, failed (the Secret keeps
// the current version), or completed (the new version is read). done ends the issuance step with res.
func (s *issuanceStep) followOperation(ctx context.Context, cert *keyvault.Certificate) (_ *keyvault.Certificate, res issuanceResult, done bool) {
	vc := s.vc
	c := meta.FindStatusCondition(vc.Status.Conditions, vaultcertv1.ConditionIssuing)
	if c == nil || c.Status != metav1.ConditionTrue {
		if c != nil && !decide.IssuanceLimited(vc) && cert.Version != vc.Status.Version && vc.Status.Version != "" {
			// A failed issuance was reported, and a new version has appeared since (Key Vault's AutoRenew, a
			// merge, someone else's create): the failure is history. Reaching the daily limit is not: it lasts
			// until the spec or the renew annotation changes.
			issuanceDone(vc)
		}
		return cert, issuanceResult{}, false
	}
	op, err := s.kv.GetCertificateOperation(ctx, s.name)
	switch {
	case err != nil && !keyvault.IsNotFound(err):
		return cert, failedWith(classify(err, "the pending operation of "+s.what)), true
	case err == nil && op.Pending():
		return cert, s.issuing(op, false), true
	case err == nil && op.Failed():
		_, isNew := s.failedOperation(op)
		msg := fmt.Sprintf("Key Vault could not issue a new version of %s: %s; the Secret keeps version %s", s.what, op.Problem(), cert.Version)
		setIssuing(vc, metav1.ConditionFalse, vaultcertv1.ReasonIssuanceFailed, msg)
		if isNew {
			s.r.Recorder.Eventf(vc, nil, corev1.EventTypeWarning, vaultcertv1.ReasonIssuanceFailed, "Issue", "%s", msg)
		}
		return cert, issuanceResult{note: "the last issuance failed: " + op.Problem()}, true
	}
	// Completed (or gone): the new version is the latest; read it again.
	issuanceDone(vc)
	fresh, err := s.kv.GetCertificate(ctx, s.name, "")
	if err != nil {
		return cert, failedWith(classify(err, s.what)), true
	}
	s.r.Recorder.Eventf(vc, nil, corev1.EventTypeNormal, vaultcertv1.ReasonIssuing, "Issue",
		"Key Vault issued version %s of certificate %q", fresh.Version, s.name)
	return fresh, issuanceResult{}, false
}

// keepPolicy keeps Key Vault's policy to spec.issuance: a change to the certificate itself (subject, names, key)
// requests a new version with the new policy; any other change updates the policy for the next version.
func (s *issuanceStep) keepPolicy(ctx context.Context, cert *keyvault.Certificate) (issuanceResult, bool) {
	have := cert.Policy
	if have == nil {
		p, err := s.kv.GetCertificatePolicy(ctx, s.name)
		if err != nil {
			return failedWith(classify(err, "the policy of "+s.what)), true
		}
		have = p
	}
	changed, reissue := decide.PolicyDiff(s.want, have)
	if len(changed) == 0 {
		return issuanceResult{}, false
	}
	list := strings.Join(changed, ", ")
	if reissue {
		// A create with the new policy replaces the policy and issues a version in one call; should it fail, the
		// policy still differs and the next reconcile tries again.
		return s.requestVersion(ctx, versionRequest{latest: cert, why: fmt.Sprintf(
			"spec.issuance changed (%s), which changes the certificate itself: Key Vault's policy was replaced and a new version requested", list)}), true
	}
	if _, err := s.kv.UpdateCertificatePolicy(ctx, s.name, s.want); err != nil {
		return failedWith(classify(err, "the policy of "+s.what)), true
	}
	s.r.Recorder.Eventf(s.vc, nil, corev1.EventTypeNormal, vaultcertv1.EventPolicyUpdated, "UpdatePolicy",
		"spec.issuance changed (%s): Key Vault's policy of %q was updated; it applies from the next version, so no new version was requested", list, s.name)
	return issuanceResult{}, false
}

// renewOnRequest requests one new version per distinct value of the vaultcert.io/renew annotation.
func (s *issuanceStep) renewOnRequest(ctx context.Context, cert *keyvault.Certificate) (issuanceResult, bool) {
	renew := s.vc.Annotations[vaultcertv1.AnnotationRenew]
	if renew == "" || renew == s.vc.Status.LastRenewRequest {
		return issuanceResult{}, false
	}
	s.vc.Status.LastRenewRequest = renew
	return s.requestVersion(ctx, versionRequest{latest: cert, manual: true, why: fmt.Sprintf(
		"renewal requested by annotation %s=%q", vaultcertv1.AnnotationRenew, renew)}), true
}

// renewIfOverdue requests a new version when Key Vault has produced none past the renewal time; an issuer that
// cannot renew by itself (Unknown) is reported instead.
func (s *issuanceStep) renewIfOverdue(ctx context.Context, cert *keyvault.Certificate) (issuanceResult, bool) {
	renewal, overdue := decide.RenewalOverdue(s.r.now(), cert)
	if !overdue {
		return issuanceResult{}, false
	}
	issuerName := s.want.IssuerName
	if cert.Policy != nil && cert.Policy.IssuerName != "" {
		issuerName = cert.Policy.IssuerName
	}
	note := fmt.Sprintf("the certificate was due for renewal at %s and expires at %s, but Key Vault has produced no new version",
		renewal.UTC().Format(time.RFC3339), cert.Expires.UTC().Format(time.RFC3339))
	if decide.IssuerCanRenew(issuerName) {
		return s.requestVersion(ctx, versionRequest{latest: cert, why: note + ": vaultcert requested one"}), true
	}
	note += "; issuer Unknown cannot renew by itself: set the annotation " + vaultcertv1.AnnotationRenew +
		" to get a new CSR in status.csr, sign it and merge it"
	return issuanceResult{note: note, noteEvent: vaultcertv1.EventRenewalOverdue}, true
}

// versionRequest says why requestVersion asks Key Vault for a version.
type versionRequest struct {
	// missing: the certificate does not exist, this is its first version.
	missing bool
	// manual: the vaultcert.io/renew annotation asked for it; a person asking is never held to the daily limit.
	manual bool
	// latest is the latest version (nil when missing): its own tags are carried to the new version.
	latest *keyvault.Certificate
	// why goes into the event.
	why string
}

// requestVersion asks Key Vault for a new version (the first when missing), tagged with this VaultCertificate
// as the owner. Automatic requests stop at the daily limit. An operation already in flight is reused; a
// soft-deleted name is recovered when spec.issuance.recoverSoftDeleted allows it.
func (s *issuanceStep) requestVersion(ctx context.Context, req versionRequest) issuanceResult {
	vc := s.vc
	if !req.missing && !req.manual {
		if res, stop := s.dailyLimit(ctx, req.why); stop {
			return res
		}
	}
	op, err := s.kv.CreateCertificate(ctx, s.name, s.want, s.r.requestTags(vc, req.latest))
	var conflict *keyvault.ConflictError
	switch {
	case err == nil:
		logf.FromContext(ctx).Info("requested a certificate version from Key Vault", "certificate", s.name, "issuer", s.want.IssuerName, "why", req.why)
		s.r.Recorder.Eventf(vc, nil, corev1.EventTypeNormal, vaultcertv1.ReasonIssuing, "Issue", "%s", req.why)
		return s.issuing(op, req.missing)
	case errors.As(err, &conflict) && conflict.InnerCode == "ObjectIsDeletedButRecoverable" && vc.Spec.Issuance.RecoverSoftDeleted:
		if rerr := s.kv.RecoverDeletedCertificate(ctx, s.name); rerr != nil {
			return failedWith(classify(rerr, "the soft-deleted "+s.what))
		}
		msg := fmt.Sprintf("certificate %q was soft-deleted in Key Vault; recovered it (spec.issuance.recoverSoftDeleted: true) with its versions and policy", s.name)
		s.r.Recorder.Eventf(vc, nil, corev1.EventTypeNormal, vaultcertv1.EventRecovered, "Recover", "%s", msg)
		// Recovery is asynchronous: read the certificate again shortly.
		return issuanceResult{waitFirst: true, poll: s.r.issuancePoll(nil), waiting: msg + "; waiting for Key Vault to finish the recovery"}
	case errors.As(err, &conflict) && conflict.InnerCode == "":
		// Another operation is pending (someone else's create, or Key Vault's AutoRenew): follow it.
		if pending, gerr := s.kv.GetCertificateOperation(ctx, s.name); gerr == nil && pending.Pending() {
			return s.issuing(pending, req.missing)
		}
	}
	return failedWith(classify(err, s.what))
}

// issuing records a pending operation: Issuing=True with Key Vault's status details (and, for issuer Unknown,
// the CSR and what to do with it); Ready=False Issuing when there is no certificate yet.
func (s *issuanceStep) issuing(op *keyvault.Operation, missing bool) issuanceResult {
	vc := s.vc
	details := op.StatusDetails
	if details == "" {
		details = "the certificate request is in progress"
	}
	msg := fmt.Sprintf("Key Vault is issuing %s (issuer %s): %s", s.what, displayIssuer(op.IssuerName), details)
	unknown := strings.EqualFold(op.IssuerName, keyvault.IssuerUnknown)
	if unknown {
		msg = fmt.Sprintf("Key Vault is waiting for a signed certificate for %s (issuer Unknown): sign the CSR in status.csr with your CA, "+
			"then merge the signed certificate (with its chain): az keyvault certificate pending merge --vault-name <vault> --name %s --file signed.pem",
			s.what, s.name)
	}
	setIssuing(vc, metav1.ConditionTrue, vaultcertv1.ReasonIssuing, msg)
	if unknown {
		vc.Status.CSR = string(op.CSR)
	}
	poll := s.r.issuancePoll(op)
	if missing {
		return issuanceResult{waitFirst: true, poll: poll, waiting: msg}
	}
	return issuanceResult{poll: poll}
}

// failedOperation records a failed operation in status.issuance (counted once per request ID) and returns when
// to retry, and whether it was not seen before.
func (s *issuanceStep) failedOperation(op *keyvault.Operation) (retryAt time.Time, isNew bool) {
	st, isNew := decide.FailedOperation(s.vc.Status.Issuance, op.RequestID, s.r.now(), s.r.issuancePoll(nil))
	s.vc.Status.Issuance = &st
	return st.RetryAt.Time, isNew
}

// firstFailed reports a failed first issuance: Ready=False IssuanceFailed with Key Vault's error, retried at
// retryAt.
func (s *issuanceStep) firstFailed(op *keyvault.Operation, retryAt time.Time) issuanceResult {
	msg := fmt.Sprintf("Key Vault could not issue %s (issuer %s, operation %s): %s; vaultcert retries with backoff",
		s.what, displayIssuer(op.IssuerName), op.Status, op.Problem())
	setIssuing(s.vc, metav1.ConditionFalse, vaultcertv1.ReasonIssuanceFailed, msg)
	return failedWith(&failure{reason: vaultcertv1.ReasonIssuanceFailed, message: msg,
		retryAfter: max(retryAt.Sub(s.r.now()), time.Millisecond)})
}

// setIssuing and issuanceDone are the only writers of the Issuing condition. Any new state of it ends the daily
// limit's stop unless it says so itself (dailyLimit sets it after), and clears a CSR of an earlier operation.
func setIssuing(vc *vaultcertv1.VaultCertificate, status metav1.ConditionStatus, reason, message string) {
	setCondition(&vc.Status.Conditions, vc.Generation, vaultcertv1.ConditionIssuing, status, reason, message)
	vc.Status.CSR = ""
	if vc.Status.Issuance != nil {
		vc.Status.Issuance.LimitedAtGeneration = 0
	}
}

// issuanceDone clears the Issuing condition, the CSR and the failure count once no operation is in flight.
func issuanceDone(vc *vaultcertv1.VaultCertificate) {
	meta.RemoveStatusCondition(&vc.Status.Conditions, vaultcertv1.ConditionIssuing)
	vc.Status.CSR = ""
	vc.Status.Issuance = nil
}

// issuancePoll is how long to wait before polling op again: IssuancePollInterval when set, else the
// operation's Retry-After, else 10 s.
func (r *VaultCertificateReconciler) issuancePoll(op *keyvault.Operation) time.Duration {
	switch {
	case r.IssuancePollInterval > 0:
		return r.IssuancePollInterval
	case op != nil && op.RetryAfter > 0:
		return op.RetryAfter
	default:
		return defaultIssuancePoll
	}
}

func displayIssuer(name string) string {
	if name == "" {
		return keyvault.IssuerSelf
	}
	return name
}

package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/decide"
	"github.com/vaultcert/vaultcert/internal/keyvault"
)

const (
	// defaultIssuancePoll is how often a pending certificate operation is polled when Key Vault gives no
	// Retry-After (it normally sends 10 s).
	defaultIssuancePoll = 10 * time.Second
)

// issuanceResult is what the issuance step hands back to the sync: go on with cert (with a note for the Ready
// message, and a poll while a new version is issued), wait for a first version, or fail.
type issuanceResult struct {
	// cert is the certificate to sync (re-read when an operation just completed).
	cert *keyvault.Certificate
	// poll > 0 means an operation is in flight: check again this soon.
	poll time.Duration
	// note is appended to the Ready message (an overdue renewal, a failed renewal).
	note string
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

// issuanceBackoff remembers failed issuances per VaultCertificate, so that a failing issuer is retried with
// exponential backoff instead of on every reconcile. It is in memory: a restart retries once at once.
type issuanceBackoff struct {
	mu sync.Mutex
	m  map[types.NamespacedName]*backoffEntry
}

type backoffEntry struct {
	requestID string
	failures  int
	retryAt   time.Time
}

// observe records a failed operation once per request ID and returns when the next try is due.
func (b *issuanceBackoff) observe(key types.NamespacedName, requestID string, now time.Time, base time.Duration) (retryAt time.Time, isNew bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[types.NamespacedName]*backoffEntry{}
	}
	e := b.m[key]
	if e == nil {
		e = &backoffEntry{}
		b.m[key] = e
	}
	if e.requestID != requestID || e.retryAt.IsZero() {
		e.requestID = requestID
		e.failures++
		e.retryAt = now.Add(decide.BackoffDelay(base, e.failures))
		return e.retryAt, true
	}
	return e.retryAt, false
}

// reset forgets the failures of key (an issuance succeeded).
func (b *issuanceBackoff) reset(key types.NamespacedName) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, key)
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

// reconcileIssuance runs before the sync when spec.issuance is set (and no version is pinned): it creates the
// certificate when missing, follows a pending operation, keeps Key Vault's policy to the spec, and requests
// new versions for a changed policy, the vaultcert.io/renew annotation and an overdue renewal.
// cert and getErr are the result of reading the latest version.
//
// It writes to Key Vault only when the connection allows issuance (issuanceRefusal) and the certificate is
// this VaultCertificate's (owner tags, checkOwner); otherwise the certificate is only synced and the Ready
// message says why.
func (r *VaultCertificateReconciler) reconcileIssuance(ctx context.Context, vc *vaultcertv1.VaultCertificate, secret *corev1.Secret,
	conn *resolvedConnection, kv keyvault.Client, cert *keyvault.Certificate, getErr error, what string) issuanceResult {
	name := vc.Spec.CertificateName
	want := decide.IssuancePolicy(vc.Spec.Issuance)
	key := types.NamespacedName{Namespace: vc.Namespace, Name: vc.Name}

	missing := keyvault.IsNotFound(getErr) || (getErr == nil && cert.Pending())
	if getErr != nil && !missing {
		return failedWith(classify(getErr, what))
	}
	refusal := issuanceRefusal(vc, conn)
	if refusal == "" {
		refusal = r.longerNamespacePrefix(ctx, vc, conn)
	}

	if missing {
		if refusal != "" {
			return failedWith(&failure{reason: vaultcertv1.ReasonConnectionNotAllowed, message: fmt.Sprintf(
				"%s does not exist and vaultcert may not create it: %s; or create the certificate in Key Vault and vaultcert syncs it", what, refusal)})
		}
		op, err := kv.GetCertificateOperation(ctx, name)
		switch {
		case err == nil && op.Pending():
			return r.issuing(vc, op, true, what)
		case err == nil && op.Failed():
			retryAt, isNew := r.issuanceBackoff.observe(key, op.RequestID, r.now(), r.issuancePoll(nil))
			if isNew || r.now().Before(retryAt) {
				return r.issuanceFailed(vc, op, retryAt, what)
			}
			// The backoff has passed: try again below.
		case err != nil && !keyvault.IsNotFound(err):
			return failedWith(classify(err, "the pending operation of "+what))
		}
		// No operation, a completed one (the certificate is gone since), or a failed one due for a retry.
		if cert != nil || (err == nil && op != nil) {
			// A first version was asked for (pending, failed or gone): only its owner asks again, within the
			// daily limit. Without a readable version, the versions' tags tell who asked.
			first := cert
			if first == nil {
				first = &keyvault.Certificate{}
			}
			if res, done := r.retryFirstVersion(ctx, vc, secret, kv, first, what); done {
				return res
			}
		}
		if renew := vc.Annotations[vaultcertv1.AnnotationRenew]; renew != "" {
			vc.Status.LastRenewRequest = renew // the first version answers any renewal request made so far
		}
		return r.requestVersion(ctx, vc, secret, kv, want, versionRequest{missing: true,
			why: fmt.Sprintf("created certificate %q in Key Vault (issuer %s)", name, want.IssuerName)}, what)
	}

	// The certificate exists: only its owner, through a connection that allows issuance, changes it.
	if refusal != "" {
		return r.readOnly(vc, cert, key, vaultcertv1.ReasonConnectionNotAllowed,
			"spec.issuance is not applied (the certificate is only synced): "+refusal+"; or remove spec.issuance")
	}
	if res, done := r.checkOwner(ctx, vc, kv, cert, key, what); done {
		return res
	}

	// Follow an operation vaultcert started (Issuing=True).
	if c := meta.FindStatusCondition(vc.Status.Conditions, vaultcertv1.ConditionIssuing); c != nil && c.Status == metav1.ConditionTrue {
		op, err := kv.GetCertificateOperation(ctx, name)
		switch {
		case err != nil && !keyvault.IsNotFound(err):
			return failedWith(classify(err, "the pending operation of "+what))
		case err == nil && op.Pending():
			res := r.issuing(vc, op, false, what)
			res.cert = cert
			return res
		case err == nil && op.Failed():
			_, isNew := r.issuanceBackoff.observe(key, op.RequestID, r.now(), r.issuancePoll(nil))
			msg := fmt.Sprintf("Key Vault could not issue a new version of %s: %s; the Secret keeps version %s", what, op.Problem(), cert.Version)
			setCondition(&vc.Status.Conditions, vc.Generation, vaultcertv1.ConditionIssuing, metav1.ConditionFalse, vaultcertv1.ReasonIssuanceFailed, msg)
			vc.Status.CSR = ""
			if isNew {
				r.Recorder.Eventf(vc, nil, corev1.EventTypeWarning, vaultcertv1.ReasonIssuanceFailed, "Issue", "%s", msg)
			}
			return issuanceResult{cert: cert, note: "the last issuance failed: " + op.Problem()}
		default:
			// Completed (or gone): the new version is the latest; read it again.
			r.issuanceDone(vc, cert, key)
			fresh, err := kv.GetCertificate(ctx, name, "")
			if err != nil {
				return failedWith(classify(err, what))
			}
			cert = fresh
			r.Recorder.Eventf(vc, nil, corev1.EventTypeNormal, vaultcertv1.ReasonIssuing, "Issue",
				"Key Vault issued version %s of certificate %q", cert.Version, name)
		}
	} else if _, stopped := capped(vc); c != nil && !stopped && cert.Version != vc.Status.Version && vc.Status.Version != "" {
		// A failed issuance was reported, and a new version has appeared since (Key Vault's AutoRenew, a merge,
		// someone else's create): the failure is history. Reaching the daily limit is not: it lasts until the
		// spec or the renew annotation changes.
		r.issuanceDone(vc, cert, key)
	}

	// Policy drift.
	have := cert.Policy
	if have == nil {
		p, err := kv.GetCertificatePolicy(ctx, name)
		if err != nil {
			return failedWith(classify(err, "the policy of "+what))
		}
		have = p
	}
	if changed, reissue := decide.PolicyDiff(want, have); len(changed) > 0 {
		list := strings.Join(changed, ", ")
		if reissue {
			// A create with the new policy replaces the policy and issues a version in one call; should it fail,
			// the policy still differs and the next reconcile tries again.
			return r.requestVersion(ctx, vc, secret, kv, want, versionRequest{latest: cert, why: fmt.Sprintf(
				"spec.issuance changed (%s), which changes the certificate itself: Key Vault's policy was replaced and a new version requested", list)}, what).withCert(cert)
		}
		if _, err := kv.UpdateCertificatePolicy(ctx, name, want); err != nil {
			return failedWith(classify(err, "the policy of "+what))
		}
		r.Recorder.Eventf(vc, nil, corev1.EventTypeNormal, vaultcertv1.EventPolicyUpdated, "UpdatePolicy",
			"spec.issuance changed (%s): Key Vault's policy of %q was updated; it applies from the next version, so no new version was requested", list, name)
	}

	// Manual renewal: one new version per distinct annotation value.
	if renew := vc.Annotations[vaultcertv1.AnnotationRenew]; renew != "" && renew != vc.Status.LastRenewRequest {
		vc.Status.LastRenewRequest = renew
		return r.requestVersion(ctx, vc, secret, kv, want, versionRequest{latest: cert, manual: true, why: fmt.Sprintf(
			"renewal requested by annotation %s=%q", vaultcertv1.AnnotationRenew, renew)}, what).withCert(cert)
	}

	// Overdue renewal: Key Vault has produced no new version past the renewal time.
	if renewal, overdue := decide.RenewalOverdue(r.now(), cert); overdue {
		issuerName := want.IssuerName
		if cert.Policy != nil && cert.Policy.IssuerName != "" {
			issuerName = cert.Policy.IssuerName
		}
		note := fmt.Sprintf("the certificate was due for renewal at %s and expires at %s, but Key Vault has produced no new version",
			renewal.UTC().Format(time.RFC3339), cert.Expires.UTC().Format(time.RFC3339))
		if decide.IssuerCanRenew(issuerName) {
			return r.requestVersion(ctx, vc, secret, kv, want, versionRequest{latest: cert, why: note + ": vaultcert requested one"}, what).withCert(cert)
		}
		note += "; issuer Unknown cannot renew by itself: set the annotation " + vaultcertv1.AnnotationRenew +
			" to get a new CSR in status.csr, sign it and merge it"
		if ready := readyCondition(vc); ready == nil || !strings.Contains(ready.Message, "due for renewal") {
			r.Recorder.Eventf(vc, nil, corev1.EventTypeWarning, vaultcertv1.EventRenewalOverdue, "Renew", "%s", note)
		}
		return issuanceResult{cert: cert, note: note}
	}
	return issuanceResult{cert: cert}
}

// withCert makes a non-stopping result carry the certificate to sync.
func (res issuanceResult) withCert(cert *keyvault.Certificate) issuanceResult {
	if !res.ends() && res.cert == nil {
		res.cert = cert
	}
	return res
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
func (r *VaultCertificateReconciler) requestVersion(ctx context.Context, vc *vaultcertv1.VaultCertificate, secret *corev1.Secret,
	kv keyvault.Client, want keyvault.Policy, req versionRequest, what string) issuanceResult {
	log := logf.FromContext(ctx)
	name := vc.Spec.CertificateName
	if !req.missing && !req.manual {
		if res, stop := r.dailyLimit(ctx, vc, kv, req.why, what); stop {
			return res
		}
	}
	op, err := kv.CreateCertificate(ctx, name, want, r.requestTags(vc, req.latest))
	var conflict *keyvault.ConflictError
	switch {
	case err == nil:
		log.Info("requested a certificate version from Key Vault", "certificate", name, "issuer", want.IssuerName, "why", req.why)
		r.Recorder.Eventf(vc, nil, corev1.EventTypeNormal, vaultcertv1.ReasonIssuing, "Issue", "%s", req.why)
		return r.issuing(vc, op, req.missing, what)
	case asConflict(err, &conflict) && conflict.InnerCode == "ObjectIsDeletedButRecoverable" && vc.Spec.Issuance.RecoverSoftDeleted:
		if rerr := kv.RecoverDeletedCertificate(ctx, name); rerr != nil {
			return failedWith(classify(rerr, "the soft-deleted "+what))
		}
		msg := fmt.Sprintf("certificate %q was soft-deleted in Key Vault; recovered it (spec.issuance.recoverSoftDeleted: true) with its versions and policy", name)
		r.Recorder.Eventf(vc, nil, corev1.EventTypeNormal, vaultcertv1.EventRecovered, "Recover", "%s", msg)
		// Recovery is asynchronous: read the certificate again shortly.
		return issuanceResult{waitFirst: true, poll: r.issuancePoll(nil), waiting: msg + "; waiting for Key Vault to finish the recovery"}
	case asConflict(err, &conflict) && conflict.InnerCode == "":
		// Another operation is pending (someone else's create, or Key Vault's AutoRenew): follow it.
		pending, gerr := kv.GetCertificateOperation(ctx, name)
		if gerr == nil && pending.Pending() {
			return r.issuing(vc, pending, req.missing, what)
		}
		return failedWith(classify(err, what))
	default:
		return failedWith(classify(err, what))
	}
}

// issuing records a pending operation: Issuing=True with Key Vault's status details (and, for issuer Unknown,
// the CSR and what to do with it); Ready=False Issuing when there is no certificate yet.
func (r *VaultCertificateReconciler) issuing(vc *vaultcertv1.VaultCertificate, op *keyvault.Operation, missing bool, what string) issuanceResult {
	details := op.StatusDetails
	if details == "" {
		details = "the certificate request is in progress"
	}
	msg := fmt.Sprintf("Key Vault is issuing %s (issuer %s): %s", what, displayIssuer(op.IssuerName), details)
	vc.Status.CSR = ""
	if strings.EqualFold(op.IssuerName, keyvault.IssuerUnknown) {
		vc.Status.CSR = string(op.CSR)
		msg = fmt.Sprintf("Key Vault is waiting for a signed certificate for %s (issuer Unknown): sign the CSR in status.csr with your CA, "+
			"then merge the signed certificate (with its chain): az keyvault certificate pending merge --vault-name <vault> --name %s --file signed.pem",
			what, vc.Spec.CertificateName)
	}
	setCondition(&vc.Status.Conditions, vc.Generation, vaultcertv1.ConditionIssuing, metav1.ConditionTrue, vaultcertv1.ReasonIssuing, msg)
	poll := r.issuancePoll(op)
	if missing {
		return issuanceResult{waitFirst: true, poll: poll, waiting: msg}
	}
	return issuanceResult{poll: poll}
}

// issuanceFailed reports a failed first issuance: Ready=False IssuanceFailed with Key Vault's error, retried
// at retryAt.
func (r *VaultCertificateReconciler) issuanceFailed(vc *vaultcertv1.VaultCertificate, op *keyvault.Operation, retryAt time.Time, what string) issuanceResult {
	msg := fmt.Sprintf("Key Vault could not issue %s (issuer %s, operation %s): %s; vaultcert retries with backoff",
		what, displayIssuer(op.IssuerName), op.Status, op.Problem())
	setCondition(&vc.Status.Conditions, vc.Generation, vaultcertv1.ConditionIssuing, metav1.ConditionFalse, vaultcertv1.ReasonIssuanceFailed, msg)
	vc.Status.CSR = ""
	return failedWith(&failure{reason: vaultcertv1.ReasonIssuanceFailed, message: msg,
		retryAfter: max(retryAt.Sub(r.now()), time.Millisecond)})
}

// issuanceDone clears the Issuing condition and the CSR once no operation is in flight.
func (r *VaultCertificateReconciler) issuanceDone(vc *vaultcertv1.VaultCertificate, _ *keyvault.Certificate, key types.NamespacedName) {
	meta.RemoveStatusCondition(&vc.Status.Conditions, vaultcertv1.ConditionIssuing)
	vc.Status.CSR = ""
	r.issuanceBackoff.reset(key)
}

// asConflict is errors.As for a 409.
func asConflict(err error, target **keyvault.ConflictError) bool { return errors.As(err, target) }

func displayIssuer(name string) string {
	if name == "" {
		return keyvault.IssuerSelf
	}
	return name
}

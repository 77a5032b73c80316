// Package controllers holds vaultcert's reconcilers: VaultCertificate (Key Vault certificate -> TLS Secret)
// and the connection reconcilers, with the small pure helpers they use (sync checks, Secret encoding,
// requeue maths, error classification).
package controllers

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/changefeed"
	"github.com/vaultcert/vaultcert/internal/connection"
	"github.com/vaultcert/vaultcert/internal/decide"
	"github.com/vaultcert/vaultcert/internal/hostpolicy"
	"github.com/vaultcert/vaultcert/internal/keyvault"
	"github.com/vaultcert/vaultcert/internal/pki"
	"github.com/vaultcert/vaultcert/internal/shard"
)

// ClientFactory hands out Key Vault clients cached per connection; keyvault.Factory implements it.
type ClientFactory interface {
	// Client returns the client for a connection key, rebuilt when cfg changed.
	Client(key string, cfg keyvault.Config) (keyvault.Client, error)
	// Forget drops the client of a deleted connection, with the per-vault state only it used.
	Forget(key string)
	// Retain forgets every client whose key keep rejects, and returns how many.
	Retain(keep func(key string) bool) int
}

// VaultCertificateReconciler keeps each VaultCertificate's Secret in step with Key Vault.
type VaultCertificateReconciler struct {
	// Client reads through the manager's cache (Secrets: only vaultcert-managed ones) and writes.
	client.Client
	// APIReader reads what the cache does not hold: unmanaged Secrets (conflict check), credential and
	// password Secrets.
	APIReader client.Reader
	// Recorder emits events.
	Recorder events.EventRecorder
	// Factory builds Key Vault clients.
	Factory ClientFactory
	// HostPolicy lists the vault and authority hosts a VaultConnection may use; nothing is sent elsewhere.
	HostPolicy hostpolicy.Policy
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// TerminalRetry is how long to wait before retrying a failure that needs a human fix (not found, access
	// denied, invalid certificate). It is capped by the refresh interval.
	TerminalRetry time.Duration
	// ClusterID names this cluster in the owner tags (vaultcert.io-cluster) of the Key Vault certificates
	// vaultcert creates, so clusters sharing a vault never manage each other's certificates. It must stay the
	// same for the cluster's lifetime (main.go defaults it to the kube-system namespace's UID); a value longer
	// than Key Vault's tag limit is hashed.
	ClusterID string
	// IssuanceDailyLimit caps the new versions vaultcert requests per certificate in 24 hours (spec.issuance);
	// zero means 5. Past it vaultcert stops requesting until the spec or the renew annotation changes.
	IssuanceDailyLimit int
	// IssuancePollInterval is how often a pending Key Vault certificate operation is polled (spec.issuance).
	// Zero means the operation's Retry-After, else 10 s. Tests set it small.
	IssuancePollInterval time.Duration

	// Shard is the namespaces this instance reconciles (hash of the namespace); the zero value is all of them.
	Shard shard.Shard

	// Changes answers refreshes from one listing of each vault (internal/changefeed); nil reads every
	// certificate on its own at every refresh.
	Changes *changefeed.Registry

	// pauses emits one Warning event per vault pause (see pauseReporter).
	pauses pauseReporter

	// written and verified are caches (a restart loses nothing but work): the status this process last wrote,
	// until the informer has it, and the Secret resourceVersion whose data was last written or checked.
	written  writtenStatus
	verified verifiedSecrets

	// credentials watches the Secrets and ServiceAccounts connections name; set by SetupWithManager.
	credentials *connection.CredentialWatcher
}

// +kubebuilder:rbac:groups=vaultcert.io,resources=vaultcertificates,verbs=get;list;watch
// +kubebuilder:rbac:groups=vaultcert.io,resources=vaultcertificates/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;daemonsets,verbs=get;patch

// Reconcile loads the VaultCertificate, runs the sync and writes its status once.
func (r *VaultCertificateReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if !r.Shard.Owns(req.Namespace) {
		return ctrl.Result{}, nil // another shard's (a watch mapped it here)
	}
	var vc vaultcertv1.VaultCertificate
	if err := r.Get(ctx, req.NamespacedName, &vc); err != nil {
		if apierrors.IsNotFound(err) {
			r.written.forget(req.NamespacedName)
			r.verified.forget(req.NamespacedName)
			if r.Changes != nil {
				r.Changes.Forget(req.NamespacedName)
			}
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	r.written.overlay(&vc)
	if !vc.DeletionTimestamp.IsZero() {
		// The owned Secret (deletionPolicy Delete) goes with garbage collection; Retain keeps it.
		return ctrl.Result{}, nil
	}
	before := vc.DeepCopy()
	notice := r.noticeSlowFirstSync(ctx, &vc)
	result, err := r.reconcile(ctx, &vc)
	noticeVersion := notice.stop()
	r.setHostsCovered(&vc)
	if !equality.Semantic.DeepEqual(before.Status.Conditions, vc.Status.Conditions) {
		// Only from conditions this reconcile wrote: one that wrote none may have read a cached object older
		// than the last status write, whose conditions a patch would overwrite.
		setKStatus(&vc)
	}
	vc.Status.ObservedGeneration = vc.Generation
	if !equality.Semantic.DeepEqual(before.Status, vc.Status) {
		if perr := r.Status().Patch(ctx, &vc, client.MergeFrom(before)); perr != nil {
			if apierrors.IsNotFound(perr) {
				return ctrl.Result{}, nil
			}
			return ctrl.Result{}, perr
		}
		r.written.remember(req.NamespacedName, &vc.Status, before.ResourceVersion, noticeVersion)
	}
	return result, err
}

// syncRun is one reconcile of one VaultCertificate: what each step learns, for the steps after it.
type syncRun struct {
	vc  *vaultcertv1.VaultCertificate
	now time.Time
	// cached is the Secret's metadata from the cache (only labelled Secrets are there); nil when absent.
	cached *metav1.PartialObjectMetadata
	// secret is the Secret with its data once read from the API server; nil when there is none or not read yet.
	secret *corev1.Secret
	conn   *connection.Resolved
	kv     keyvault.Client
	// hash is the spec hash (with the PKCS12 password Secret's version); password is that password.
	hash, password string
	hasPassword    bool
	// what names the certificate in messages.
	what string
	// wait, when set, is when to look again instead of status.nextRefreshTime (a vault listing is under way).
	wait time.Duration
	// fetched is key material already read this run: a first sync reads it instead of the metadata.
	fetched *fetchedBundle
	// due is why Key Vault is asked this run (upToDate), "" when nothing asked.
	due decide.DueReason
}

// fetchedBundle is one version's decoded key material.
type fetchedBundle struct {
	version string
	bundle  *pki.Bundle
}

// reconcile runs the flow of DESIGN.md, one step a line: the Secret as it is -> the connection -> is Key Vault
// due? -> the version to hold (issuance first) -> the Secret -> status and the next refresh.
func (r *VaultCertificateReconciler) reconcile(ctx context.Context, vc *vaultcertv1.VaultCertificate) (ctrl.Result, error) {
	run := &syncRun{vc: vc, now: r.now()}
	if f, err := r.observeSecret(ctx, run); f != nil || err != nil {
		return r.failOr(ctx, run, f, err)
	}
	if f := r.connect(ctx, run); f != nil {
		return r.fail(ctx, vc, run.secret, f)
	}
	if upToDate, f, err := r.upToDate(ctx, run); f != nil || err != nil || upToDate {
		if upToDate && run.wait > 0 {
			return ctrl.Result{RequeueAfter: run.wait}, nil
		}
		if upToDate {
			return ctrl.Result{RequeueAfter: vc.Status.NextRefreshTime.Sub(run.now)}, nil
		}
		return r.failOr(ctx, run, f, err)
	}
	cert, issued := r.versionToHold(ctx, run)
	switch {
	case issued.failure != nil:
		return r.fail(ctx, vc, run.secret, issued.failure)
	case issued.waitFirst:
		setCondition(&vc.Status.Conditions, vc.Generation, vaultcertv1.ConditionReady, metav1.ConditionFalse, vaultcertv1.ReasonIssuing, issued.waiting)
		return ctrl.Result{RequeueAfter: issued.poll}, nil
	}
	secretVersion, f := r.syncSecret(ctx, run, cert)
	if f != nil {
		return r.fail(ctx, vc, run.secret, f)
	}
	if err := r.releasePreviousSecret(ctx, vc); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: r.synced(run, cert, issued, secretVersion)}, nil
}

// failOr hands a classified failure to fail, and returns a plain error for the rate limiter's backoff.
func (r *VaultCertificateReconciler) failOr(ctx context.Context, run *syncRun, f *failure, err error) (ctrl.Result, error) {
	if f != nil {
		return r.fail(ctx, run.vc, run.secret, f)
	}
	return ctrl.Result{}, err
}

// observeSecret finds the Secret of spec.secretName. The cache holds only the metadata of labelled Secrets: one
// of ours is read from the API server only when the sync needs its data; any other (or none) is read now, to
// see it is not ours to overwrite.
func (r *VaultCertificateReconciler) observeSecret(ctx context.Context, run *syncRun) (*failure, error) {
	cached, err := r.cachedSecret(ctx, run.vc)
	if err != nil {
		return nil, err
	}
	run.cached = cached
	if cached != nil && isManagedBy(cached, run.vc) {
		return nil, nil
	}
	return r.loadSecret(ctx, run)
}

// loadSecret reads the Secret with its data; one vaultcert does not manage is a conflict.
func (r *VaultCertificateReconciler) loadSecret(ctx context.Context, run *syncRun) (*failure, error) {
	secret, err := r.readSecret(ctx, run.vc.Namespace, run.vc.Spec.SecretName)
	if err != nil {
		return nil, err
	}
	run.secret = secret
	if secret != nil && !isManagedBy(secret, run.vc) {
		return secretConflict(run.vc), nil
	}
	return nil, nil
}

// connect resolves the connection (tenancy, host policy, credentials), gets its Key Vault client and reads the
// PKCS12 password, if any.
func (r *VaultCertificateReconciler) connect(ctx context.Context, run *syncRun) *failure {
	vc := run.vc
	conn, err := connection.NewResolver(r.Client, r.APIReader, r.credentials, r.HostPolicy).ForCertificate(ctx, vc)
	if err != nil {
		return classify(err, "the connection")
	}
	kv, err := r.Factory.Client(conn.Key.String(), conn.Config)
	if err != nil {
		return &failure{reason: vaultcertv1.ReasonConnectionNotReady, err: err, message: fmt.Sprintf("cannot use %s: %v", vc.Spec.ConnectionRef.Name, err)}
	}
	password, passwordVersion, err := r.pkcs12Password(ctx, vc)
	if err != nil {
		return classify(err, "the PKCS12 password")
	}
	run.conn, run.kv, run.password, run.hasPassword = conn, kv, password, passwordVersion != ""
	run.hash = specHash(&vc.Spec, passwordVersion)
	run.what = fmt.Sprintf("certificate %q in %s", vc.Spec.CertificateName, conn.Config.VaultURL)
	if vc.Spec.Version != "" {
		run.what = fmt.Sprintf("version %s of %s", vc.Spec.Version, run.what)
	}
	return nil
}

// upToDate reports whether Key Vault need not be asked: decide.KeyVaultDue says nothing asks for it (from the
// object, its status and the Secret's metadata, so a restart or another replica decides the same) and the
// Secret's data still is what the status says. The typical "yes" is the reconcile our own Secret write triggered.
func (r *VaultCertificateReconciler) upToDate(ctx context.Context, run *syncRun) (bool, *failure, error) {
	vc := run.vc
	if run.cached == nil || run.secret != nil {
		return false, nil, nil // no Secret of ours: there is work to do
	}
	due := decide.KeyVaultDue(decide.DueInput{VC: vc, Secret: &run.cached.ObjectMeta, SpecHash: run.hash,
		VaultURL: run.conn.Config.VaultURL, ConnectionRevision: run.conn.Revision, Now: run.now})
	switch r.vaultListing(run, due) {
	case changefeed.Unchanged:
		// The vault's listing shows the version the status holds: no read of this certificate this refresh.
		due = ""
		r.scheduleRefresh(run)
	case changefeed.Changed:
		due = decide.DueVaultChanged
	case changefeed.Waiting:
		// The listing wakes this VaultCertificate when it ends; the recheck is only a safety net.
		run.wait = listingRecheck
		return true, nil, nil
	}
	run.due = due
	if due == "" && r.verified.holds(vc, run.cached.ResourceVersion) {
		return true, nil, nil
	}
	if f, err := r.loadSecret(ctx, run); f != nil || err != nil {
		return false, f, err
	}
	if due == "" && holdsStatusVersion(vc, run.secret, run.hash) {
		// Not seen since this process started (or edited since): its data still is what the status says.
		r.verified.remember(vc, run.secret.ResourceVersion)
		return true, nil, nil
	}
	return false, nil, nil
}

// listingRecheck is when a VaultCertificate waiting for a vault listing looks again if no wake came.
const listingRecheck = time.Minute

// vaultListing asks the vault listing about a synced certificate that follows the latest version without
// issuance (a pinned version or one under spec.issuance needs its own reads). At its refresh time it may start a
// listing; before that it only reads a recent one, to act on a change the listing woke it for. Unavailable means
// the certificate is read on its own as before.
func (r *VaultCertificateReconciler) vaultListing(run *syncRun, due decide.DueReason) changefeed.Verdict {
	vc := run.vc
	if r.Changes == nil || vc.Spec.Version != "" || vc.Spec.Issuance != nil || vc.Status.Thumbprint == "" ||
		(due != "" && due != decide.DueRefreshTime) || run.conn.Revision != vc.Status.ConnectionRevision {
		return changefeed.Unavailable // a changed connection (vault, identity) is read directly
	}
	return r.Changes.Check(changefeed.Query{Connection: run.conn.Key.String(), Revision: run.conn.Revision, Client: run.kv,
		Certificate: vc.Spec.CertificateName, Thumbprint: vc.Status.Thumbprint, Version: vc.Status.Version, MaxAge: decide.RefreshInterval(vc),
		Who: types.NamespacedName{Namespace: vc.Namespace, Name: vc.Name}, MayList: due == decide.DueRefreshTime}).Verdict
}

// scheduleRefresh sets status.nextRefreshTime: the refresh interval (jittered), or the renewal time when sooner.
func (r *VaultCertificateReconciler) scheduleRefresh(run *syncRun) time.Duration {
	vc := run.vc
	var renewal time.Time
	if vc.Status.RenewalTime != nil {
		renewal = vc.Status.RenewalTime.Time
	}
	next := decide.Jitter(decide.NextCheck(run.now, decide.RefreshInterval(vc), renewal), decide.RefreshJitter)
	vc.Status.NextRefreshTime = &metav1.Time{Time: run.now.Add(next).Truncate(time.Second)}
	return next
}

// versionToHold reads the certificate's metadata (the pinned or latest version), lets issuance create or renew
// it first, and refuses a disabled version.
func (r *VaultCertificateReconciler) versionToHold(ctx context.Context, run *syncRun) (*keyvault.Certificate, issuanceResult) {
	vc := run.vc
	var (
		cert   *keyvault.Certificate
		issued issuanceResult
	)
	if vc.Spec.Issuance != nil && vc.Spec.Version == "" {
		// Issuance (issuance.go): create when missing, follow a pending operation, keep the policy, renew.
		if issued = r.reconcileIssuance(ctx, run); issued.ends() {
			return nil, issued
		}
		cert = issued.cert
	} else {
		var err error
		if (run.cached == nil && run.secret == nil) || run.due == decide.DueVaultChanged {
			// No Secret yet, or the vault listing (or a certificate event) saw a new version: the secret bundle
			// alone names the version and carries the chain and the key, so this is one call. A disabled (or still
			// pending) version answers 403 there too.
			cert, err = r.fetchKeyMaterial(ctx, run)
		} else {
			cert, err = run.kv.GetCertificate(ctx, vc.Spec.CertificateName, vc.Spec.Version)
		}
		if err != nil {
			return nil, failedWith(classify(err, run.what))
		}
	}
	if !cert.Enabled {
		held := "no version"
		if run.secret != nil && run.secret.Annotations[vaultcertv1.AnnotationVersion] != "" {
			held = "version " + run.secret.Annotations[vaultcertv1.AnnotationVersion]
		}
		return nil, failedWith(&failure{reason: vaultcertv1.ReasonCertificateDisabled, message: fmt.Sprintf(
			"version %s of %s is disabled in Key Vault; the Secret keeps %s: enable the version, or pin an enabled one in spec.version",
			cert.Version, run.what, held)})
	}
	return cert, issued
}

// syncSecret writes the Secret when decide.NeedsSync says so (and the version is no worse than the one held),
// and returns the Secret's resourceVersion.
func (r *VaultCertificateReconciler) syncSecret(ctx context.Context, run *syncRun, cert *keyvault.Certificate) (string, *failure) {
	vc, secret, now := run.vc, run.secret, run.now
	if f := notWorseThanHeld(vc, secret, cert, now); f != nil {
		return "", f
	}
	secretVersion := ""
	if secret != nil {
		secretVersion = secret.ResourceVersion
	}
	why, detail, needed := decide.NeedsSync(&decide.SyncInput{VC: vc, Secret: secret, Cert: cert, SpecHash: run.hash})
	if !needed {
		syncTotal.WithLabelValues("unchanged").Inc()
		return secretVersion, nil
	}
	logf.FromContext(ctx).V(1).Info("writing Secret", "reason", why, "detail", detail, "version", cert.Version)
	written, err := r.writeSecret(ctx, run, cert)
	if err != nil {
		return "", classify(err, fmt.Sprintf("version %s of %s", cert.Version, run.what))
	}
	vc.Status.LastSyncTime = &metav1.Time{Time: now}
	r.Recorder.Eventf(vc, nil, corev1.EventTypeNormal, vaultcertv1.ReasonSynced, "Sync",
		"Secret %s now holds version %s (%s: %s)", vc.Spec.SecretName, cert.Version, why, detail)
	if !validAt(cert.NotBefore, cert.Expires, now) {
		// Only reached when nothing better was held (notWorseThanHeld): better than no Secret, but say so.
		r.Recorder.Eventf(vc, nil, corev1.EventTypeWarning, vaultcertv1.ReasonInvalidCertificate, "Sync",
			"Secret %s holds version %s, which is not valid now (%s); no valid version was held before", vc.Spec.SecretName, cert.Version, validity(cert.NotBefore, cert.Expires))
	}
	syncTotal.WithLabelValues("written").Inc()
	if why == decide.SyncVersionChanged {
		r.restartTargets(ctx, vc, cert.Version)
	}
	return written, nil
}

// synced records a successful sync in status (the certificate, Ready, what the sync acted on) and returns when to
// look again: the next refresh, or sooner while a new version is being issued.
func (r *VaultCertificateReconciler) synced(run *syncRun, cert *keyvault.Certificate, issued issuanceResult, secretVersion string) time.Duration {
	vc, now := run.vc, run.now
	r.setCertificateStatus(vc, cert, now)
	next := r.scheduleRefresh(run)
	message := fmt.Sprintf("Secret %s holds version %s of %s, valid until %s", vc.Spec.SecretName, cert.Version, run.what,
		vc.Status.NotAfter.UTC().Format(time.RFC3339))
	if issued.note != "" {
		message += "; " + issued.note
	}
	if setCondition(&vc.Status.Conditions, vc.Generation, vaultcertv1.ConditionReady, metav1.ConditionTrue, vaultcertv1.ReasonSynced, message) &&
		issued.noteEvent != "" {
		r.Recorder.Eventf(vc, nil, corev1.EventTypeWarning, issued.noteEvent, "Issue", "%s", issued.note)
	}
	// What this sync acted on, so the next reconcile can tell whether anything asks for Key Vault again.
	vc.Status.LastRefreshRequest = vc.Annotations[vaultcertv1.AnnotationRefresh]
	vc.Status.ConnectionRevision = run.conn.Revision
	r.verified.remember(vc, secretVersion)
	if issued.poll > 0 {
		// A new version is being issued: poll its operation rather than wait for the refresh interval.
		next = min(next, issued.poll)
	}
	return next
}

// fetchKeyMaterial reads and decodes the secret bundle of spec.version (or the latest: the answer names its
// version) for a first sync or a new version the vault listing (or an event) saw, and describes the version from
// its leaf: thumbprint, dates and names come from the certificate itself. The policy is not read, so
// status.renewalTime assumes two thirds of the lifetime until a later read of the metadata (a refresh request, a
// per-certificate refresh) brings Key Vault's lifetime action.
func (r *VaultCertificateReconciler) fetchKeyMaterial(ctx context.Context, run *syncRun) (*keyvault.Certificate, error) {
	fetched, err := r.readBundle(ctx, run, run.vc.Spec.Version)
	if err != nil {
		return nil, err
	}
	leaf := fetched.bundle.Leaf
	return &keyvault.Certificate{Name: run.vc.Spec.CertificateName, Version: fetched.version, Thumbprint: pki.Thumbprint(leaf),
		CER: leaf.Raw, Enabled: true, NotBefore: leaf.NotBefore, Expires: leaf.NotAfter}, nil
}

// keyMaterial is the decoded key material of exactly cert.Version: what this run already fetched, else read now
// and checked against the metadata's thumbprint.
func (r *VaultCertificateReconciler) keyMaterial(ctx context.Context, run *syncRun, cert *keyvault.Certificate) (*pki.Bundle, error) {
	if run.fetched != nil && run.fetched.version == cert.Version {
		return run.fetched.bundle, nil
	}
	fetched, err := r.readBundle(ctx, run, cert.Version)
	if err != nil {
		return nil, err
	}
	if leaf := fetched.bundle.Leaf; cert.Thumbprint != "" && pki.Thumbprint(leaf) != cert.Thumbprint {
		return nil, fmt.Errorf("the secret's certificate (thumbprint %s) is not the certificate's (thumbprint %s): %w",
			pki.Thumbprint(leaf), cert.Thumbprint, pki.ErrKeyMismatch)
	}
	return fetched.bundle, nil
}

// readBundle reads and decodes the secret bundle of version ("" is the latest, named by the answer) and keeps it
// in the run.
func (r *VaultCertificateReconciler) readBundle(ctx context.Context, run *syncRun, version string) (*fetchedBundle, error) {
	var (
		kvSecret *keyvault.Secret
		err      error
	)
	if version == "" && run.due == decide.DueVaultChanged {
		// Told of a newer version than the one held: a shared read naming the held one is too old for this.
		kvSecret, err = run.kv.GetLatestSecret(ctx, run.vc.Spec.CertificateName, run.vc.Status.Version)
	} else {
		kvSecret, err = run.kv.GetSecret(ctx, run.vc.Spec.CertificateName, version)
	}
	if err != nil {
		return nil, err
	}
	bundle, err := pki.Decode(kvSecret.ContentType, kvSecret.Value)
	if err != nil {
		return nil, err
	}
	run.fetched = &fetchedBundle{version: kvSecret.Version, bundle: bundle}
	return run.fetched, nil
}

// writeSecret validates the key material of exactly cert.Version and writes the Secret, returning its new
// resourceVersion. Any failure leaves the existing Secret untouched. A Secret absent when read is only created,
// never applied over one that appeared meanwhile; an existing one is applied only if unchanged since it was read.
func (r *VaultCertificateReconciler) writeSecret(ctx context.Context, run *syncRun, cert *keyvault.Certificate) (string, error) {
	vc, existing := run.vc, run.secret
	bundle, err := r.keyMaterial(ctx, run, cert)
	if err != nil {
		return "", err
	}
	if err := bundle.Verify(r.now()); err != nil {
		return "", err
	}
	// The metadata may lie about the dates: judge the leaf itself.
	decoded := &keyvault.Certificate{Version: cert.Version, NotBefore: bundle.Leaf.NotBefore, Expires: bundle.Leaf.NotAfter}
	if f := notWorseThanHeld(vc, existing, decoded, r.now()); f != nil {
		return "", f
	}
	out := &secretOutput{bundle: bundle, version: cert.Version, vaultURL: run.kv.VaultURL(), specHash: run.hash,
		pkcs12Pass: run.password, hasPKCS12PW: run.hasPassword}
	data, err := secretData(&vc.Spec, out)
	if err != nil {
		return "", err
	}
	ac := secretApplyConfig(vc, out, data)
	if existing != nil && existing.Type != corev1.SecretTypeTLS {
		// A Secret's type is immutable: a managed Secret of another type is replaced.
		if err := r.Delete(ctx, existing, client.Preconditions{UID: &existing.UID, ResourceVersion: &existing.ResourceVersion}); err != nil && !apierrors.IsNotFound(err) {
			return "", err
		}
		existing = nil
	}
	if existing == nil {
		return r.createSecret(ctx, ac)
	}
	ac.WithResourceVersion(existing.ResourceVersion)
	if err := r.Apply(ctx, ac, client.FieldOwner(vaultcertv1.FieldManager), client.ForceOwnership); err != nil {
		return "", err
	}
	return ptrValue(ac.ResourceVersion), nil
}

// cachedSecret returns the cached metadata of the Secret named by spec.secretName, or nil when the cache has
// none (it holds only Secrets labelled managed-by=vaultcert).
func (r *VaultCertificateReconciler) cachedSecret(ctx context.Context, vc *vaultcertv1.VaultCertificate) (*metav1.PartialObjectMetadata, error) {
	m := secretMetadata()
	err := r.Get(ctx, types.NamespacedName{Namespace: vc.Namespace, Name: vc.Spec.SecretName}, m)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// readSecret reads a Secret, data included, from the API server; nil when it does not exist.
func (r *VaultCertificateReconciler) readSecret(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
	var secret corev1.Secret
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &secret)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &secret, nil
}

// secretConflict is the failure for a Secret of spec.secretName that vaultcert does not manage.
func secretConflict(vc *vaultcertv1.VaultCertificate) *failure {
	return &failure{reason: vaultcertv1.ReasonSecretConflict, message: fmt.Sprintf(
		"Secret %s/%s exists and is not managed by this VaultCertificate (label %s=%s, %s=%s); vaultcert never overwrites it: delete it, or choose another spec.secretName",
		vc.Namespace, vc.Spec.SecretName, vaultcertv1.LabelManagedBy, vaultcertv1.ManagedByValue, vaultcertv1.LabelCertificate, vc.Name)}
}

// pkcs12Password reads the password of a PKCS12 output, and that Secret's resourceVersion (so a changed password
// rewrites the keystore).
func (r *VaultCertificateReconciler) pkcs12Password(ctx context.Context, vc *vaultcertv1.VaultCertificate) (string, string, error) {
	for _, f := range vc.Spec.AdditionalOutputFormats {
		if f.Type != vaultcertv1.OutputPKCS12 || f.PasswordSecretRef == nil {
			continue
		}
		ref := f.PasswordSecretRef
		k := ref.Key
		if k == "" {
			k = "password"
		}
		var s corev1.Secret
		if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: vc.Namespace, Name: ref.Name}, &s); err != nil {
			if apierrors.IsNotFound(err) {
				return "", "", &failure{reason: vaultcertv1.ReasonInvalidSpec,
					message: fmt.Sprintf("the PKCS12 password Secret %s/%s does not exist: create it with key %q", vc.Namespace, ref.Name, k)}
			}
			return "", "", err
		}
		pw, ok := s.Data[k]
		if !ok {
			return "", "", &failure{reason: vaultcertv1.ReasonInvalidSpec,
				message: fmt.Sprintf("the PKCS12 password Secret %s/%s has no key %q", vc.Namespace, ref.Name, k)}
		}
		return string(pw), s.ResourceVersion, nil
	}
	return "", "", nil
}

// setCertificateStatus fills the status from Key Vault's metadata of the version now in the Secret.
func (r *VaultCertificateReconciler) setCertificateStatus(vc *vaultcertv1.VaultCertificate, cert *keyvault.Certificate, now time.Time) {
	st := &vc.Status
	st.Version = cert.Version
	st.Thumbprint = cert.Thumbprint
	notBefore, notAfter := cert.NotBefore, cert.Expires
	if leaf, err := x509.ParseCertificate(cert.CER); err == nil {
		st.Subject = leaf.Subject.String()
		st.DNSNames = leaf.DNSNames
		notBefore, notAfter = leaf.NotBefore, leaf.NotAfter
		if st.Thumbprint == "" {
			st.Thumbprint = pki.Thumbprint(leaf)
		}
	}
	st.NotBefore = &metav1.Time{Time: notBefore}
	st.NotAfter = &metav1.Time{Time: notAfter}
	st.RenewalTime = &metav1.Time{Time: decide.CertificateRenewalTime(cert, notBefore, notAfter)}
	if st.LastSyncTime == nil {
		st.LastSyncTime = &metav1.Time{Time: now}
	}
}

// fail records a classified failure: condition, event, metric, and how to retry. A Secret that already holds a
// valid certificate keeps Ready=True through a transient failure; the failure shows in the message.
func (r *VaultCertificateReconciler) fail(ctx context.Context, vc *vaultcertv1.VaultCertificate, secret *corev1.Secret, f *failure) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	ready := readyCondition(vc)
	// Throttling: a message that is the same for every try of one pause, and one event per pause per vault
	// (by whichever VaultCertificate meets it first), never one per object per try.
	th, throttled := throttleOf(f, r.now())
	if throttled && th.vault != "" {
		f.message = th.message()
	}
	if secret == nil && f.transient {
		// The Secret's data was not read yet (cache hit on metadata): whether it still holds a valid
		// certificate decides what Ready says.
		secret, _ = r.readSecret(ctx, vc.Namespace, vc.Spec.SecretName)
	}
	status, reason, message := metav1.ConditionFalse, f.reason, f.message
	if f.transient && ready != nil && ready.Status == metav1.ConditionTrue && secretHoldsValidCertificate(secret, vc) {
		status, reason = metav1.ConditionTrue, ready.Reason
		message = fmt.Sprintf("Secret %s still holds valid version %s; the last refresh failed: %s", vc.Spec.SecretName, vc.Status.Version, f.message)
	}
	changed := setCondition(&vc.Status.Conditions, vc.Generation, vaultcertv1.ConditionReady, status, reason, message)
	syncTotal.WithLabelValues(f.reason).Inc()
	switch {
	case throttled && th.vault != "":
		if !th.local && r.pauses.firstSight(th.vault, th.until, r.now()) {
			r.Recorder.Eventf(vc, nil, corev1.EventTypeWarning, f.reason, "Sync", "%s", f.message)
		}
		log.V(1).Info("throttled", "vault", th.vault, "until", th.until, "local", th.local)
	case changed:
		r.Recorder.Eventf(vc, nil, corev1.EventTypeWarning, f.reason, "Sync", "%s", f.message)
	}
	if !f.transient {
		// A transient failure is returned for the rate limiter's backoff, and controller-runtime logs it: logging
		// it here too would log each failure twice.
		log.Info("sync failed", "reason", f.reason, "message", f.message)
	}

	switch {
	case f.retryAfter > 0 || f.reason == vaultcertv1.ReasonThrottled:
		wait := max(f.retryAfter, time.Second)
		return ctrl.Result{RequeueAfter: decide.Jitter(wait, 0.2)}, nil
	case f.transient:
		// Backoff comes from the controller's rate limiter (min/max retry-delay flags).
		return ctrl.Result{}, f
	default:
		// A fix made elsewhere (a role, a vault object) is picked up within about as long as the failure
		// lasted, from seconds up to the terminal delay; measured from Ready's last transition, so a restart
		// keeps the pace.
		terminal := min(r.TerminalRetry, decide.RefreshInterval(vc))
		if terminal <= 0 {
			terminal = decide.RefreshInterval(vc)
		}
		var failingFor time.Duration
		if ready != nil && ready.Status == metav1.ConditionFalse {
			failingFor = r.now().Sub(ready.LastTransitionTime.Time)
		}
		return ctrl.Result{RequeueAfter: decide.Jitter(decide.RetryDelay(failingFor, terminal), decide.RefreshJitter)}, nil
	}
}

// setKStatus writes the kstatus pair (Reconciling, Stalled) from Ready and Issuing: the one place they are set.
func setKStatus(vc *vaultcertv1.VaultCertificate) {
	conds := &vc.Status.Conditions
	reconciling, stalled := decide.KStatus(meta.FindStatusCondition(*conds, vaultcertv1.ConditionReady),
		meta.FindStatusCondition(*conds, vaultcertv1.ConditionIssuing))
	for condType, c := range map[string]*metav1.Condition{vaultcertv1.ConditionReconciling: reconciling, vaultcertv1.ConditionStalled: stalled} {
		if c == nil {
			meta.RemoveStatusCondition(conds, condType)
			continue
		}
		setCondition(conds, vc.Generation, condType, c.Status, c.Reason, c.Message)
	}
}

// secretHoldsValidCertificate reports whether the managed Secret holds a key and certificate that match.
func secretHoldsValidCertificate(secret *corev1.Secret, vc *vaultcertv1.VaultCertificate) bool {
	if secret == nil || !isManagedBy(secret, vc) {
		return false
	}
	_, err := pki.ParseTLS(secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey])
	return err == nil
}

// readyCondition returns a copy of the Ready condition, or nil.
func readyCondition(vc *vaultcertv1.VaultCertificate) *metav1.Condition {
	if c := meta.FindStatusCondition(vc.Status.Conditions, vaultcertv1.ConditionReady); c != nil {
		cp := *c
		return &cp
	}
	return nil
}

func (r *VaultCertificateReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

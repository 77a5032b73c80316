package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/connection"
	"github.com/vaultcert/vaultcert/internal/decide"
	"github.com/vaultcert/vaultcert/internal/keyvault"
)

// Tags vaultcert writes on every Key Vault certificate version it requests. Key Vault keeps tags per version;
// the owner is read from the latest version, else from the newest version that carries them.
const (
	tagPrefix = "vaultcert.io-"
	// tagCluster, tagNamespace, tagName and tagUID name the owning VaultCertificate.
	tagCluster   = tagPrefix + "cluster"
	tagNamespace = tagPrefix + "namespace"
	tagName      = tagPrefix + "name"
	tagUID       = tagPrefix + "uid"
	// tagRequested is when vaultcert asked for the version (RFC 3339, nanoseconds): distinct values count the
	// requests of the last 24 hours, even when Key Vault copies a version's tags onto a renewal.
	tagRequested = tagPrefix + "requested"
	// tagGeneration is the VaultCertificate's generation when it asked.
	tagGeneration = tagPrefix + "generation"
)

const (
	// defaultIssuanceDailyLimit is how many new versions vaultcert requests per certificate in 24 hours, unless
	// the reconciler's IssuanceDailyLimit says otherwise. Key Vault renewing by itself does not count.
	defaultIssuanceDailyLimit = 5
	// issuanceWindow is the period the daily limit applies to.
	issuanceWindow = 24 * time.Hour
)

// issuanceSettings are the reconciler's issuance knobs with defaults applied.
type issuanceSettings struct {
	clusterID  string
	dailyLimit int
}

// issuanceSettings returns ClusterID and IssuanceDailyLimit with defaults applied.
func (r *VaultCertificateReconciler) issuanceSettings() issuanceSettings {
	s := issuanceSettings{clusterID: r.ClusterID, dailyLimit: r.IssuanceDailyLimit}
	if s.dailyLimit <= 0 {
		s.dailyLimit = defaultIssuanceDailyLimit
	}
	if len(s.clusterID) > keyvault.MaxTagValueLen {
		sum := sha256.Sum256([]byte(s.clusterID))
		s.clusterID = "sha256:" + hex.EncodeToString(sum[:])
	}
	return s
}

// certOwner is the VaultCertificate the owner tags of a Key Vault certificate name.
type certOwner struct {
	cluster, namespace, name, uid string
}

// ownerFromTags reads the owner tags; false when the version carries none.
func ownerFromTags(tags map[string]string) (certOwner, bool) {
	o := certOwner{cluster: tags[tagCluster], namespace: tags[tagNamespace], name: tags[tagName], uid: tags[tagUID]}
	return o, o.namespace != "" && o.name != ""
}

// describe names the owner for messages: "VaultCertificate ns/name", plus the cluster when it is not ours.
func (o certOwner) describe(ourCluster string) string {
	s := fmt.Sprintf("VaultCertificate %s/%s", o.namespace, o.name)
	if o.cluster != "" && o.cluster != ourCluster {
		s += fmt.Sprintf(" in another cluster (%s %s)", tagCluster, o.cluster)
	}
	return s
}

// ownerTags are the tags naming vc as the owner.
func (r *VaultCertificateReconciler) ownerTags(vc *vaultcertv1.VaultCertificate) map[string]string {
	t := map[string]string{tagNamespace: vc.Namespace, tagName: vc.Name, tagUID: string(vc.UID)}
	if id := r.issuanceSettings().clusterID; id != "" {
		t[tagCluster] = id
	}
	return t
}

// ourCluster reports whether an owner's cluster tag is this cluster's. A version without the tag (written
// while no cluster ID was configured) is taken as this cluster's, so setting the ID later strands nothing.
func (r *VaultCertificateReconciler) ourCluster(o certOwner) bool {
	return o.cluster == "" || o.cluster == r.issuanceSettings().clusterID
}

// isOwner reports whether tags name vc (cluster, namespace and name; a re-created object with a new UID is
// the same owner).
func (r *VaultCertificateReconciler) isOwner(tags map[string]string, vc *vaultcertv1.VaultCertificate) bool {
	o, ok := ownerFromTags(tags)
	return ok && r.ourCluster(o) && o.namespace == vc.Namespace && o.name == vc.Name
}

// withTags is base's tags that are not vaultcert's, as many as fit beside ours (sorted by name), plus ours.
func withTags(base, ours map[string]string) map[string]string {
	out := maps.Clone(ours)
	keys := slices.Sorted(maps.Keys(base))
	for _, k := range keys {
		if len(out) >= keyvault.MaxTags {
			break
		}
		if !strings.HasPrefix(k, tagPrefix) {
			out[k] = base[k]
		}
	}
	return out
}

// requestTags are the tags of a version vc requests now: the owner, the generation and the time, plus the
// user's own tags of the latest version (Key Vault does not carry tags to a new version).
func (r *VaultCertificateReconciler) requestTags(vc *vaultcertv1.VaultCertificate, latest *keyvault.Certificate) map[string]string {
	ours := r.ownerTags(vc)
	ours[tagGeneration] = strconv.FormatInt(vc.Generation, 10)
	ours[tagRequested] = r.now().UTC().Format(time.RFC3339Nano)
	var base map[string]string
	if latest != nil {
		base = latest.Tags
	}
	return withTags(base, ours)
}

// ownership is what the owner tags say about a certificate for one VaultCertificate.
type ownership struct {
	// mine: the VaultCertificate owns the certificate and may change it.
	mine bool
	// owner is the other owner, when there is a live one.
	owner *certOwner
	// gone is the owner whose VaultCertificate no longer exists or no longer issues the certificate.
	gone *certOwner
}

// ownershipOf finds who owns the certificate: the latest version's owner tags, else the newest version's
// that has them. An owner in this cluster whose VaultCertificate is gone (or no longer issues this
// certificate) leaves it unowned.
func (s *issuanceStep) ownershipOf(ctx context.Context, cert *keyvault.Certificate) (ownership, error) {
	r, vc := s.r, s.vc
	o, ok := ownerFromTags(cert.Tags)
	if !ok {
		// Versions Key Vault or a person created (AutoRenew, az keyvault certificate create) may carry no tags.
		versions, err := s.kv.ListCertificateVersions(ctx, s.name)
		if keyvault.IsNotFound(err) {
			return ownership{}, nil // no version at all: nobody owns it
		}
		if err != nil {
			return ownership{}, err
		}
		for _, v := range versions {
			if o, ok = ownerFromTags(v.Tags); ok {
				break
			}
		}
	}
	if !ok {
		return ownership{}, nil
	}
	if !r.ourCluster(o) {
		return ownership{owner: &o}, nil // another cluster's objects cannot be checked: its owner stays
	}
	if o.namespace == vc.Namespace && o.name == vc.Name {
		return ownership{mine: true}, nil
	}
	var other vaultcertv1.VaultCertificate
	err := r.Get(ctx, types.NamespacedName{Namespace: o.namespace, Name: o.name}, &other)
	switch {
	case apierrors.IsNotFound(err):
		return ownership{gone: &o}, nil
	case err != nil:
		return ownership{}, err
	case !other.DeletionTimestamp.IsZero() || other.Spec.Issuance == nil || other.Spec.Version != "" ||
		!strings.EqualFold(other.Spec.CertificateName, vc.Spec.CertificateName):
		return ownership{gone: &o}, nil
	}
	return ownership{owner: &o}, nil
}

// issuanceRefusal says why the connection does not let vc write to Key Vault ("" when it may): a
// ClusterVaultConnection must opt in, and may restrict certificate names to the namespace's prefix.
// A namespaced VaultConnection uses the namespace's own identity, which may write whatever it is granted.
func issuanceRefusal(vc *vaultcertv1.VaultCertificate, conn *connection.Resolved) string {
	if conn == nil || conn.Cluster == nil {
		return ""
	}
	cvc := conn.Cluster
	is := cvc.Spec.Issuance
	if is == nil || !is.Enabled {
		return fmt.Sprintf("ClusterVaultConnection %q does not allow issuance: a cluster admin must set spec.issuance.enabled: true on it "+
			"before VaultCertificates may create certificates or request versions through it", cvc.Name)
	}
	prefix := vc.Namespace + "-"
	if is.RequireNamespacePrefix && !strings.HasPrefix(strings.ToLower(vc.Spec.CertificateName), strings.ToLower(prefix)) {
		return fmt.Sprintf("ClusterVaultConnection %q lets namespace %q issue only certificates whose name starts with %q "+
			"(spec.issuance.requireNamespacePrefix), and %q does not: rename spec.certificateName", cvc.Name, vc.Namespace, prefix, vc.Spec.CertificateName)
	}
	return ""
}

// longerNamespacePrefix closes the gap in requireNamespacePrefix between namespaces whose names extend each
// other: "team-a-web" starts with "team-" but belongs to namespace "team-a". A name that starts with the prefix
// of a longer existing namespace is that namespace's, not vc's.
func (s *issuanceStep) longerNamespacePrefix(ctx context.Context) string {
	vc, conn := s.vc, s.conn
	if conn == nil || conn.Cluster == nil || conn.Cluster.Spec.Issuance == nil || !conn.Cluster.Spec.Issuance.RequireNamespacePrefix {
		return ""
	}
	var namespaces corev1.NamespaceList
	if err := s.r.List(ctx, &namespaces); err != nil {
		return fmt.Sprintf("the namespaces could not be listed to check the certificate name's prefix (%v)", err)
	}
	name := strings.ToLower(vc.Spec.CertificateName)
	for _, ns := range namespaces.Items {
		if len(ns.Name) > len(vc.Namespace) && strings.HasPrefix(name, ns.Name+"-") {
			return fmt.Sprintf("ClusterVaultConnection %q lets each namespace issue only names starting with its own name and \"-\", and %q starts with that of namespace %q: rename spec.certificateName",
				conn.Cluster.Name, vc.Spec.CertificateName, ns.Name)
		}
	}
	return ""
}

// retryFirstVersion guards asking again for the first version of a certificate whose first request is pending or
// failed: another live VaultCertificate's request is left to it (done, with the reason), and the daily limit
// applies as to any automatic request, so a first issuance that keeps failing is not retried forever.
func (s *issuanceStep) retryFirstVersion(ctx context.Context, cert *keyvault.Certificate) (issuanceResult, bool) {
	own, err := s.ownershipOf(ctx, cert)
	if err != nil {
		return failedWith(classify(err, "the versions of "+s.what)), true
	}
	if own.owner != nil {
		return failedWith(&failure{reason: vaultcertv1.ReasonIssuing, message: fmt.Sprintf(
			"%s has no usable version yet, and its first version was requested by %s: this VaultCertificate waits for it and asks for nothing",
			s.what, own.owner.describe(s.r.issuanceSettings().clusterID))}), true
	}
	if res, done := s.dailyLimit(ctx, "its first version failed"); done {
		if res.ends() {
			return res, true
		}
		return failedWith(&failure{reason: vaultcertv1.ReasonIssuanceFailed, message: res.note}), true
	}
	return issuanceResult{}, false
}

// readOnly is the result for a VaultCertificate that may sync the certificate but not change it: no Issuing
// condition, and the reason in the Ready message and in a Warning event when that message changes.
func (s *issuanceStep) readOnly(eventReason, note string) issuanceResult {
	if meta.FindStatusCondition(s.vc.Status.Conditions, vaultcertv1.ConditionIssuing) != nil {
		issuanceDone(s.vc)
	}
	return issuanceResult{note: note, noteEvent: eventReason}
}

// checkOwner applies the ownership rule to an existing certificate: it returns done=true with a read-only
// result when vc must not change it, and adopts an unowned certificate when vc carries vaultcert.io/adopt.
func (s *issuanceStep) checkOwner(ctx context.Context, cert *keyvault.Certificate) (issuanceResult, bool) {
	own, err := s.ownershipOf(ctx, cert)
	if err != nil {
		return failedWith(classify(err, "the versions of "+s.what)), true
	}
	r, vc, name := s.r, s.vc, s.name
	cluster := r.issuanceSettings().clusterID
	switch {
	case own.mine:
		return issuanceResult{}, false
	case own.owner != nil:
		return s.readOnly(vaultcertv1.EventNotOwner, fmt.Sprintf(
			"certificate %q is managed by %s (Key Vault tags %s*), so this VaultCertificate only syncs it and does not apply its spec.issuance "+
				"(no policy change, no new version): change spec.issuance on the owner, or remove it here", name, own.owner.describe(cluster), tagPrefix)), true
	case vc.Annotations[vaultcertv1.AnnotationAdopt] != "true":
		why := fmt.Sprintf("certificate %q was not created by vaultcert (it has no %s* owner tags)", name, tagPrefix)
		if own.gone != nil {
			why = fmt.Sprintf("certificate %q was created by %s, which no longer exists or no longer issues it", name, own.gone.describe(cluster))
		}
		return s.readOnly(vaultcertv1.EventNotOwner, why+fmt.Sprintf(
			", so this VaultCertificate only syncs it and does not apply its spec.issuance: annotate it %s=true to let it manage the certificate's policy and versions",
			vaultcertv1.AnnotationAdopt)), true
	}
	// Adopt: tag the latest version, so that the next reconcile of any VaultCertificate sees the owner. Two
	// adopting at once: the last write wins, and the other turns read-only on its next reconcile.
	tags := withTags(cert.Tags, r.ownerTags(vc))
	if err := s.kv.SetCertificateTags(ctx, name, cert.Version, tags); err != nil {
		return failedWith(classify(err, s.what)), true
	}
	cert.Tags = tags
	r.Recorder.Eventf(vc, nil, corev1.EventTypeNormal, vaultcertv1.EventAdopted, "Issue",
		"this VaultCertificate now manages certificate %q (annotation %s=true): Key Vault tags %s* name it as the owner", name, vaultcertv1.AnnotationAdopt, tagPrefix)
	return issuanceResult{}, false
}

// requestHistory counts, from the versions' tags in Key Vault (so a restart forgets nothing), the new versions
// vaultcert requested for the certificate in the 24 hours before now, and whether vc requested one of them at
// its current generation.
func (s *issuanceStep) requestHistory(ctx context.Context, now time.Time) (count int, thisGeneration bool, err error) {
	vc := s.vc
	versions, err := s.kv.ListCertificateVersions(ctx, s.name)
	if keyvault.IsNotFound(err) {
		return 0, false, nil // no version kept (a failed first request leaves none): nothing counted
	}
	if err != nil {
		return 0, false, err
	}
	gen := strconv.FormatInt(vc.Generation, 10)
	seen := map[string]bool{}
	for _, v := range versions {
		stamp := v.Tags[tagRequested]
		if stamp == "" || seen[stamp] {
			continue // not requested by vaultcert, or a copy of another version's tags
		}
		seen[stamp] = true
		at, perr := time.Parse(time.RFC3339Nano, stamp)
		if perr != nil || now.Sub(at) >= issuanceWindow {
			continue
		}
		count++
		if s.r.isOwner(v.Tags, vc) && v.Tags[tagGeneration] == gen {
			thisGeneration = true
		}
	}
	return count, thisGeneration, nil
}

// dailyLimit stops an automatic request (an overdue renewal, a policy change) once vaultcert requested the
// daily limit of versions for the certificate: Issuing=False IssuanceFailed with the count, a Warning event,
// and the same in the Ready message; the Secret keeps following Key Vault. The first request after a spec
// change is let through, so a fixed spec is acted on.
func (s *issuanceStep) dailyLimit(ctx context.Context, why string) (issuanceResult, bool) {
	vc := s.vc
	if decide.IssuanceLimited(vc) {
		note := "vaultcert stopped requesting new versions: it reached its daily limit"
		if c := meta.FindStatusCondition(vc.Status.Conditions, vaultcertv1.ConditionIssuing); c != nil {
			note = c.Message
		}
		return issuanceResult{note: note}, true
	}
	limit := s.r.issuanceSettings().dailyLimit
	count, thisGeneration, err := s.requestHistory(ctx, s.r.now())
	if err != nil {
		// Without the count the limit cannot be kept: request nothing.
		return failedWith(classify(err, "the versions of "+s.what)), true
	}
	if count < limit || !thisGeneration {
		return issuanceResult{}, false
	}
	msg := fmt.Sprintf("vaultcert stopped requesting new versions of %s: it requested %d in the last 24 hours, its daily limit is %d. It requests no more until the "+
		"VaultCertificate's spec changes or the %s annotation gets a new value; Key Vault's own renewals still reach the Secret. "+
		"It was about to request one because %s", s.what, count, limit, vaultcertv1.AnnotationRenew, why)
	setIssuing(vc, metav1.ConditionFalse, vaultcertv1.ReasonIssuanceFailed, msg)
	if vc.Status.Issuance == nil {
		vc.Status.Issuance = &vaultcertv1.IssuanceStatus{}
	}
	vc.Status.Issuance.LimitedAtGeneration = vc.Generation
	s.r.Recorder.Eventf(vc, nil, corev1.EventTypeWarning, vaultcertv1.ReasonIssuanceFailed, "Issue", "%s", msg)
	return issuanceResult{note: msg}, true
}

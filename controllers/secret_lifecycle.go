package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/keyvault"
	"github.com/vaultcert/vaultcert/internal/pki"
)

// createSecret creates the Secret that was absent when the reconcile read it. Create, unlike an apply, fails
// when a Secret of that name appeared meanwhile, so one a user made while Key Vault was being read is never
// overwritten. The fields are then recorded as applied by vaultcert, as if the first write had been an apply,
// so later applies release what the spec stops asking for.
func (r *VaultCertificateReconciler) createSecret(ctx context.Context, ac *corev1ac.SecretApplyConfiguration) (string, error) {
	raw, err := json.Marshal(ac)
	if err != nil {
		return "", err
	}
	var secret corev1.Secret
	if err := json.Unmarshal(raw, &secret); err != nil {
		return "", err
	}
	if err := r.Create(ctx, &secret, client.FieldOwner(vaultcertv1.FieldManager)); err != nil {
		return "", err
	}
	before := secret.DeepCopy()
	changed := false
	for i, mf := range secret.ManagedFields {
		if mf.Manager == vaultcertv1.FieldManager && mf.Operation == metav1.ManagedFieldsOperationUpdate {
			secret.ManagedFields[i].Operation = metav1.ManagedFieldsOperationApply
			changed = true
		}
	}
	if changed {
		if err := r.Patch(ctx, &secret, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}),
			client.FieldOwner(vaultcertv1.FieldManager)); err != nil {
			return "", err
		}
	}
	return secret.ResourceVersion, nil
}

// releasePreviousSecret cleans up after a change of spec.secretName, once the new Secret holds the certificate:
// the Secret last written is deleted (deletionPolicy Delete) or keeps its data but loses vaultcert's labels,
// annotations and owner reference (Retain). A Secret that vaultcert no longer manages is left alone.
func (r *VaultCertificateReconciler) releasePreviousSecret(ctx context.Context, vc *vaultcertv1.VaultCertificate) error {
	previous := vc.Status.SecretName
	if previous == "" || previous == vc.Spec.SecretName {
		vc.Status.SecretName = vc.Spec.SecretName
		return nil
	}
	old, err := r.readSecret(ctx, vc.Namespace, previous)
	if err != nil {
		return err
	}
	if old != nil && isManagedBy(old, vc) {
		if vc.Spec.DeletionPolicy != vaultcertv1.DeletionPolicyRetain {
			err = r.Delete(ctx, old, client.Preconditions{UID: &old.UID, ResourceVersion: &old.ResourceVersion})
			if err != nil && !apierrors.IsNotFound(err) {
				return err
			}
			r.Recorder.Eventf(vc, nil, corev1.EventTypeNormal, vaultcertv1.EventSecretDeleted, "Cleanup",
				"deleted Secret %s: spec.secretName is now %s (deletionPolicy Delete)", previous, vc.Spec.SecretName)
		} else {
			// Applying only the type and the data releases every other field vaultcert owned.
			ac := corev1ac.Secret(previous, vc.Namespace).WithUID(old.UID).WithResourceVersion(old.ResourceVersion).
				WithType(old.Type).WithData(old.Data)
			if err := r.Apply(ctx, ac, client.FieldOwner(vaultcertv1.FieldManager), client.ForceOwnership); err != nil {
				return err
			}
			r.Recorder.Eventf(vc, nil, corev1.EventTypeNormal, vaultcertv1.EventSecretReleased, "Cleanup",
				"released Secret %s (kept, without vaultcert's labels, annotations and owner reference): spec.secretName is now %s (deletionPolicy Retain)",
				previous, vc.Spec.SecretName)
		}
	}
	vc.Status.SecretName = vc.Spec.SecretName
	return nil
}

// notWorseThanHeld refuses a version that is not valid now when the Secret holds one that is: an expired or
// not-yet-valid certificate would break every client of the Secret. With nothing valid held, it may be written
// (the caller warns).
func notWorseThanHeld(vc *vaultcertv1.VaultCertificate, held *corev1.Secret, cert *keyvault.Certificate, now time.Time) *failure {
	if validAt(cert.NotBefore, cert.Expires, now) || held == nil || !isManagedBy(held, vc) {
		return nil
	}
	b, err := pki.ParseTLS(held.Data[corev1.TLSCertKey], held.Data[corev1.TLSPrivateKeyKey])
	if err != nil || !validAt(b.Leaf.NotBefore, b.Leaf.NotAfter, now) {
		return nil
	}
	return &failure{reason: vaultcertv1.ReasonInvalidCertificate, message: fmt.Sprintf(
		"version %s of certificate %q is not valid now (%s); the Secret keeps version %s, valid until %s: create a valid version in Key Vault, or pin one in spec.version",
		cert.Version, vc.Spec.CertificateName, validity(cert.NotBefore, cert.Expires), held.Annotations[vaultcertv1.AnnotationVersion],
		b.Leaf.NotAfter.UTC().Format(time.RFC3339))}
}

// validAt reports whether now lies in [notBefore, notAfter]; a zero bound is unknown and does not count.
func validAt(notBefore, notAfter, now time.Time) bool {
	return (notBefore.IsZero() || !now.Before(notBefore)) && (notAfter.IsZero() || !now.After(notAfter))
}

// validity describes a validity window for messages.
func validity(notBefore, notAfter time.Time) string {
	return fmt.Sprintf("not before %s, not after %s", notBefore.UTC().Format(time.RFC3339), notAfter.UTC().Format(time.RFC3339))
}

// ptrValue dereferences a string pointer; nil is "".
func ptrValue(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

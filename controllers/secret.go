package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/pki"
)

// secretOutput is what the reconciler knows when it writes a Secret.
type secretOutput struct {
	bundle      *pki.Bundle
	version     string
	vaultURL    string
	specHash    string
	pkcs12Pass  string
	hasPKCS12PW bool
}

// secretData encodes the bundle into the Secret's keys per the spec. Every value is non-empty or it fails:
// an empty tls.crt or tls.key must never reach a Secret.
func secretData(spec *vaultcertv1.VaultCertificateSpec, out *secretOutput) (map[string][]byte, error) {
	b := out.bundle
	mode, enc := pki.ChainMode(spec.Chain), pki.KeyEncoding(spec.PrivateKeyEncoding)
	key, err := b.PrivateKeyPEM(enc)
	if err != nil {
		return nil, err
	}
	data := map[string][]byte{
		corev1.TLSCertKey:       b.CertificatesPEM(mode),
		corev1.TLSPrivateKeyKey: key,
		vaultcertv1.SecretKeyCA: b.CAPEM(),
	}
	for _, f := range spec.AdditionalOutputFormats {
		switch f.Type {
		case vaultcertv1.OutputCombinedPEM:
			combined, err := b.CombinedPEM(mode, enc)
			if err != nil {
				return nil, err
			}
			data[vaultcertv1.SecretKeyCombinedPEM] = combined
		case vaultcertv1.OutputDER:
			keyDER, err := b.PrivateKeyDER()
			if err != nil {
				return nil, err
			}
			data[vaultcertv1.SecretKeyDER], data[vaultcertv1.SecretKeyKeyDER] = b.LeafDER(), keyDER
		case vaultcertv1.OutputPKCS12:
			if !out.hasPKCS12PW {
				return nil, fmt.Errorf("PKCS12 output needs its password Secret")
			}
			p12, err := b.PKCS12(out.pkcs12Pass, mode)
			if err != nil {
				return nil, err
			}
			data[vaultcertv1.SecretKeyPKCS12] = p12
		}
	}
	for k, v := range data {
		if len(v) == 0 {
			return nil, fmt.Errorf("refusing to write an empty %s", k)
		}
	}
	return data, nil
}

// secretApplyConfig is the whole Secret vaultcert owns, for server-side apply: fields left out are released.
func secretApplyConfig(vc *vaultcertv1.VaultCertificate, out *secretOutput, data map[string][]byte) *corev1ac.SecretApplyConfiguration {
	leaf := out.bundle.Leaf
	labels := map[string]string{}
	annotations := map[string]string{}
	if t := vc.Spec.SecretTemplate; t != nil {
		for k, v := range t.Labels {
			labels[k] = v
		}
		for k, v := range t.Annotations {
			annotations[k] = v
		}
	}
	// vaultcert's own metadata wins over the template: the watch and the conflict check depend on it.
	labels[vaultcertv1.LabelManagedBy] = vaultcertv1.ManagedByValue
	labels[vaultcertv1.LabelCertificate] = vc.Name
	annotations[vaultcertv1.AnnotationVersion] = out.version
	annotations[vaultcertv1.AnnotationThumbprint] = pki.Thumbprint(leaf)
	annotations[vaultcertv1.AnnotationNotAfter] = leaf.NotAfter.UTC().Format(time.RFC3339)
	annotations[vaultcertv1.AnnotationVaultURL] = out.vaultURL
	annotations[vaultcertv1.AnnotationCertificateName] = vc.Spec.CertificateName
	annotations[vaultcertv1.AnnotationSpecHash] = out.specHash

	ac := corev1ac.Secret(vc.Spec.SecretName, vc.Namespace).
		WithType(corev1.SecretTypeTLS).
		WithLabels(labels).
		WithAnnotations(annotations).
		WithData(data)
	if vc.Spec.DeletionPolicy != vaultcertv1.DeletionPolicyRetain {
		ac.WithOwnerReferences(metav1ac.OwnerReference().
			WithAPIVersion(vaultcertv1.GroupVersion.String()).
			WithKind("VaultCertificate").
			WithName(vc.Name).
			WithUID(vc.UID).
			WithController(true).
			WithBlockOwnerDeletion(true))
	}
	return ac
}

// specHash hashes the spec fields that shape the Secret, plus the PKCS12 password Secret's resourceVersion,
// so that changing any of them rewrites the Secret even when the Key Vault version is unchanged.
func specHash(spec *vaultcertv1.VaultCertificateSpec, passwordVersion string) string {
	shape := struct {
		Chain       vaultcertv1.ChainMode
		KeyEncoding vaultcertv1.PrivateKeyEncoding
		Outputs     []vaultcertv1.AdditionalOutputFormat
		Template    *vaultcertv1.SecretTemplate
		Deletion    vaultcertv1.DeletionPolicy
		CertName    string
		PasswordRev string
	}{spec.Chain, spec.PrivateKeyEncoding, spec.AdditionalOutputFormats, spec.SecretTemplate, spec.DeletionPolicy,
		spec.CertificateName, passwordVersion}
	raw, _ := json.Marshal(shape) // plain structs of strings and maps: cannot fail
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:8])
}

// isManagedBy reports whether a Secret was written by vaultcert for this VaultCertificate.
func isManagedBy(secret metav1.Object, vc *vaultcertv1.VaultCertificate) bool {
	l := secret.GetLabels()
	return l[vaultcertv1.LabelManagedBy] == vaultcertv1.ManagedByValue && l[vaultcertv1.LabelCertificate] == vc.Name
}

package decide

import (
	"bytes"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/keyvault"
	"github.com/vaultcert/vaultcert/internal/pki"
)

// SyncReason says why the Secret must be written; events and logs carry it.
type SyncReason string

// The reasons NeedsSync gives, in the order its checks run.
const (
	// SyncSecretMissing: the Secret does not exist.
	SyncSecretMissing SyncReason = "SecretMissing"
	// SyncVersionChanged: Key Vault has another version than the Secret (rollout restarts follow it).
	SyncVersionChanged SyncReason = "VersionChanged"
	// SyncSpecChanged: a spec field that shapes the Secret changed.
	SyncSpecChanged SyncReason = "SpecChanged"
	// SyncSecretInvalid: the Secret's data was edited or damaged.
	SyncSecretInvalid SyncReason = "SecretInvalid"
	// SyncMetadataDrifted: metadata vaultcert owns (type, owner reference, template) was edited.
	SyncMetadataDrifted SyncReason = "MetadataDrifted"
)

// SyncInput is what the "must we write the Secret?" checks look at. It holds no key material from Key Vault:
// the decision is taken on metadata and on what the Secret already holds, so that an unchanged certificate
// costs one metadata call and no secret fetch.
type SyncInput struct {
	// VC is the VaultCertificate.
	VC *vaultcertv1.VaultCertificate
	// Secret is its Secret with data, nil when missing.
	Secret *corev1.Secret
	// Cert is Key Vault's metadata of the wanted version.
	Cert *keyvault.Certificate
	// SpecHash is the hash of the spec fields that shape the Secret (controllers.specHash).
	SpecHash string
}

// syncCheck returns (reason, message, true) when the Secret must be written.
type syncCheck func(in *SyncInput) (SyncReason, string, bool)

// syncChecks run in order; the first that fires explains the write.
var syncChecks = []syncCheck{
	secretMissing,
	versionChanged,
	specChanged,
	secretDataInvalid,
	metadataDrifted,
}

// NeedsSync runs the checks: the first that fires gives the reason and a message for the event.
func NeedsSync(in *SyncInput) (reason SyncReason, message string, needed bool) {
	for _, check := range syncChecks {
		if reason, message, needed := check(in); needed {
			return reason, message, true
		}
	}
	return "", "", false
}

func secretMissing(in *SyncInput) (SyncReason, string, bool) {
	if in.Secret == nil {
		return SyncSecretMissing, fmt.Sprintf("Secret %s does not exist", in.VC.Spec.SecretName), true
	}
	return "", "", false
}

func versionChanged(in *SyncInput) (SyncReason, string, bool) {
	have := in.Secret.Annotations[vaultcertv1.AnnotationVersion]
	if have != in.Cert.Version {
		return SyncVersionChanged, fmt.Sprintf("Key Vault version %s replaces %q", in.Cert.Version, have), true
	}
	return "", "", false
}

func specChanged(in *SyncInput) (SyncReason, string, bool) {
	if in.Secret.Annotations[vaultcertv1.AnnotationSpecHash] != in.SpecHash {
		return SyncSpecChanged, "the Secret's format or metadata in the spec changed", true
	}
	return "", "", false
}

// secretDataInvalid catches a Secret whose data was edited or damaged: it must parse, the key must match the
// leaf, and the leaf must be the one Key Vault has for this version.
func secretDataInvalid(in *SyncInput) (SyncReason, string, bool) {
	data := in.Secret.Data
	bundle, err := pki.ParseTLS(data[corev1.TLSCertKey], data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return SyncSecretInvalid, fmt.Sprintf("the Secret's tls.crt/tls.key are not a valid pair: %v", err), true
	}
	if in.Cert.Thumbprint != "" && pki.Thumbprint(bundle.Leaf) != in.Cert.Thumbprint {
		return SyncSecretInvalid, "the Secret's certificate is not the one Key Vault holds for this version", true
	}
	if len(in.Cert.CER) > 0 && !bytes.Equal(bundle.Leaf.Raw, in.Cert.CER) {
		return SyncSecretInvalid, "the Secret's certificate differs from Key Vault's", true
	}
	want := []string{vaultcertv1.SecretKeyCA}
	for _, f := range in.VC.Spec.AdditionalOutputFormats {
		switch f.Type {
		case vaultcertv1.OutputCombinedPEM:
			want = append(want, vaultcertv1.SecretKeyCombinedPEM)
		case vaultcertv1.OutputDER:
			want = append(want, vaultcertv1.SecretKeyDER, vaultcertv1.SecretKeyKeyDER)
		case vaultcertv1.OutputPKCS12:
			want = append(want, vaultcertv1.SecretKeyPKCS12)
		}
	}
	for _, k := range want {
		if len(data[k]) == 0 {
			return SyncSecretInvalid, fmt.Sprintf("the Secret lacks %s", k), true
		}
	}
	return "", "", false
}

// metadataDrifted catches edits to the metadata vaultcert owns (type, owner reference, template labels).
func metadataDrifted(in *SyncInput) (SyncReason, string, bool) {
	s, vc := in.Secret, in.VC
	if s.Type != corev1.SecretTypeTLS {
		return SyncMetadataDrifted, fmt.Sprintf("the Secret's type is %s", s.Type), true
	}
	owned := false
	for _, ref := range s.OwnerReferences {
		if ref.UID == vc.UID && ref.Controller != nil && *ref.Controller {
			owned = true
		}
	}
	if wantOwned := vc.Spec.DeletionPolicy != vaultcertv1.DeletionPolicyRetain; owned != wantOwned {
		return SyncMetadataDrifted, "the Secret's owner reference does not follow deletionPolicy", true
	}
	if t := vc.Spec.SecretTemplate; t != nil {
		for k, v := range t.Labels {
			if s.Labels[k] != v {
				return SyncMetadataDrifted, fmt.Sprintf("label %s was changed", k), true
			}
		}
		for k, v := range t.Annotations {
			if s.Annotations[k] != v {
				return SyncMetadataDrifted, fmt.Sprintf("annotation %s was changed", k), true
			}
		}
	}
	return "", "", false
}

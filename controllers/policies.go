package controllers

import (
	"bytes"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/keyvault"
	"github.com/vaultcert/vaultcert/internal/pki"
)

// syncInput is what the "must we write the Secret?" checks look at. It holds no key material from Key Vault:
// the decision is taken on metadata and on what the Secret already holds, so that an unchanged certificate
// costs one metadata call and no secret fetch.
type syncInput struct {
	vc       *vaultcertv1.VaultCertificate
	secret   *corev1.Secret // nil when missing
	cert     *keyvault.Certificate
	specHash string
}

// syncCheck returns (reason, message, true) when the Secret must be written.
type syncCheck func(in *syncInput) (string, string, bool)

// syncChecks run in order; the first that fires explains the write.
var syncChecks = []syncCheck{
	secretMissing,
	versionChanged,
	specChanged,
	secretDataInvalid,
	metadataDrifted,
}

// needsSync runs the checks.
func needsSync(in *syncInput) (reason, message string, needed bool) {
	for _, check := range syncChecks {
		if reason, message, needed := check(in); needed {
			return reason, message, true
		}
	}
	return "", "", false
}

func secretMissing(in *syncInput) (string, string, bool) {
	if in.secret == nil {
		return "SecretMissing", fmt.Sprintf("Secret %s does not exist", in.vc.Spec.SecretName), true
	}
	return "", "", false
}

func versionChanged(in *syncInput) (string, string, bool) {
	have := in.secret.Annotations[vaultcertv1.AnnotationVersion]
	if have != in.cert.Version {
		return "VersionChanged", fmt.Sprintf("Key Vault version %s replaces %q", in.cert.Version, have), true
	}
	return "", "", false
}

func specChanged(in *syncInput) (string, string, bool) {
	if in.secret.Annotations[vaultcertv1.AnnotationSpecHash] != in.specHash {
		return "SpecChanged", "the Secret's format or metadata in the spec changed", true
	}
	return "", "", false
}

// secretDataInvalid catches a Secret whose data was edited or damaged: it must parse, the key must match the
// leaf, and the leaf must be the one Key Vault has for this version.
func secretDataInvalid(in *syncInput) (string, string, bool) {
	data := in.secret.Data
	bundle, err := pki.ParseTLS(data[corev1.TLSCertKey], data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return "SecretInvalid", fmt.Sprintf("the Secret's tls.crt/tls.key are not a valid pair: %v", err), true
	}
	if in.cert.Thumbprint != "" && pki.Thumbprint(bundle.Leaf) != in.cert.Thumbprint {
		return "SecretInvalid", "the Secret's certificate is not the one Key Vault holds for this version", true
	}
	if len(in.cert.CER) > 0 && !bytes.Equal(bundle.Leaf.Raw, in.cert.CER) {
		return "SecretInvalid", "the Secret's certificate differs from Key Vault's", true
	}
	want := []string{vaultcertv1.SecretKeyCA}
	for _, f := range in.vc.Spec.AdditionalOutputFormats {
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
			return "SecretInvalid", fmt.Sprintf("the Secret lacks %s", k), true
		}
	}
	return "", "", false
}

// metadataDrifted catches edits to the metadata vaultcert owns (type, owner reference, template labels).
func metadataDrifted(in *syncInput) (string, string, bool) {
	s, vc := in.secret, in.vc
	if s.Type != corev1.SecretTypeTLS {
		return "MetadataDrifted", fmt.Sprintf("the Secret's type is %s", s.Type), true
	}
	owned := false
	for _, ref := range s.OwnerReferences {
		if ref.UID == vc.UID && ref.Controller != nil && *ref.Controller {
			owned = true
		}
	}
	if wantOwned := vc.Spec.DeletionPolicy != vaultcertv1.DeletionPolicyRetain; owned != wantOwned {
		return "MetadataDrifted", "the Secret's owner reference does not follow deletionPolicy", true
	}
	if t := vc.Spec.SecretTemplate; t != nil {
		for k, v := range t.Labels {
			if s.Labels[k] != v {
				return "MetadataDrifted", fmt.Sprintf("label %s was changed", k), true
			}
		}
		for k, v := range t.Annotations {
			if s.Annotations[k] != v {
				return "MetadataDrifted", fmt.Sprintf("annotation %s was changed", k), true
			}
		}
	}
	return "", "", false
}

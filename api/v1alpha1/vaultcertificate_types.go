package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ConnectionKind is the kind of connection a VaultCertificate uses.
// +kubebuilder:validation:Enum=VaultConnection;ClusterVaultConnection
type ConnectionKind string

const (
	// VaultConnectionKind is a VaultConnection in the VaultCertificate's namespace.
	VaultConnectionKind ConnectionKind = "VaultConnection"
	// ClusterVaultConnectionKind is a cluster-scoped ClusterVaultConnection.
	ClusterVaultConnectionKind ConnectionKind = "ClusterVaultConnection"
)

// ConnectionReference names the connection a VaultCertificate reads through.
type ConnectionReference struct {
	// kind is VaultConnection (same namespace, the default) or ClusterVaultConnection.
	// +optional
	// +kubebuilder:default=VaultConnection
	Kind ConnectionKind `json:"kind,omitempty"`
	// name is the connection's name. A VaultConnection is always looked up in the VaultCertificate's own
	// namespace: there is no namespace field, so a certificate cannot borrow another namespace's connection.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// ChainMode selects which certificates go into tls.crt.
// +kubebuilder:validation:Enum=LeafAndIntermediates;Full;LeafOnly
type ChainMode string

const (
	// ChainLeafAndIntermediates writes the leaf, then the intermediates, without a self-signed root.
	ChainLeafAndIntermediates ChainMode = "LeafAndIntermediates"
	// ChainFull writes the leaf, the intermediates and the root when Key Vault has it.
	ChainFull ChainMode = "Full"
	// ChainLeafOnly writes only the leaf.
	ChainLeafOnly ChainMode = "LeafOnly"
)

// PrivateKeyEncoding selects the PEM encoding of tls.key.
// +kubebuilder:validation:Enum=PKCS8;PKCS1
type PrivateKeyEncoding string

const (
	// PrivateKeyPKCS8 writes "PRIVATE KEY" (PKCS#8).
	PrivateKeyPKCS8 PrivateKeyEncoding = "PKCS8"
	// PrivateKeyPKCS1 writes "RSA PRIVATE KEY" (PKCS#1) for RSA keys and "EC PRIVATE KEY" (SEC1) for EC keys.
	PrivateKeyPKCS1 PrivateKeyEncoding = "PKCS1"
)

// OutputFormatType is an extra Secret key to write.
// +kubebuilder:validation:Enum=CombinedPEM;DER;PKCS12
type OutputFormatType string

const (
	// OutputCombinedPEM adds tls-combined.pem: the private key followed by the certificates.
	OutputCombinedPEM OutputFormatType = "CombinedPEM"
	// OutputDER adds tls.der (leaf certificate) and key.der (PKCS#8 private key).
	OutputDER OutputFormatType = "DER"
	// OutputPKCS12 adds keystore.p12, encrypted with the password from passwordSecretRef.
	OutputPKCS12 OutputFormatType = "PKCS12"
)

// Secret keys written by vaultcert.
const (
	// SecretKeyCombinedPEM holds the key and the chain in one PEM file.
	SecretKeyCombinedPEM = "tls-combined.pem"
	// SecretKeyDER holds the leaf certificate, DER.
	SecretKeyDER = "tls.der"
	// SecretKeyKeyDER holds the private key, PKCS#8 DER.
	SecretKeyKeyDER = "key.der"
	// SecretKeyPKCS12 holds a PKCS#12 keystore.
	SecretKeyPKCS12 = "keystore.p12"
	// SecretKeyCA holds the top of the chain.
	SecretKeyCA = "ca.crt"
)

// SecretKeySelector names one key of a Secret in the VaultCertificate's namespace.
type SecretKeySelector struct {
	// name is the Secret's name.
	// +required
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// key is the key inside the Secret's data.
	// +optional
	// +kubebuilder:default=password
	Key string `json:"key,omitempty"`
}

// AdditionalOutputFormat asks for an extra encoding of the certificate in the Secret.
// +kubebuilder:validation:XValidation:rule="self.type != 'PKCS12' || has(self.passwordSecretRef)",message="passwordSecretRef is required for type PKCS12"
type AdditionalOutputFormat struct {
	// type is CombinedPEM (tls-combined.pem), DER (tls.der and key.der) or PKCS12 (keystore.p12).
	// +required
	Type OutputFormatType `json:"type"`
	// passwordSecretRef names the Secret key holding the PKCS12 password. Required for PKCS12.
	// +optional
	PasswordSecretRef *SecretKeySelector `json:"passwordSecretRef,omitempty"`
}

// SecretTemplate holds metadata copied onto the Secret.
type SecretTemplate struct {
	// labels are added to the Secret.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// annotations are added to the Secret.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// RolloutRestartTarget is a workload restarted after the certificate changes.
type RolloutRestartTarget struct {
	// kind is Deployment, StatefulSet or DaemonSet.
	// +required
	// +kubebuilder:validation:Enum=Deployment;StatefulSet;DaemonSet
	Kind string `json:"kind"`
	// name is the workload's name in the VaultCertificate's namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
}

// DeletionPolicy says what happens to the Secret when the VaultCertificate is deleted.
// +kubebuilder:validation:Enum=Delete;Retain
type DeletionPolicy string

const (
	// DeletionPolicyDelete owns the Secret, so it is garbage-collected with the VaultCertificate.
	DeletionPolicyDelete DeletionPolicy = "Delete"
	// DeletionPolicyRetain leaves the Secret in place.
	DeletionPolicyRetain DeletionPolicy = "Retain"
)

// KeyType is the Key Vault key type of an issued certificate.
// +kubebuilder:validation:Enum=RSA;EC;RSA-HSM;EC-HSM
type KeyType string

// IssuanceContentType is the format Key Vault stores the certificate-backed secret in.
// +kubebuilder:validation:Enum=PKCS12;PEM
type IssuanceContentType string

// Renewal says when Key Vault renews the certificate by itself. Set at most one field.
// +kubebuilder:validation:XValidation:rule="!(has(self.daysBeforeExpiry) && has(self.lifetimePercentage))",message="set at most one of daysBeforeExpiry and lifetimePercentage"
type Renewal struct {
	// daysBeforeExpiry renews this many days before the certificate expires.
	// +optional
	// +kubebuilder:validation:Minimum=1
	DaysBeforeExpiry *int32 `json:"daysBeforeExpiry,omitempty"`
	// lifetimePercentage renews when this share of the lifetime has passed.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=99
	LifetimePercentage *int32 `json:"lifetimePercentage,omitempty"`
}

// Issuance is the Key Vault certificate policy vaultcert creates the certificate with, and keeps it to.
type Issuance struct {
	// issuerName is Self (self-signed), Unknown (a CSR is produced and a signed certificate must be merged),
	// or the name of an issuer configured in Key Vault.
	// +optional
	// +kubebuilder:default=Self
	// +kubebuilder:validation:MinLength=1
	IssuerName string `json:"issuerName,omitempty"`
	// subject is the X.500 distinguished name, e.g. "CN=app.example.com".
	// +optional
	Subject string `json:"subject,omitempty"`
	// dnsNames are DNS subject alternative names.
	// +optional
	DNSNames []string `json:"dnsNames,omitempty"`
	// ipAddresses are IP subject alternative names.
	// +optional
	IPAddresses []string `json:"ipAddresses,omitempty"`
	// emails are e-mail subject alternative names.
	// +optional
	Emails []string `json:"emails,omitempty"`
	// keyType is RSA (default), EC, RSA-HSM or EC-HSM.
	// +optional
	// +kubebuilder:default=RSA
	KeyType KeyType `json:"keyType,omitempty"`
	// keySize is the RSA key size in bits (2048, 3072, 4096).
	// +optional
	// +kubebuilder:validation:Enum=2048;3072;4096
	KeySize int32 `json:"keySize,omitempty"`
	// curve is the EC curve.
	// +optional
	// +kubebuilder:validation:Enum=P-256;P-384;P-521;P-256K
	Curve string `json:"curve,omitempty"`
	// reuseKey keeps the same key across renewals.
	// +optional
	ReuseKey bool `json:"reuseKey,omitempty"`
	// validityMonths is the certificate's lifetime in months.
	// +optional
	// +kubebuilder:default=12
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1200
	ValidityMonths int32 `json:"validityMonths,omitempty"`
	// contentType is how Key Vault stores the secret: PKCS12 (default) or PEM.
	// +optional
	// +kubebuilder:default=PKCS12
	ContentType IssuanceContentType `json:"contentType,omitempty"`
	// extendedKeyUsages are EKU OIDs, e.g. 1.3.6.1.5.5.7.3.1 (serverAuth).
	// +optional
	ExtendedKeyUsages []string `json:"extendedKeyUsages,omitempty"`
	// keyUsages are Key Vault key usage names, e.g. digitalSignature, keyEncipherment.
	// +optional
	KeyUsages []string `json:"keyUsages,omitempty"`
	// renewal is written to the policy's AutoRenew lifetime action.
	// +optional
	Renewal *Renewal `json:"renewal,omitempty"`
	// recoverSoftDeleted lets vaultcert recover a soft-deleted certificate of this name instead of reporting
	// CertificateSoftDeleted. vaultcert never purges.
	// +optional
	RecoverSoftDeleted bool `json:"recoverSoftDeleted,omitempty"`
}

// VaultCertificateSpec is what a user asks for: which certificate, from which vault, into which Secret.
type VaultCertificateSpec struct {
	// connectionRef names the VaultConnection (same namespace) or ClusterVaultConnection to read through.
	// +required
	ConnectionRef ConnectionReference `json:"connectionRef"`
	// certificateName is the certificate's name in Key Vault.
	// +required
	// +kubebuilder:validation:Pattern=`^[0-9a-zA-Z-]{1,127}$`
	CertificateName string `json:"certificateName"`
	// version pins a Key Vault version (32 hex characters). Empty follows the latest version.
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9a-zA-Z]{0,64}$`
	Version string `json:"version,omitempty"`
	// secretName is the Secret in this namespace that receives the certificate.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	SecretName string `json:"secretName"`
	// secretTemplate holds labels and annotations copied onto the Secret.
	// +optional
	SecretTemplate *SecretTemplate `json:"secretTemplate,omitempty"`
	// refreshInterval is how often Key Vault is asked for a new version. Minimum 1m, maximum 24h (so a
	// revoked access or a new version is noticed within a day).
	// +optional
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="refreshInterval must be at least 1m"
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('24h')",message="refreshInterval must be at most 24h"
	RefreshInterval *metav1.Duration `json:"refreshInterval,omitempty"`
	// chain selects what tls.crt holds: LeafAndIntermediates (default), Full or LeafOnly.
	// +optional
	// +kubebuilder:default=LeafAndIntermediates
	Chain ChainMode `json:"chain,omitempty"`
	// privateKeyEncoding selects the PEM encoding of tls.key: PKCS8 (default) or PKCS1.
	// +optional
	// +kubebuilder:default=PKCS8
	PrivateKeyEncoding PrivateKeyEncoding `json:"privateKeyEncoding,omitempty"`
	// additionalOutputFormats adds extra keys to the Secret.
	// +optional
	// +listType=map
	// +listMapKey=type
	AdditionalOutputFormats []AdditionalOutputFormat `json:"additionalOutputFormats,omitempty"`
	// issuance, when set, creates the certificate in Key Vault if it is missing and keeps its policy.
	// +optional
	Issuance *Issuance `json:"issuance,omitempty"`
	// rolloutRestartTargets are workloads restarted after the certificate in the Secret changes.
	// +optional
	RolloutRestartTargets []RolloutRestartTarget `json:"rolloutRestartTargets,omitempty"`
	// deletionPolicy is Delete (default: the Secret is owned and removed with the VaultCertificate) or Retain.
	// +optional
	// +kubebuilder:default=Delete
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
	// hosts are the host names clients reach with this certificate (Ingress rule hosts, Gateway listener
	// hostnames; the Ingress and Gateway shims set them). The HostsCovered condition names any that the
	// certificate's DNS names do not cover (a wildcard covers one label, RFC 6125); the Secret is written anyway.
	// +optional
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=253
	// +listType=set
	Hosts []string `json:"hosts,omitempty"`
}

// VaultCertificateStatus is what vaultcert observed and did.
type VaultCertificateStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Ready and Issuing.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// secretName is the Secret vaultcert last wrote. When spec.secretName changes, the Secret named here is
	// deleted (deletionPolicy Delete) or released (Retain: vaultcert's labels, annotations and owner reference
	// removed) once the new one is written.
	// +optional
	SecretName string `json:"secretName,omitempty"`
	// version is the Key Vault version now in the Secret.
	// +optional
	Version string `json:"version,omitempty"`
	// thumbprint is the SHA-1 of the leaf certificate's DER, upper-case hex.
	// +optional
	Thumbprint string `json:"thumbprint,omitempty"`
	// subject is the leaf certificate's subject.
	// +optional
	Subject string `json:"subject,omitempty"`
	// dnsNames are the leaf certificate's DNS names.
	// +optional
	DNSNames []string `json:"dnsNames,omitempty"`
	// notBefore is the start of the leaf certificate's validity.
	// +optional
	NotBefore *metav1.Time `json:"notBefore,omitempty"`
	// notAfter is the leaf certificate's expiry.
	// +optional
	NotAfter *metav1.Time `json:"notAfter,omitempty"`
	// renewalTime is when the certificate is expected to be renewed: Key Vault's lifetime action once vaultcert
	// has read the certificate's policy (a first sync reads only the key material), else two thirds of its
	// lifetime.
	// +optional
	RenewalTime *metav1.Time `json:"renewalTime,omitempty"`
	// lastSyncTime is when the Secret was last written.
	// +optional
	LastSyncTime *metav1.Time `json:"lastSyncTime,omitempty"`
	// nextRefreshTime is when Key Vault will next be asked for a new version.
	// +optional
	NextRefreshTime *metav1.Time `json:"nextRefreshTime,omitempty"`
	// csr is the PEM certificate signing request of a pending issuance with issuer Unknown.
	// +optional
	CSR string `json:"csr,omitempty"`
	// lastRenewRequest is the last value of the vaultcert.io/renew annotation that was acted on.
	// +optional
	LastRenewRequest string `json:"lastRenewRequest,omitempty"`
	// lastRefreshRequest is the last value of the vaultcert.io/refresh annotation that was acted on: a new value
	// asks Key Vault at once.
	// +optional
	LastRefreshRequest string `json:"lastRefreshRequest,omitempty"`
	// connectionRevision identifies the connection configuration and credential objects (by resourceVersion,
	// never their content) the last sync used: when it changes, Key Vault is asked again at once.
	// +optional
	ConnectionRevision string `json:"connectionRevision,omitempty"`
	// issuance is what vaultcert keeps of its own requests to Key Vault under spec.issuance (failed operations,
	// the daily limit), so a restarted controller or another replica makes the same decisions.
	// +optional
	Issuance *IssuanceStatus `json:"issuance,omitempty"`
}

// IssuanceStatus records failed certificate operations and the daily limit of new versions.
type IssuanceStatus struct {
	// failedOperation is the request ID of the last failed certificate operation Key Vault reported; a new
	// failed operation counts once in failures.
	// +optional
	FailedOperation string `json:"failedOperation,omitempty"`
	// failures counts failed certificate operations in a row since the last success; it sets the backoff.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Failures int32 `json:"failures,omitempty"`
	// retryAt is when a failed first version is requested again.
	// +optional
	RetryAt *metav1.Time `json:"retryAt,omitempty"`
	// limitedAtGeneration is the generation at which vaultcert reached its daily limit of new versions
	// (--issuance-daily-limit): while metadata.generation is this, vaultcert requests no new version by itself
	// (the vaultcert.io/renew annotation still does).
	// +optional
	// +kubebuilder:validation:Minimum=0
	LimitedAtGeneration int64 `json:"limitedAtGeneration,omitempty"`
}

// VaultCertificate keeps a Kubernetes TLS Secret in step with an Azure Key Vault certificate.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=vcert;vcerts,categories=vaultcert
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Secret",type=string,JSONPath=`.spec.secretName`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.version`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.notAfter`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type VaultCertificate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired certificate and Secret.
	// +required
	Spec VaultCertificateSpec `json:"spec"`
	// status is what vaultcert observed.
	// +optional
	Status VaultCertificateStatus `json:"status,omitempty"`
}

// VaultCertificateList is a list of VaultCertificates.
// +kubebuilder:object:root=true
type VaultCertificateList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// items are the VaultCertificates.
	Items []VaultCertificate `json:"items"`
}

func init() {
	SchemeBuilder.Register(&VaultCertificate{}, &VaultCertificateList{})
}

package v1alpha1

// Condition types.
const (
	// ConditionReady is True when the Secret holds a valid certificate (VaultCertificate) or the vault answered
	// the connection's credentials (connections).
	ConditionReady = "Ready"
	// ConditionIssuing is True while Key Vault is creating a new certificate version for the VaultCertificate.
	ConditionIssuing = "Issuing"
	// ConditionReconciling (kstatus) is True while vaultcert still works towards Ready: issuing a version,
	// retrying a failure it can overcome itself (throttling, a network error), or before the first sync. Absent
	// otherwise.
	ConditionReconciling = "Reconciling"
	// ConditionStalled (kstatus) is True when only a person can make the object Ready (a missing certificate, a
	// missing role, a conflicting Secret...): its reason and message are Ready's. Absent otherwise.
	ConditionStalled = "Stalled"
	// ConditionHostsCovered is set when spec.hosts is: True when the certificate's DNS names cover every host,
	// False (reason HostsNotCovered) naming those they do not. A certificate not read yet leaves it unset.
	ConditionHostsCovered = "HostsCovered"
)

// HostsCovered condition reasons.
const (
	// ReasonHostsCovered: every host in spec.hosts is covered by the certificate's DNS names.
	ReasonHostsCovered = "HostsCovered"
	// ReasonHostsNotCovered: some hosts in spec.hosts are not covered; the message names them.
	ReasonHostsNotCovered = "HostsNotCovered"
)

// Ready condition reasons. Events reuse them.
const (
	// ReasonSynced: the Secret holds the wanted version.
	ReasonSynced = "Synced"
	// ReasonConnectionNotReady: the referenced connection is missing or invalid, or its credentials are missing.
	ReasonConnectionNotReady = "ConnectionNotReady"
	// ReasonConnectionNotAllowed: a ClusterVaultConnection's namespaceSelector does not admit the namespace, a
	// VaultConnection names a vault or authority host the controller does not allow (or an option only a
	// ClusterVaultConnection may set), or issuance through a ClusterVaultConnection that does not opt in.
	//
	// Nothing is sent to Key Vault or Entra ID for a connection that is not allowed.
	ReasonConnectionNotAllowed = "ConnectionNotAllowed"
	// ReasonAuthenticationFailed: no token could be obtained, or Key Vault refused it (401).
	ReasonAuthenticationFailed = "AuthenticationFailed"
	// ReasonAccessDenied: Key Vault answered 403 (role, access policy, firewall or Azure Policy).
	ReasonAccessDenied = "AccessDenied"
	// ReasonCertificateNotFound: the certificate or the pinned version does not exist.
	ReasonCertificateNotFound = "CertificateNotFound"
	// ReasonCertificateDisabled: the wanted version is disabled in Key Vault.
	ReasonCertificateDisabled = "CertificateDisabled"
	// ReasonCertificateSoftDeleted: the certificate name is soft-deleted and can be recovered or purged.
	ReasonCertificateSoftDeleted = "CertificateSoftDeleted"
	// ReasonKeyNotExportable: the certificate's key is not exportable, so Key Vault returns no private key.
	ReasonKeyNotExportable = "KeyNotExportable"
	// ReasonInvalidCertificate: the key does not match, the chain does not link, or the value cannot be decoded.
	ReasonInvalidCertificate = "InvalidCertificate"
	// ReasonThrottled: Key Vault answered 429; vaultcert waits for the pause to end.
	ReasonThrottled = "Throttled"
	// ReasonSecretConflict: a Secret of that name exists and is not managed by vaultcert.
	ReasonSecretConflict = "SecretConflict"
	// ReasonIssuing: Key Vault is creating the certificate.
	ReasonIssuing = "Issuing"
	// ReasonIssuanceFailed: Key Vault's certificate operation failed or was cancelled.
	ReasonIssuanceFailed = "IssuanceFailed"
	// ReasonKeyVaultError: any other Key Vault or network failure; retried with backoff.
	ReasonKeyVaultError = "KeyVaultError"
	// ReasonInvalidSpec: the spec cannot be acted on (e.g. a PKCS12 output without its password Secret).
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonProgressing: the Reconciling reason before the first sync.
	ReasonProgressing = "Progressing"
)

// Labels and annotations written by vaultcert.
const (
	// LabelManagedBy marks Secrets written by vaultcert (value ManagedByValue).
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of LabelManagedBy on vaultcert's Secrets.
	ManagedByValue = "vaultcert"
	// LabelCertificate names the VaultCertificate that owns a Secret.
	LabelCertificate = "vaultcert.io/certificate"
	// AnnotationVersion is the Key Vault version held by the Secret.
	AnnotationVersion = "vaultcert.io/version"
	// AnnotationThumbprint is the SHA-1 thumbprint (upper-case hex) of the leaf in the Secret.
	AnnotationThumbprint = "vaultcert.io/thumbprint"
	// AnnotationNotAfter is the leaf's expiry, RFC 3339.
	AnnotationNotAfter = "vaultcert.io/not-after"
	// AnnotationVaultURL is the vault the Secret came from.
	AnnotationVaultURL = "vaultcert.io/vault-url"
	// AnnotationCertificateName is the certificate's name in Key Vault.
	AnnotationCertificateName = "vaultcert.io/certificate-name"
	// AnnotationSpecHash is a hash of the spec fields that shape the Secret, so a spec change rewrites it.
	AnnotationSpecHash = "vaultcert.io/spec-hash"
	// AnnotationRenew requests one new version per distinct value (used with issuance).
	AnnotationRenew = "vaultcert.io/renew"
	// AnnotationAdopt, set to "true", lets a VaultCertificate with spec.issuance take over a Key Vault certificate
	// that has no owner (created outside vaultcert, or whose owning VaultCertificate is gone); one that has an
	// owner is never taken.
	AnnotationAdopt = "vaultcert.io/adopt"
)

// FieldManager is the server-side apply field owner of everything vaultcert writes.
const FieldManager = "vaultcert"

// AnnotationRefresh asks for an immediate refresh from Key Vault: any new value triggers one reconcile,
// like `kubectl annotate vcert web vaultcert.io/refresh="$(date +%s)" --overwrite`.
const AnnotationRefresh = "vaultcert.io/refresh"

// Event reasons that are not Ready reasons.
const (
	// EventVaultCertificateCreated: the Ingress or Gateway shim created a VaultCertificate for a route's Secret.
	EventVaultCertificateCreated = "VaultCertificateCreated"
	// EventVaultCertificateUpdated: the shim brought its VaultCertificate in step with the route's annotations.
	EventVaultCertificateUpdated = "VaultCertificateUpdated"
	// EventVaultCertificateDeleted: the shim deleted a VaultCertificate the route no longer asks for.
	EventVaultCertificateDeleted = "VaultCertificateDeleted"
	// EventVaultCertificateConflict: a VaultCertificate of the name the shim would use exists and is not the
	// route's (made by hand, or by another route); the shim leaves it alone.
	EventVaultCertificateConflict = "VaultCertificateConflict"
	// EventInvalidAnnotations: a route's vaultcert.io annotations (or Gateway tls.options) cannot be acted on.
	EventInvalidAnnotations = "InvalidAnnotations"
	// EventRefNotPermitted: a Gateway names a Secret in another namespace that no ReferenceGrant lets it refer to
	// (the Gateway API's own reason for this); the shim fills nothing there. Connection problems of a route use the
	// Ready reasons ConnectionNotReady and ConnectionNotAllowed.
	EventRefNotPermitted = "RefNotPermitted"
	// EventPolicyUpdated: the Key Vault certificate policy was updated to match spec.issuance.
	EventPolicyUpdated = "PolicyUpdated"
	// EventRecovered: a soft-deleted certificate was recovered (spec.issuance.recoverSoftDeleted).
	EventRecovered = "Recovered"
	// EventRenewalOverdue: the certificate is past its renewal time and Key Vault has produced no new version.
	EventRenewalOverdue = "RenewalOverdue"
	// EventRestarted: a rolloutRestartTargets workload was restarted after a new version.
	EventRestarted = "Restarted"
	// EventRestartFailed: a rolloutRestartTargets workload could not be restarted.
	EventRestartFailed = "RestartFailed"
	// EventNotOwner: spec.issuance is not applied because another VaultCertificate (or nobody) owns the Key Vault
	// certificate; the Secret is still synced.
	EventNotOwner = "NotOwner"
	// EventAdopted: the VaultCertificate took over an unowned Key Vault certificate (annotation vaultcert.io/adopt).
	EventAdopted = "Adopted"
	// EventSecretDeleted: the Secret of a previous spec.secretName was deleted (deletionPolicy Delete).
	EventSecretDeleted = "SecretDeleted"
	// EventSecretReleased: the Secret of a previous spec.secretName was kept without vaultcert's labels,
	// annotations and owner reference (deletionPolicy Retain).
	EventSecretReleased = "SecretReleased"
)

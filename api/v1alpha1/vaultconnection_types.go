package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SecretKeyReference names one key of a Secret holding credential material.
type SecretKeyReference struct {
	// name is the Secret's name.
	// +required
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// namespace of the Secret. Allowed on ClusterVaultConnection only (required there); a VaultConnection
	// always reads Secrets in its own namespace.
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// key is the key inside the Secret's data.
	// +required
	// +kubebuilder:validation:MinLength=1
	Key string `json:"key"`
}

// ServiceAccountReference names the ServiceAccount whose tokens are exchanged for Entra ID tokens.
type ServiceAccountReference struct {
	// name is the ServiceAccount's name.
	// +required
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// namespace of the ServiceAccount. Allowed on ClusterVaultConnection only (required there).
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// WorkloadIdentityAuth authenticates with Azure workload identity federation.
type WorkloadIdentityAuth struct {
	// serviceAccountRef is the ServiceAccount whose token (audience api://AzureADTokenExchange) is exchanged.
	// Absent on a ClusterVaultConnection means the controller's own workload identity.
	// +optional
	ServiceAccountRef *ServiceAccountReference `json:"serviceAccountRef,omitempty"`
	// clientID of the Entra ID application or user-assigned identity; defaults to the ServiceAccount's
	// azure.workload.identity/client-id annotation.
	// +optional
	ClientID string `json:"clientID,omitempty"`
	// tenantID of the identity; defaults to the ServiceAccount's azure.workload.identity/tenant-id annotation.
	// +optional
	TenantID string `json:"tenantID,omitempty"`
}

// ManagedIdentityAuth authenticates with an Azure managed identity of the controller's pod.
type ManagedIdentityAuth struct {
	// clientID selects a user-assigned identity; empty means the system-assigned identity.
	// +optional
	ClientID string `json:"clientID,omitempty"`
}

// ServicePrincipalAuth authenticates as an Entra ID application with a secret or a certificate.
// +kubebuilder:validation:XValidation:rule="has(self.clientSecretRef) != has(self.clientCertificateRef)",message="set exactly one of clientSecretRef and clientCertificateRef"
type ServicePrincipalAuth struct {
	// tenantID is the Entra ID tenant.
	// +required
	// +kubebuilder:validation:MinLength=1
	TenantID string `json:"tenantID"`
	// clientID is the application (client) ID.
	// +required
	// +kubebuilder:validation:MinLength=1
	ClientID string `json:"clientID"`
	// clientSecretRef names the Secret key holding the client secret.
	// +optional
	ClientSecretRef *SecretKeyReference `json:"clientSecretRef,omitempty"`
	// clientCertificateRef names the Secret key holding the client certificate and its key (PEM or PFX).
	// +optional
	ClientCertificateRef *SecretKeyReference `json:"clientCertificateRef,omitempty"`
}

// ConnectionAuth holds at most one authentication method. None means the controller's own identity, which
// only a ClusterVaultConnection may use.
// +kubebuilder:validation:XValidation:rule="(has(self.workloadIdentity) ? 1 : 0) + (has(self.managedIdentity) ? 1 : 0) + (has(self.servicePrincipal) ? 1 : 0) <= 1",message="set at most one of workloadIdentity, managedIdentity and servicePrincipal"
type ConnectionAuth struct {
	// workloadIdentity exchanges a ServiceAccount token for an Entra ID token.
	// +optional
	WorkloadIdentity *WorkloadIdentityAuth `json:"workloadIdentity,omitempty"`
	// managedIdentity uses a managed identity of the controller's pod.
	// +optional
	ManagedIdentity *ManagedIdentityAuth `json:"managedIdentity,omitempty"`
	// servicePrincipal uses an application's client secret or client certificate.
	// +optional
	ServicePrincipal *ServicePrincipalAuth `json:"servicePrincipal,omitempty"`
}

// CloudConfig selects the Entra ID authority and trust for sovereign clouds, private endpoints and emulators.
type CloudConfig struct {
	// authorityHost is the Entra ID authority, e.g. https://login.microsoftonline.us/. Empty means Azure public.
	// A VaultConnection may name only the authority hosts the controller allows (flag --allowed-authority-hosts;
	// by default the Entra ID authorities of Azure's public and sovereign clouds).
	// +optional
	// +kubebuilder:validation:Pattern=`^https://`
	AuthorityHost string `json:"authorityHost,omitempty"`
	// disableInstanceDiscovery skips Entra ID instance discovery (needed for private authorities).
	// ClusterVaultConnection only: a VaultConnection setting it is refused. (The controller skips discovery
	// itself for an authority the cluster admin allowed that is not one of Azure's clouds.)
	// +optional
	DisableInstanceDiscovery bool `json:"disableInstanceDiscovery,omitempty"`
	// disableChallengeResourceVerification accepts a Key Vault challenge whose resource does not match the
	// vault's host (private endpoints with custom names, emulators). ClusterVaultConnection only: a
	// VaultConnection setting it is refused.
	// +optional
	DisableChallengeResourceVerification bool `json:"disableChallengeResourceVerification,omitempty"`
	// caBundle is PEM root certificates trusted, in addition to the system roots, for the vault and the authority.
	// +optional
	CABundle string `json:"caBundle,omitempty"`
}

// RateLimit is a client-side request budget for one vault.
type RateLimit struct {
	// requestsPerSecond is the sustained rate. Key Vault allows about 400 per second per vault.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=400
	RequestsPerSecond int32 `json:"requestsPerSecond,omitempty"`
	// burst is how many requests may go at once.
	// +optional
	// +kubebuilder:validation:Minimum=1
	Burst int32 `json:"burst,omitempty"`
}

// ConnectionSpec is shared by VaultConnection and ClusterVaultConnection.
type ConnectionSpec struct {
	// vaultURL is the vault's URL, e.g. https://myvault.vault.azure.net/. A ClusterVaultConnection accepts any
	// https URL (sovereign clouds, private endpoints, emulators); a VaultConnection only a host under the vault
	// domains the controller allows (flag --allowed-vault-domains; by default the Key Vault and Managed HSM
	// domains of Azure's public and sovereign clouds).
	// +required
	// +kubebuilder:validation:Pattern=`^https://[^/?#]+(/.*)?$`
	// +kubebuilder:validation:MaxLength=2048
	VaultURL string `json:"vaultURL"`
	// auth is the identity used with Key Vault.
	// +optional
	Auth *ConnectionAuth `json:"auth,omitempty"`
	// cloud holds sovereign-cloud, private-endpoint and emulator settings.
	// +optional
	Cloud *CloudConfig `json:"cloud,omitempty"`
	// rateLimit is a client-side budget. On a VaultConnection it limits that connection's own requests only
	// (on top of the vault's shared budget, which it cannot change); on a ClusterVaultConnection it also sets
	// the budget every connection to that vault host shares.
	// +optional
	RateLimit *RateLimit `json:"rateLimit,omitempty"`
}

// ClusterIssuance says whether VaultCertificates using a ClusterVaultConnection may create certificates and
// request new versions in its vault (spec.issuance), and which names they may use.
type ClusterIssuance struct {
	// enabled lets VaultCertificates that use this connection create certificates, change their policies and
	// request new versions. Off by default: a shared vault is read-only for the namespaces it admits.
	// +optional
	Enabled bool `json:"enabled,omitempty"`
	// requireNamespacePrefix restricts issuance from namespace N to certificate names starting with "N-", so
	// namespaces sharing the vault cannot issue each other's certificates.
	// +optional
	RequireNamespacePrefix bool `json:"requireNamespacePrefix,omitempty"`
}

// ClusterVaultConnectionSpec adds the namespace selector to the shared connection spec.
type ClusterVaultConnectionSpec struct {
	ConnectionSpec `json:",inline"`
	// namespaceSelector selects the namespaces whose VaultCertificates may use this connection, by namespace
	// labels. Absent or empty admits every namespace.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	// issuance opts this connection in to spec.issuance of the VaultCertificates that use it. Absent means
	// they may read certificates but not create or renew them.
	// +optional
	Issuance *ClusterIssuance `json:"issuance,omitempty"`
}

// ConnectionStatus reports whether the vault answered the connection's credentials.
type ConnectionStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Ready.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// VaultConnection is a vault and an identity, usable by VaultCertificates in its own namespace.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=vconn,categories=vaultcert
// +kubebuilder:printcolumn:name="Vault",type=string,JSONPath=`.spec.vaultURL`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type VaultConnection struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the vault and identity. A VaultConnection must name an identity (it never uses the
	// controller's own) and reads Secrets and ServiceAccounts in its own namespace only.
	// +required
	// +kubebuilder:validation:XValidation:rule="has(self.auth) && (has(self.auth.workloadIdentity) || has(self.auth.managedIdentity) || has(self.auth.servicePrincipal))",message="a VaultConnection must set auth: workloadIdentity or servicePrincipal (only a ClusterVaultConnection may use the controller's own identity)"
	// +kubebuilder:validation:XValidation:rule="!has(self.auth) || !has(self.auth.managedIdentity)",message="a VaultConnection cannot use managedIdentity: it is the controller pod's own identity; use workloadIdentity or servicePrincipal, or ask the cluster admin for a ClusterVaultConnection"
	// +kubebuilder:validation:XValidation:rule="!has(self.cloud) || ((!has(self.cloud.disableInstanceDiscovery) || !self.cloud.disableInstanceDiscovery) && (!has(self.cloud.disableChallengeResourceVerification) || !self.cloud.disableChallengeResourceVerification))",message="a VaultConnection cannot set cloud.disableInstanceDiscovery or cloud.disableChallengeResourceVerification: only a ClusterVaultConnection may (they would let a vault or authority of the namespace's choosing receive credentials)"
	// +kubebuilder:validation:XValidation:rule="!has(self.auth) || !has(self.auth.servicePrincipal) || ((!has(self.auth.servicePrincipal.clientSecretRef) || !has(self.auth.servicePrincipal.clientSecretRef.namespace)) && (!has(self.auth.servicePrincipal.clientCertificateRef) || !has(self.auth.servicePrincipal.clientCertificateRef.namespace)))",message="namespace is not allowed in a VaultConnection's secret references: it reads Secrets in its own namespace"
	// +kubebuilder:validation:XValidation:rule="!has(self.auth) || !has(self.auth.workloadIdentity) || (has(self.auth.workloadIdentity.serviceAccountRef) && !has(self.auth.workloadIdentity.serviceAccountRef.namespace))",message="a VaultConnection's workloadIdentity needs serviceAccountRef without namespace: it uses a ServiceAccount in its own namespace"
	Spec ConnectionSpec `json:"spec"`
	// status reports whether the vault answered.
	// +optional
	Status ConnectionStatus `json:"status,omitempty"`
}

// VaultConnectionList is a list of VaultConnections.
// +kubebuilder:object:root=true
type VaultConnectionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// items are the VaultConnections.
	Items []VaultConnection `json:"items"`
}

// ClusterVaultConnection is a vault and an identity, usable by VaultCertificates in the namespaces its
// namespaceSelector admits.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=cvconn,categories=vaultcert
// +kubebuilder:printcolumn:name="Vault",type=string,JSONPath=`.spec.vaultURL`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterVaultConnection struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the vault, the identity and the namespaces admitted.
	// +required
	// +kubebuilder:validation:XValidation:rule="!has(self.auth) || !has(self.auth.servicePrincipal) || ((!has(self.auth.servicePrincipal.clientSecretRef) || has(self.auth.servicePrincipal.clientSecretRef.namespace)) && (!has(self.auth.servicePrincipal.clientCertificateRef) || has(self.auth.servicePrincipal.clientCertificateRef.namespace)))",message="a ClusterVaultConnection's secret references need a namespace"
	// +kubebuilder:validation:XValidation:rule="!has(self.auth) || !has(self.auth.workloadIdentity) || !has(self.auth.workloadIdentity.serviceAccountRef) || has(self.auth.workloadIdentity.serviceAccountRef.namespace)",message="a ClusterVaultConnection's serviceAccountRef needs a namespace"
	Spec ClusterVaultConnectionSpec `json:"spec"`
	// status reports whether the vault answered.
	// +optional
	Status ConnectionStatus `json:"status,omitempty"`
}

// ClusterVaultConnectionList is a list of ClusterVaultConnections.
// +kubebuilder:object:root=true
type ClusterVaultConnectionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// items are the ClusterVaultConnections.
	Items []ClusterVaultConnection `json:"items"`
}

func init() {
	SchemeBuilder.Register(&VaultConnection{}, &VaultConnectionList{},
		&ClusterVaultConnection{}, &ClusterVaultConnectionList{})
}

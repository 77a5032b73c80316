package v1alpha1

// Annotations read by the Ingress and Gateway shims: on an Ingress, or as keys of a Gateway listener's
// tls.options. vaultcert.io/certificate-name is AnnotationCertificateName, the key that also names the Key Vault
// certificate on the Secrets vaultcert writes.
const (
	// AnnotationKeyVaultURI names the certificate by its Key Vault URI,
	// https://<vault>/certificates/<name>[/<version>]; its vault must be the connection's vaultURL. A version pins it.
	AnnotationKeyVaultURI = "vaultcert.io/keyvault-uri"
	// AnnotationConnection names a VaultConnection in the route's namespace.
	AnnotationConnection = "vaultcert.io/connection"
	// AnnotationClusterConnection names a ClusterVaultConnection. Without it or AnnotationConnection, the
	// ClusterVaultConnection marked with AnnotationDefaultConnection is used.
	AnnotationClusterConnection = "vaultcert.io/cluster-connection"
	// AnnotationRefreshInterval sets the VaultCertificate's spec.refreshInterval (e.g. "15m").
	AnnotationRefreshInterval = "vaultcert.io/refresh-interval"
	// AnnotationChain sets spec.chain: LeafAndIntermediates, Full or LeafOnly.
	AnnotationChain = "vaultcert.io/chain"
	// AnnotationPrivateKeyEncoding sets spec.privateKeyEncoding: PKCS8 or PKCS1.
	AnnotationPrivateKeyEncoding = "vaultcert.io/private-key-encoding"
	// AnnotationDeletionPolicy sets spec.deletionPolicy: Delete or Retain (Retain keeps the Secret when the
	// route or its annotation goes away).
	AnnotationDeletionPolicy = "vaultcert.io/deletion-policy"

	// AnnotationDefaultConnection, set to "true" on one ClusterVaultConnection, makes it the connection of routes
	// that name none (like ingressclass.kubernetes.io/is-default-class). Two or more so marked are ambiguous: the
	// shims then act on no route that relies on the default.
	AnnotationDefaultConnection = "vaultcert.io/default-connection"

	// LabelRouteKind marks a VaultCertificate made by a shim: Ingress or Gateway.
	LabelRouteKind = "vaultcert.io/route-kind"
	// AnnotationRoute names the route a shim's VaultCertificate is for, as <kind>/<namespace>/<name>. A Gateway's
	// VaultCertificate in another namespace (allowed by a ReferenceGrant) has no owner reference: this is how its
	// Gateway finds it again.
	AnnotationRoute = "vaultcert.io/route"
)

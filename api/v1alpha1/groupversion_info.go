// Package v1alpha1 contains the vaultcert.io/v1alpha1 API: VaultCertificate, VaultConnection and
// ClusterVaultConnection.
// +kubebuilder:object:generate=true
// +groupName=vaultcert.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the API group and version of vaultcert's kinds.
	GroupVersion = schema.GroupVersion{Group: "vaultcert.io", Version: "v1alpha1"}

	// SchemeBuilder registers the kinds with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the kinds of this group-version to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

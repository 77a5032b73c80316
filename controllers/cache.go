package controllers

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
)

// secretMetadata is the kind the manager caches for Secrets: metadata only. Anyone may label a Secret
// managed-by=vaultcert, so caching their data would let a tenant fill the controller's memory; the data of the
// one Secret a reconcile needs is read from the API server (readSecret).
func secretMetadata() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	return m
}

// CacheOptions is the manager cache vaultcert needs: the metadata of Secrets labelled managed-by=vaultcert
// (never every Secret of the cluster, never their data), no object's managed fields, and optionally only the
// given namespaces.
func CacheOptions(namespaces []string) cache.Options {
	opts := cache.Options{
		// Nothing vaultcert decides reads managed fields from the cache, and at 10,000 VaultCertificates they are
		// a large share of what the cache would hold.
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			secretMetadata(): {
				Label:     labels.SelectorFromSet(labels.Set{vaultcertv1.LabelManagedBy: vaultcertv1.ManagedByValue}),
				Transform: cache.TransformStripManagedFields(),
			},
		},
	}
	if len(namespaces) > 0 {
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return opts
}

// ClientOptions makes the manager's client read full Secrets from the API server, never through an informer:
// a typed Secret read through the cache would start watching (and holding) every Secret of the cluster.
func ClientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}}
}

package controllers

import (
	"strings"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
)

// connectionKey names one connection: the Key Vault client factory's cache key, the value of the
// VaultCertificates' connection index, and a user of credential objects in the credential watcher. It is built
// here only, and its text form ("VaultConnection/<namespace>/<name>", "ClusterVaultConnection/<name>") is parsed
// back here only.
type connectionKey struct {
	kind      vaultcertv1.ConnectionKind
	namespace string // empty for a ClusterVaultConnection
	name      string
}

// namespacedConnection is the key of a VaultConnection.
func namespacedConnection(namespace, name string) connectionKey {
	return connectionKey{kind: vaultcertv1.VaultConnectionKind, namespace: namespace, name: name}
}

// clusterConnection is the key of a ClusterVaultConnection.
func clusterConnection(name string) connectionKey {
	return connectionKey{kind: vaultcertv1.ClusterVaultConnectionKind, name: name}
}

// connectionOf is the key of the connection a VaultCertificate names.
func connectionOf(vc *vaultcertv1.VaultCertificate) connectionKey {
	if vc.Spec.ConnectionRef.Kind == vaultcertv1.ClusterVaultConnectionKind {
		return clusterConnection(vc.Spec.ConnectionRef.Name)
	}
	return namespacedConnection(vc.Namespace, vc.Spec.ConnectionRef.Name)
}

// String is the text form: the factory key and the index value.
func (k connectionKey) String() string {
	if k.kind == vaultcertv1.ClusterVaultConnectionKind {
		return string(k.kind) + "/" + k.name
	}
	return string(k.kind) + "/" + k.namespace + "/" + k.name
}

// request is the reconcile request of the connection itself.
func (k connectionKey) request() reconcile.Request {
	return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: k.namespace, Name: k.name}}
}

// parseConnectionKey reads String's form back; false for anything else.
func parseConnectionKey(s string) (connectionKey, bool) {
	kind, rest, _ := strings.Cut(s, "/")
	switch vaultcertv1.ConnectionKind(kind) {
	case vaultcertv1.VaultConnectionKind:
		ns, name, ok := strings.Cut(rest, "/")
		return namespacedConnection(ns, name), ok && ns != "" && name != "" && !strings.Contains(name, "/")
	case vaultcertv1.ClusterVaultConnectionKind:
		return clusterConnection(rest), rest != "" && !strings.Contains(rest, "/")
	}
	return connectionKey{}, false
}

package connection

import (
	"strings"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
)

// Key names one connection: the Key Vault client factory's cache key, the value of the VaultCertificates'
// connection index (CertificateIndex), and a user of credential objects in the credential watcher. It is built
// here only (Namespaced, Cluster, Of), and its text form ("VaultConnection/<namespace>/<name>",
// "ClusterVaultConnection/<name>") is parsed back here only (Parse). The zero Key names no connection.
type Key struct {
	kind      vaultcertv1.ConnectionKind
	namespace string // empty for a ClusterVaultConnection
	name      string
}

// Namespaced is the key of a VaultConnection.
func Namespaced(namespace, name string) Key {
	return Key{kind: vaultcertv1.VaultConnectionKind, namespace: namespace, name: name}
}

// Cluster is the key of a ClusterVaultConnection.
func Cluster(name string) Key {
	return Key{kind: vaultcertv1.ClusterVaultConnectionKind, name: name}
}

// Of is the key of the connection a VaultCertificate names.
func Of(vc *vaultcertv1.VaultCertificate) Key {
	if vc.Spec.ConnectionRef.Kind == vaultcertv1.ClusterVaultConnectionKind {
		return Cluster(vc.Spec.ConnectionRef.Name)
	}
	return Namespaced(vc.Namespace, vc.Spec.ConnectionRef.Name)
}

// Kind is the connection's kind: VaultConnection or ClusterVaultConnection.
func (k Key) Kind() vaultcertv1.ConnectionKind { return k.kind }

// String is the text form: the factory key and the index value.
func (k Key) String() string {
	if k.kind == vaultcertv1.ClusterVaultConnectionKind {
		return string(k.kind) + "/" + k.name
	}
	return string(k.kind) + "/" + k.namespace + "/" + k.name
}

// Request is the reconcile request of the connection itself.
func (k Key) Request() reconcile.Request {
	return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: k.namespace, Name: k.name}}
}

// Parse reads String's form back; false for anything else.
func Parse(s string) (Key, bool) {
	kind, rest, _ := strings.Cut(s, "/")
	switch vaultcertv1.ConnectionKind(kind) {
	case vaultcertv1.VaultConnectionKind:
		ns, name, ok := strings.Cut(rest, "/")
		return Namespaced(ns, name), ok && ns != "" && name != "" && !strings.Contains(name, "/")
	case vaultcertv1.ClusterVaultConnectionKind:
		return Cluster(rest), rest != "" && !strings.Contains(rest, "/")
	}
	return Key{}, false
}

package controllers

import (
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/decide"
	"github.com/vaultcert/vaultcert/internal/keyvault"
)

// Whether Key Vault is asked is decided by decide.KeyVaultDue from the object, its status and its Secret; the two
// caches below only spare work, and a restart that loses them reaches the same decisions.

// writtenStatus is read-your-writes for status: the status this process last patched onto each VaultCertificate,
// with the resourceVersion the patch was computed from. A reconcile that reads that same resourceVersion from the
// informer (which has not seen the patch yet) uses the written status instead of deciding on an old one.
type writtenStatus struct {
	mu sync.Mutex
	m  map[types.NamespacedName]writtenEntry
}

type writtenEntry struct {
	// readVersions are the resourceVersions older than the write: the one the patch was computed from, and the
	// one a first-sync notice wrote meanwhile (first_sync_notice.go), when there was one.
	readVersions []string
	status       vaultcertv1.VaultCertificateStatus
}

// remember records status as written over the object read at any of readVersions.
func (w *writtenStatus) remember(key types.NamespacedName, status *vaultcertv1.VaultCertificateStatus, readVersions ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[types.NamespacedName]writtenEntry{}
	}
	w.m[key] = writtenEntry{readVersions: readVersions, status: *status.DeepCopy()}
}

// overlay replaces vc's status with the one written over it, when vc is that older object.
func (w *writtenStatus) overlay(vc *vaultcertv1.VaultCertificate) {
	w.mu.Lock()
	defer w.mu.Unlock()
	key := types.NamespacedName{Namespace: vc.Namespace, Name: vc.Name}
	e, ok := w.m[key]
	switch {
	case !ok:
	case slices.Contains(e.readVersions, vc.ResourceVersion):
		vc.Status = *e.status.DeepCopy()
	default:
		delete(w.m, key) // the informer has moved on: it holds our write, or a newer one
	}
}

// forget drops a deleted VaultCertificate.
func (w *writtenStatus) forget(key types.NamespacedName) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.m, key)
}

// verifiedSecrets remembers, per VaultCertificate, the resourceVersion of the Secret whose data this process last
// wrote or checked, so a reconcile with nothing due needs not read the Secret's data again.
type verifiedSecrets struct{ m sync.Map } // types.NamespacedName -> verifiedEntry

type verifiedEntry struct {
	uid           types.UID
	secretVersion string
}

func (v *verifiedSecrets) holds(vc *vaultcertv1.VaultCertificate, secretVersion string) bool {
	got, ok := v.m.Load(types.NamespacedName{Namespace: vc.Namespace, Name: vc.Name})
	return ok && secretVersion != "" && got.(verifiedEntry) == verifiedEntry{uid: vc.UID, secretVersion: secretVersion}
}

func (v *verifiedSecrets) remember(vc *vaultcertv1.VaultCertificate, secretVersion string) {
	v.m.Store(types.NamespacedName{Namespace: vc.Namespace, Name: vc.Name}, verifiedEntry{uid: vc.UID, secretVersion: secretVersion})
}

func (v *verifiedSecrets) forget(key types.NamespacedName) { v.m.Delete(key) }

// holdsStatusVersion reports whether the Secret holds exactly what the status says was synced: the version and
// thumbprint, the spec's shape (hash), valid data and vaultcert's metadata. Checked without Key Vault.
func holdsStatusVersion(vc *vaultcertv1.VaultCertificate, secret *corev1.Secret, hash string) bool {
	if secret == nil {
		return false
	}
	held := &keyvault.Certificate{Version: vc.Status.Version, Thumbprint: vc.Status.Thumbprint}
	_, _, needed := decide.NeedsSync(&decide.SyncInput{VC: vc, Secret: secret, Cert: held, SpecHash: hash})
	return !needed
}

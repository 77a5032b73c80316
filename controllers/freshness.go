package controllers

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/keyvault"
)

// syncedState is what the last successful reconcile of one VaultCertificate established: the inputs it acted on
// and what it wrote. Key Vault calls are what users pay for; a reconcile whose inputs are unchanged, whose Secret
// still holds what was written and whose refresh is not yet due has nothing to ask Key Vault. The typical case is
// the reconcile that the controller's own Secret write triggers through the Secret watch.
type syncedState struct {
	uid        types.UID
	generation int64
	// triggers are the annotations that ask for action (refresh, renew, adopt).
	triggers string
	// connection is the connection config's fingerprint (vault, identity, credential material).
	connection string
	specHash   string
	version    string
	thumbprint string
	// secretVersion is the Secret's resourceVersion after that reconcile: the same one now means it still
	// holds exactly what was checked or written.
	secretVersion string
	// nextCheck is when Key Vault must be asked again.
	nextCheck time.Time
}

// syncMemory holds the syncedState of every VaultCertificate this process reconciled successfully. It lives in
// memory only: after a restart every certificate is checked against Key Vault once, which is the safe default.
type syncMemory struct{ states sync.Map } // types.NamespacedName -> syncedState

// inputs is the part of syncedState known before asking Key Vault.
func syncInputs(vc *vaultcertv1.VaultCertificate, conn keyvault.Config, hash string) syncedState {
	return syncedState{
		uid:        vc.UID,
		generation: vc.Generation,
		triggers: vc.Annotations[vaultcertv1.AnnotationRefresh] + "\x00" + vc.Annotations[vaultcertv1.AnnotationRenew] +
			"\x00" + vc.Annotations[vaultcertv1.AnnotationAdopt],
		connection: conn.Fingerprint(),
		specHash:   hash,
	}
}

// fresh reports whether Key Vault need not be asked now, and when it must be.
// secretVersion is the resourceVersion of the Secret as cached now.
func (m *syncMemory) fresh(key types.NamespacedName, now syncedState, secretVersion string, at time.Time) (time.Duration, bool) {
	v, ok := m.states.Load(key)
	if !ok {
		return 0, false
	}
	last := v.(syncedState)
	if last.uid != now.uid || last.generation != now.generation || last.triggers != now.triggers ||
		last.connection != now.connection || last.specHash != now.specHash || !at.Before(last.nextCheck) ||
		secretVersion == "" || secretVersion != last.secretVersion {
		return 0, false
	}
	return last.nextCheck.Sub(at), true
}

// remember records a successful reconcile.
func (m *syncMemory) remember(key types.NamespacedName, s syncedState) { m.states.Store(key, s) }

// forget drops the record, so the next reconcile asks Key Vault.
func (m *syncMemory) forget(key types.NamespacedName) { m.states.Delete(key) }

package controllers

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
)

// firstSyncNotice is how long a first sync may take before vaultcert says it is in progress. A fast first sync
// writes its status once; a slow one (an unreachable vault or authority, whose retries take tens of seconds)
// shows Reconciling=True at once, so kubectl and kstatus readers (Flux, Argo CD) never see a VaultCertificate
// without status and take it for done.
const firstSyncNotice = time.Second

// progressNotice writes Reconciling=True (Progressing) for a VaultCertificate that has never been synced when its
// reconcile takes longer than firstSyncNotice. stop ends it before the reconcile writes its own status: a notice
// being written is waited for, so the reconcile's write always comes last.
type progressNotice struct {
	mu    sync.Mutex
	done  bool
	timer *time.Timer
	// written is the resourceVersion of the notice's write, "" when it wrote nothing.
	written string
}

// noticeSlowFirstSync starts the notice for vc when it has no Ready condition yet; nil otherwise.
func (r *VaultCertificateReconciler) noticeSlowFirstSync(ctx context.Context, vc *vaultcertv1.VaultCertificate) *progressNotice {
	if meta.FindStatusCondition(vc.Status.Conditions, vaultcertv1.ConditionReady) != nil {
		return nil
	}
	before := vc.DeepCopy()
	what := fmt.Sprintf("first sync: reading certificate %q from Key Vault", vc.Spec.CertificateName)
	log := logf.FromContext(ctx)
	n := &progressNotice{}
	n.timer = time.AfterFunc(firstSyncNotice, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.done {
			return
		}
		noted := before.DeepCopy()
		setCondition(&noted.Status.Conditions, noted.Generation, vaultcertv1.ConditionReconciling, metav1.ConditionTrue,
			vaultcertv1.ReasonProgressing, what)
		noted.Status.ObservedGeneration = noted.Generation
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		// With the resourceVersion read: a VaultCertificate changed (or deleted and made again) meanwhile is not
		// written.
		if err := r.Status().Patch(pctx, noted, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
			log.V(1).Info("could not say the first sync is in progress", "error", err.Error())
			return
		}
		n.written = noted.ResourceVersion
	})
	return n
}

// stop ends the notice, waiting for one being written, and returns the resourceVersion the notice wrote ("" when
// none): the reconcile's own write is remembered as newer than it too.
func (n *progressNotice) stop() string {
	if n == nil {
		return ""
	}
	n.timer.Stop()
	n.mu.Lock()
	defer n.mu.Unlock()
	n.done = true
	return n.written
}

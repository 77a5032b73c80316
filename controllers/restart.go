package controllers

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
)

// AnnotationRestartedAt is set on a workload's pod template to roll it after the certificate changed, the way
// `kubectl rollout restart` does.
const AnnotationRestartedAt = "vaultcert.io/restartedAt"

// restartTargets rolls the workloads named in spec.rolloutRestartTargets. Failures are reported as events and do
// not fail the sync: the Secret is already correct.
func (r *VaultCertificateReconciler) restartTargets(ctx context.Context, vc *vaultcertv1.VaultCertificate, version string) {
	for _, t := range vc.Spec.RolloutRestartTargets {
		var obj client.Object
		switch t.Kind {
		case "Deployment":
			obj = &appsv1.Deployment{}
		case "StatefulSet":
			obj = &appsv1.StatefulSet{}
		case "DaemonSet":
			obj = &appsv1.DaemonSet{}
		default:
			continue
		}
		obj.SetNamespace(vc.Namespace)
		obj.SetName(t.Name)
		patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{%q:%q}}}}}`,
			AnnotationRestartedAt, r.now().UTC().Format(time.RFC3339))
		if err := r.Patch(ctx, obj, client.RawPatch(types.StrategicMergePatchType, []byte(patch))); err != nil {
			r.Recorder.Eventf(vc, nil, corev1.EventTypeWarning, vaultcertv1.EventRestartFailed, "Restart",
				"could not restart %s %s after version %s: %v", t.Kind, t.Name, version, err)
			continue
		}
		r.Recorder.Eventf(vc, nil, corev1.EventTypeNormal, vaultcertv1.EventRestarted, "Restart",
			"restarted %s %s for version %s", t.Kind, t.Name, version)
	}
}

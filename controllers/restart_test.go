package controllers_test

import (
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/controllers"
	"github.com/vaultcert/vaultcert/internal/fakevault"
)

// A new version rolls the workloads named in rolloutRestartTargets, like `kubectl rollout restart`; the first
// sync does not (the workload has not read an older certificate).
func TestRolloutRestartAfterNewVersion(t *testing.T) {
	ctx := context.Background()
	name := uniqueName("restart")
	ns := newNamespace(t, nil)
	labels := map[string]string{"app": "web"}
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
			},
		},
	}
	if err := k8s.Create(ctx, deploy); err != nil {
		t.Fatal(err)
	}
	restartedAt := func() string {
		var d appsv1.Deployment
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web"}, &d); err != nil {
			t.Fatal(err)
		}
		return d.Spec.Template.Annotations[controllers.AnnotationRestartedAt]
	}

	newConnection(t, ns)
	if _, err := vault.Seed(fakevault.CertSpec{Name: name}); err != nil {
		t.Fatal(err)
	}
	newCertificate(t, ns, name, func(vc *vaultcertv1.VaultCertificate) {
		vc.Spec.RolloutRestartTargets = []vaultcertv1.RolloutRestartTarget{{Kind: "Deployment", Name: "web"}}
	})
	waitReady(t, ns, "web", metav1.ConditionTrue, vaultcertv1.ReasonSynced)
	if got := restartedAt(); got != "" {
		t.Fatalf("the first sync restarted the Deployment (%s)", got)
	}

	v2, err := vault.Rotate(name)
	if err != nil {
		t.Fatal(err)
	}
	refresh(t, ns, "web")
	waitSecretVersion(t, ns, "web-tls", v2.Version)
	eventually(t, "the Deployment's pod template restarted", func() (bool, string) {
		return restartedAt() != "", "no " + controllers.AnnotationRestartedAt + " annotation"
	})
}

package controllers

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/routes"
)

// maxHostsNamed bounds how many hosts a HostsCovered message lists.
const maxHostsNamed = 20

// setHostsCovered writes the HostsCovered condition from spec.hosts and the DNS names of the certificate the
// status describes: absent without hosts or before a certificate is known, False naming the hosts not covered
// (with a Warning event when it turns False or names other hosts), True otherwise. It never stops the Secret.
func (r *VaultCertificateReconciler) setHostsCovered(vc *vaultcertv1.VaultCertificate) {
	if len(vc.Spec.Hosts) == 0 || vc.Status.Thumbprint == "" {
		meta.RemoveStatusCondition(&vc.Status.Conditions, vaultcertv1.ConditionHostsCovered)
		return
	}
	uncovered := routes.Uncovered(vc.Spec.Hosts, vc.Status.DNSNames)
	if len(uncovered) == 0 {
		setCondition(&vc.Status.Conditions, vc.Generation, vaultcertv1.ConditionHostsCovered, metav1.ConditionTrue,
			vaultcertv1.ReasonHostsCovered, fmt.Sprintf("the certificate covers every host (%d)", len(vc.Spec.Hosts)))
		return
	}
	msg := hostsNotCoveredMessage(uncovered, vc.Status.DNSNames)
	if setCondition(&vc.Status.Conditions, vc.Generation, vaultcertv1.ConditionHostsCovered, metav1.ConditionFalse,
		vaultcertv1.ReasonHostsNotCovered, msg) {
		r.Recorder.Eventf(vc, nil, corev1.EventTypeWarning, vaultcertv1.ReasonHostsNotCovered, "CheckHosts", "%s", eventNote(msg))
	}
}

// hostsNotCoveredMessage says which hosts a certificate's DNS names do not cover, and what it does cover.
func hostsNotCoveredMessage(uncovered, dnsNames []string) string {
	return fmt.Sprintf("the certificate's DNS names (%s) do not cover %s: clients reaching them will reject it; add them to the Key Vault certificate's subject alternative names, or serve them with another certificate",
		listNames(dnsNames, "none"), listNames(uncovered, ""))
}

// listNames joins at most maxHostsNamed names, saying how many more there are.
func listNames(names []string, empty string) string {
	if len(names) == 0 {
		return empty
	}
	if len(names) <= maxHostsNamed {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:maxHostsNamed], ", "), len(names)-maxHostsNamed)
}

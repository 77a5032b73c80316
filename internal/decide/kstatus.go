package decide

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
)

// needsHuman lists the Ready reasons only a person can fix (a spec, a role, a vault object, a conflicting
// Secret): the object is Stalled. Any other failure is retried by vaultcert itself: it is Reconciling.
var needsHuman = map[string]bool{
	vaultcertv1.ReasonConnectionNotReady:     true,
	vaultcertv1.ReasonConnectionNotAllowed:   true,
	vaultcertv1.ReasonAuthenticationFailed:   true,
	vaultcertv1.ReasonAccessDenied:           true,
	vaultcertv1.ReasonCertificateNotFound:    true,
	vaultcertv1.ReasonCertificateDisabled:    true,
	vaultcertv1.ReasonCertificateSoftDeleted: true,
	vaultcertv1.ReasonKeyNotExportable:       true,
	vaultcertv1.ReasonInvalidCertificate:     true,
	vaultcertv1.ReasonSecretConflict:         true,
	vaultcertv1.ReasonInvalidSpec:            true,
	vaultcertv1.ReasonIssuanceFailed:         true,
}

// NeedsHuman reports whether a Ready reason is a failure only a person can fix.
func NeedsHuman(reason string) bool { return needsHuman[reason] }

// KStatus derives the kstatus conditions tools such as kstatus, Flux and Argo CD read from Ready and Issuing:
// Reconciling while vaultcert still works towards Ready (issuing, retrying a transient failure, not yet
// synced), Stalled when only a person can fix it. A nil result means the condition must be absent: both are
// "abnormal-true" conditions, present only while true.
func KStatus(ready, issuing *metav1.Condition) (reconciling, stalled *metav1.Condition) {
	switch {
	case issuing != nil && issuing.Status == metav1.ConditionTrue:
		return &metav1.Condition{Type: vaultcertv1.ConditionReconciling, Status: metav1.ConditionTrue,
			Reason: vaultcertv1.ReasonIssuing, Message: issuing.Message}, nil
	case ready == nil:
		return &metav1.Condition{Type: vaultcertv1.ConditionReconciling, Status: metav1.ConditionTrue,
			Reason: vaultcertv1.ReasonProgressing, Message: "vaultcert has not synced this certificate yet"}, nil
	case ready.Status == metav1.ConditionTrue:
		return nil, nil
	case NeedsHuman(ready.Reason):
		return nil, &metav1.Condition{Type: vaultcertv1.ConditionStalled, Status: metav1.ConditionTrue,
			Reason: ready.Reason, Message: ready.Message}
	default:
		return &metav1.Condition{Type: vaultcertv1.ConditionReconciling, Status: metav1.ConditionTrue,
			Reason: ready.Reason, Message: ready.Message}, nil
	}
}

package controllers

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// setCondition is the one place conditions are written: it stamps the object's generation so readers can tell
// a stale condition from a current one, and keeps lastTransitionTime when only the message changes. It reports
// whether the condition changed (events are sent on a change, not on every reconcile).
func setCondition(conditions *[]metav1.Condition, generation int64, condType string, status metav1.ConditionStatus, reason, message string) bool {
	return meta.SetStatusCondition(conditions, metav1.Condition{
		Type:               condType,
		Status:             status,
		Reason:             reason,
		Message:            truncate(message, 32*1024),
		ObservedGeneration: generation,
	})
}

// truncate keeps a message under the API's condition message limit.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

package decide

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
)

func TestKStatus(t *testing.T) {
	cond := func(typ string, status metav1.ConditionStatus, reason string) *metav1.Condition {
		return &metav1.Condition{Type: typ, Status: status, Reason: reason, Message: reason + " message"}
	}
	ready := func(status metav1.ConditionStatus, reason string) *metav1.Condition {
		return cond(vaultcertv1.ConditionReady, status, reason)
	}
	issuing := cond(vaultcertv1.ConditionIssuing, metav1.ConditionTrue, vaultcertv1.ReasonIssuing)
	for _, tc := range []struct {
		name               string
		ready, issuing     *metav1.Condition
		reconciling, stall string // wanted reasons; "" = absent
	}{
		{"never synced", nil, nil, vaultcertv1.ReasonProgressing, ""},
		{"synced", ready(metav1.ConditionTrue, vaultcertv1.ReasonSynced), nil, "", ""},
		{"synced while a new version is issued", ready(metav1.ConditionTrue, vaultcertv1.ReasonSynced), issuing, vaultcertv1.ReasonIssuing, ""},
		{"first version being issued", ready(metav1.ConditionFalse, vaultcertv1.ReasonIssuing), issuing, vaultcertv1.ReasonIssuing, ""},
		{"throttled, nothing held yet", ready(metav1.ConditionFalse, vaultcertv1.ReasonThrottled), nil, vaultcertv1.ReasonThrottled, ""},
		{"network error", ready(metav1.ConditionFalse, vaultcertv1.ReasonKeyVaultError), nil, vaultcertv1.ReasonKeyVaultError, ""},
		{"certificate missing", ready(metav1.ConditionFalse, vaultcertv1.ReasonCertificateNotFound), nil, "", vaultcertv1.ReasonCertificateNotFound},
		{"role missing", ready(metav1.ConditionFalse, vaultcertv1.ReasonAccessDenied), nil, "", vaultcertv1.ReasonAccessDenied},
		{"Secret conflict", ready(metav1.ConditionFalse, vaultcertv1.ReasonSecretConflict), nil, "", vaultcertv1.ReasonSecretConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, stalled := KStatus(tc.ready, tc.issuing)
			if got := reasonOf(rec); got != tc.reconciling {
				t.Errorf("Reconciling %q, want %q", got, tc.reconciling)
			}
			if got := reasonOf(stalled); got != tc.stall {
				t.Errorf("Stalled %q, want %q", got, tc.stall)
			}
			if rec != nil && stalled != nil {
				t.Error("Reconciling and Stalled at once")
			}
		})
	}
}

func reasonOf(c *metav1.Condition) string {
	if c == nil {
		return ""
	}
	return c.Reason
}

// TestRetryDelay: a failure a person fixes is retried within seconds at first, then about as often as it has
// lasted, never more rarely than the terminal delay: a fix a minute in is seen within a minute, and an hour-long
// failure costs about one call per terminal delay.
func TestRetryDelay(t *testing.T) {
	const terminal = 5 * time.Minute
	for _, tc := range []struct{ failingFor, want time.Duration }{
		{0, MinFixRetry},
		{2 * time.Second, MinFixRetry},
		{30 * time.Second, 30 * time.Second},
		{time.Minute, time.Minute},
		{3 * time.Hour, terminal},
		{-time.Minute, MinFixRetry}, // a clock step back
	} {
		if got := RetryDelay(tc.failingFor, terminal); got != tc.want {
			t.Errorf("RetryDelay(%v) = %v, want %v", tc.failingFor, got, tc.want)
		}
	}
	if got := RetryDelay(time.Hour, 2*time.Second); got != 2*time.Second {
		t.Errorf("a terminal delay below MinFixRetry wins: %v", got)
	}
	// Calls in the first hour of a failure, each retry waiting RetryDelay(elapsed).
	calls, elapsed := 0, time.Duration(0)
	for elapsed < time.Hour {
		elapsed += RetryDelay(elapsed, terminal)
		calls++
	}
	if calls > 25 {
		t.Errorf("%d calls in the first hour of a failure", calls)
	}
}

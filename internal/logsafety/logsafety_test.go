package logsafety

import (
	"strings"
	"testing"

	"github.com/go-logr/logr/funcr"
)

func TestSafeLoggerDropsBodies(t *testing.T) {
	var lines []string
	base := funcr.New(func(prefix, args string) { lines = append(lines, prefix+" "+args) }, funcr.Options{Verbosity: 10})
	l := SafeLogger(base).WithName("vaultcert").WithValues("k", "v")
	l.V(1).Info("writing Secret")
	l.V(7).Info("detail")
	l.V(8).Info("Request Body", "body", "tls.key: LS0tLS1CRUdJTi")
	l.V(9).Info("curl -v -XGET")
	l.Info("Response Body", "body", "clientSecret")
	if l.V(8).Enabled() {
		t.Error("V(8) is enabled")
	}
	got := strings.Join(lines, "\n")
	if len(lines) != 2 || !strings.Contains(got, "writing Secret") || !strings.Contains(got, "detail") || strings.Contains(got, "LS0t") || strings.Contains(got, "clientSecret") {
		t.Fatalf("unexpected log lines:\n%s", got)
	}
}

package promcheck

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/template"
)

type rule struct {
	Alert       string            `json:"alert"`
	Record      string            `json:"record"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []rule `json:"rules"`
	} `json:"groups"`
}

func mustEnv(t *testing.T, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Skipf("%s is not set (hack/helm-test.sh sets it)", name)
	}
	return v
}

func loadRules(t *testing.T) map[string]rule {
	t.Helper()
	data, err := os.ReadFile(mustEnv(t, "PROMCHECK_RULES"))
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	alerts := map[string]rule{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				alerts[r.Alert] = r
			}
		}
	}
	return alerts
}

// TestRules: every alert parses, has a valid `for`, a severity, and annotations that expand with Prometheus'
// template functions.
func TestRules(t *testing.T) {
	alerts := loadRules(t)
	for _, name := range []string{"VaultCertificateExpiringSoon", "VaultCertificateNotReady", "VaultCertKeyVaultThrottled"} {
		if _, ok := alerts[name]; !ok {
			t.Errorf("alert %s missing", name)
		}
	}
	for name, r := range alerts {
		if _, err := parser.ParseExpr(r.Expr); err != nil {
			t.Errorf("%s: expr does not parse: %v\n%s", name, err, r.Expr)
		}
		if _, err := model.ParseDuration(r.For); err != nil {
			t.Errorf("%s: for %q: %v", name, r.For, err)
		}
		if r.Labels["severity"] == "" {
			t.Errorf("%s: no severity label", name)
		}
		for _, key := range []string{"summary", "description", "runbook_url"} {
			text, ok := r.Annotations[key]
			if !ok {
				t.Errorf("%s: no %s annotation", name, key)
				continue
			}
			labels := map[string]string{"namespace": "team-a", "name": "web", "vault": "contoso.vault.azure.net"}
			// The same header Prometheus prepends to annotation templates.
			defs := "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
			data := template.AlertTemplateData(labels, nil, "", promql.Sample{F: 3 * 86400})
			exp := template.NewTemplateExpander(context.Background(), defs+text, name+"/"+key, data, model.Now(),
				func(context.Context, string, time.Time) (promql.Vector, error) { return nil, nil }, &url.URL{}, nil)
			out, err := exp.Expand()
			if err != nil {
				t.Errorf("%s: %s does not expand: %v", name, key, err)
				continue
			}
			if strings.Contains(out, "<no value>") {
				t.Errorf("%s: %s expands with a missing value: %s", name, key, out)
			}
			t.Logf("%s %s: %s", name, key, out)
		}
	}
}

func run(t *testing.T, script string) {
	t.Helper()
	t.Log(script)
	engine := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	promqltest.RunTest(t, script, engine)
}

// TestExpiringSoon: fires for a certificate expiring within the configured days and for an expired one, not for
// one expiring later; the same certificate reported by two pods yields one alert.
func TestExpiringSoon(t *testing.T) {
	r, ok := loadRules(t)["VaultCertificateExpiringSoon"]
	if !ok {
		t.Skip("alert disabled")
	}
	days, err := strconv.Atoi(mustEnv(t, "PROMCHECK_EXPIRY_DAYS"))
	if err != nil {
		t.Fatal(err)
	}
	const now = 7200 // eval at 120m
	soon := now + (days-4)*86400
	later := now + (days+10)*86400
	expired := now - 86400
	run(t, fmt.Sprintf(`
load 1m
  vaultcert_certificate_expiration_timestamp_seconds{namespace="team-a",name="soon",pod="vaultcert-0"} %dx180
  vaultcert_certificate_expiration_timestamp_seconds{namespace="team-a",name="soon",pod="vaultcert-1"} %dx180
  vaultcert_certificate_expiration_timestamp_seconds{namespace="team-a",name="later",pod="vaultcert-0"} %dx180
  vaultcert_certificate_expiration_timestamp_seconds{namespace="team-b",name="expired",pod="vaultcert-0"} %dx180

eval instant at 120m %s
  {namespace="team-a",name="soon"} %d
  {namespace="team-b",name="expired"} %d
`, soon, soon, later, expired, oneLine(r.Expr), soon-now, expired-now))
}

// TestNotReady: fires for a VaultCertificate whose readiness gauge is 0, not for a Ready one.
func TestNotReady(t *testing.T) {
	r, ok := loadRules(t)["VaultCertificateNotReady"]
	if !ok {
		t.Skip("alert disabled")
	}
	run(t, fmt.Sprintf(`
load 1m
  vaultcert_certificate_ready{namespace="team-a",name="broken",pod="vaultcert-0"} 0x30
  vaultcert_certificate_ready{namespace="team-a",name="fine",pod="vaultcert-0"} 1x30

eval instant at 20m %s
  {namespace="team-a",name="broken"} 0
`, oneLine(r.Expr)))
}

// TestThrottled: fires for a vault answering 429 steadily, not for one with a single burst long ago or none.
func TestThrottled(t *testing.T) {
	r, ok := loadRules(t)["VaultCertKeyVaultThrottled"]
	if !ok {
		t.Skip("alert disabled")
	}
	run(t, fmt.Sprintf(`
load 1m
  vaultcert_keyvault_throttled_total{vault="busy.vault.azure.net",pod="vaultcert-0"} 0+3x40
  vaultcert_keyvault_throttled_total{vault="once.vault.azure.net",pod="vaultcert-0"} 0x10 4x30
  vaultcert_keyvault_throttled_total{vault="quiet.vault.azure.net",pod="vaultcert-0"} 0x40

eval instant at 40m %s
  {vault="busy.vault.azure.net"} 0.05
`, oneLine(r.Expr)))
}

var grafanaVars = regexp.MustCompile(`\$\{?[A-Za-z_]+\}?`)

// TestDashboard: every panel query parses as PromQL once Grafana's variables are substituted, and the dashboard
// charts expiry, readiness, Key Vault calls and throttling.
func TestDashboard(t *testing.T) {
	data, err := os.ReadFile(mustEnv(t, "PROMCHECK_DASHBOARD"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	all := ""
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			expr := strings.ReplaceAll(tg.Expr, "$__rate_interval", "5m")
			expr = grafanaVars.ReplaceAllString(expr, ".*")
			if _, err := parser.ParseExpr(expr); err != nil {
				t.Errorf("panel %q: query does not parse: %v\n%s", p.Title, err, expr)
			}
			all += tg.Expr + "\n"
		}
	}
	for _, metric := range []string{
		"vaultcert_certificate_expiration_timestamp_seconds", "vaultcert_certificate_ready",
		"vaultcert_keyvault_requests_total", "vaultcert_keyvault_request_duration_seconds_bucket",
		"vaultcert_keyvault_throttled_total", "vaultcert_sync_total",
	} {
		if !strings.Contains(all, metric) {
			t.Errorf("no panel queries %s", metric)
		}
	}
	t.Logf("%d panels parse", len(dash.Panels))
}

// oneLine joins a multi-line expr: the promqltest script wants the expression on the eval line.
func oneLine(expr string) string {
	return strings.Join(strings.Fields(expr), " ")
}

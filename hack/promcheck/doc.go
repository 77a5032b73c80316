// Package promcheck checks the chart's Prometheus alerts and Grafana dashboard with Prometheus' own PromQL
// parser, template expander and query engine. It is a separate Go module so that the Prometheus dependencies stay
// out of vaultcert's go.mod. hack/helm-test.sh runs it:
//
//	PROMCHECK_RULES=rules.json PROMCHECK_DASHBOARD=charts/vaultcert/dashboards/vaultcert.json \
//	PROMCHECK_EXPIRY_DAYS=14 go test ./...
//
// rules.json is the PrometheusRule's spec ({"groups": [...]}), from `chartcheck promrules`.
package promcheck

#!/usr/bin/env bash
# helm-test.sh: tests the Helm chart (charts/vaultcert) and the kustomize bases (config/) against a real local
# kube-apiserver + etcd (envtest binaries, started by hack/controlplane), with the real helm and kubectl clients.
#
#   1. helm lint --strict with the default values and every charts/vaultcert/ci/*-values.yaml
#   2. values.schema.json rejects invalid values (helm lint and helm template must both fail)
#   3. helm install (default values, no --wait: there is no scheduler, pods never run)
#   4. CRDs: established, printer columns, `kubectl explain` text
#   5. RBAC: the chart's ClusterRole grants exactly config/rbac/role.yaml; the API server's own authorizer
#      (kubectl auth can-i --as the ServiceAccount) allows every permission of role.yaml and nothing more
#      than the mode needs
#   6. helm template with default and non-default values: every object accepted by a server-side dry run, and
#      the pod template accepted by Pod Security admission enforcing "restricted"; the alerts and the dashboard
#      checked with Prometheus' PromQL parser and engine on synthetic series (hack/promcheck, its own Go module)
#   7. helm upgrade to namespaces mode with monitoring, NetworkPolicy, default connection, digest image; RBAC per
#      namespace; helm upgrade back to the defaults
#   8. kubectl apply of config/samples (when present)
#   9. helm uninstall, then the kustomize bases: config/default applied for real, config/prometheus dry run
#
# Exits non-zero on the first failure and always stops the control plane. Needs Go (helm is installed with
# `go install` into bin/ when it is missing) and hack/envtest-assets.sh (kube-apiserver, etcd, kubectl).
# Usage: hack/helm-test.sh        (or: make helm-test)
# Env:   KEEP=1 keeps the work directory; HELM=/path/to/helm uses that helm.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
CHART=charts/vaultcert
RELEASE=vaultcert
NS=vaultcert-system
WATCH_A=team-a
WATCH_B=team-b
HELM_VERSION=${HELM_VERSION:-v3.22.0}
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}

passed=0
current="setup"
work=$(mktemp -d "${TMPDIR:-/tmp}/vaultcert-helm-test.XXXXXX")
cp_pid=""

step() { current=$*; printf '\n==> %s\n' "$*"; }
ok() { passed=$((passed + 1)); printf '    ok   %s\n' "$*"; }
fail() {
  printf '    FAIL %s\n' "$*" >&2
  exit 1
}
# run_logged NAME CMD...: runs CMD with its output in $work/NAME.log, shown only when it fails.
run_logged() {
  local name=$1
  shift
  if ! "$@" >"$work/$name.log" 2>&1; then
    sed 's/^/         | /' "$work/$name.log" >&2
    fail "$name: $*"
  fi
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $cp_pid ]] && kill -0 "$cp_pid" 2>/dev/null; then
    kill -TERM "$cp_pid" 2>/dev/null || true
    wait "$cp_pid" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 && -f $work/controlplane.log ]]; then
    echo "--- last lines of the control plane log ---" >&2
    tail -n 20 "$work/controlplane.log" >&2 || true
  fi
  if [[ ${KEEP:-} == 1 ]]; then
    echo "work directory kept: $work"
  else
    rm -rf "$work"
  fi
  echo
  if [[ $rc -eq 0 ]]; then
    echo "helm-test: PASS"
    echo "helm-test: $passed passed, 0 failed"
  else
    echo "helm-test: FAIL during: $current" >&2
    echo "helm-test: $passed passed, 1 failed"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------------------------
step "tools"
ASSETS=$(hack/envtest-assets.sh)
KUBECTL="$ASSETS/kubectl"
[[ -x $KUBECTL ]] || fail "no kubectl in $ASSETS"
if [[ -n ${HELM:-} ]]; then
  :
elif [[ -x $ROOT/bin/helm ]]; then
  HELM=$ROOT/bin/helm
elif command -v helm >/dev/null 2>&1 && helm version --template '{{.Version}}' 2>/dev/null | grep -q '^v3\.'; then
  HELM=$(command -v helm)
else
  echo "    installing helm $HELM_VERSION into bin/ (go install; first time only)"
  GOBIN=$ROOT/bin GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  HELM=$ROOT/bin/helm
fi
# Keep helm's cache, config and repositories out of the user's home.
export HELM_CACHE_HOME=$work/helm/cache HELM_CONFIG_HOME=$work/helm/config HELM_DATA_HOME=$work/helm/data
export KUBECONFIG=$work/kubeconfig
go build -o "$work/controlplane" ./hack/controlplane
go build -o "$work/chartcheck" ./hack/chartcheck
CHARTCHECK=$work/chartcheck
ok "helm $("$HELM" version --template '{{.Version}}'), kubectl and the API server from $ASSETS"

helm() { "$HELM" "$@"; }
kubectl() { "$KUBECTL" "$@"; }

# The rendered manifests of one values set. Usage: [REL=release] render NAME [helm template args...]
render() {
  local name=$1
  shift
  helm template "${REL:-$RELEASE}" "$CHART" --namespace "$NS" "$@" >"$work/$name.yaml" 2>"$work/$name.err" || {
    cat "$work/$name.err" >&2
    fail "helm template ($name) failed"
  }
}
# top-level objects in a rendered file
count_objects() { grep -c '^kind: ' "$1" || true; }

# ---------------------------------------------------------------------------------------------------------------
step "chart CRDs match config/crd/bases (make manifests copies them)"
for f in config/crd/bases/*.yaml; do
  cmp -s "$f" "$CHART/crds/$(basename "$f")" || fail "$CHART/crds/$(basename "$f") differs from $f: run 'make manifests'"
done
[[ $(ls "$CHART"/crds/*.yaml | wc -l) -eq $(ls config/crd/bases/*.yaml | wc -l) ]] || fail "$CHART/crds holds other files than config/crd/bases"
ok "$(ls config/crd/bases/*.yaml | wc -l) CRDs identical"

# ---------------------------------------------------------------------------------------------------------------
step "helm lint"
run_logged lint-default helm lint --strict "$CHART" --namespace "$NS"
ok "helm lint --strict (default values)"
values_files=("$CHART"/ci/*-values.yaml)
for vf in "${values_files[@]}"; do
  run_logged "lint-$(basename "$vf" .yaml)" helm lint --strict "$CHART" --namespace "$NS" -f "$vf"
  ok "helm lint --strict -f $vf"
done

# ---------------------------------------------------------------------------------------------------------------
step "values.schema.json rejects invalid values"
# Each case: a description, then helm --set arguments. Each must make both helm lint and helm template fail
# with a schema error (or the chart's own message for rules JSON Schema cannot express).
reject() {
  local what=$1 expect=$2
  shift 2
  local out
  if out=$(helm lint --strict "$CHART" --namespace "$NS" "$@" 2>&1); then
    fail "helm lint accepted $what ($*)"
  fi
  grep -qiE "$expect" <<<"$out" || {
    echo "$out" | sed 's/^/         | /' >&2
    fail "helm lint rejected $what but without /$expect/"
  }
  if out=$(helm template "$RELEASE" "$CHART" --namespace "$NS" "$@" 2>&1); then
    fail "helm template accepted $what ($*)"
  fi
  grep -qiE "$expect" <<<"$out" || {
    echo "$out" | sed 's/^/         | /' >&2
    fail "helm template rejected $what but without /$expect/"
  }
  ok "rejected: $what"
}
schema="don't meet the specifications of the schema"
reject "a string replicaCount" "$schema" --set replicaCount=two
reject "an unknown installMode" "$schema" --set installMode=everywhere
reject "an unknown top-level key" "$schema|additional properties" --set replicas=2
reject "an unknown nested key" "$schema|additional properties" --set serviceMonitor.intervall=30s
reject "namespaces mode without watchNamespaces" "$schema" --set installMode=namespaces
reject "an invalid namespace name" "$schema" --set installMode=namespaces --set 'watchNamespaces[0]=Team_A'
reject "a malformed image digest" "$schema" --set image.digest=sha256:abc
reject "an invalid Go duration" "$schema" --set controller.minRetryDelay=soon
reject "a negative port" "$schema" --set metrics.port=-1
reject "an unknown log format" "$schema" --set logging.format=xml
reject "a non-boolean flag" "$schema" --set-string networkPolicy.enabled=yes
reject "a default connection without vaultURL" "$schema" --set defaultConnection.create=true
reject "a default connection with an http vaultURL" "$schema" --set defaultConnection.create=true --set defaultConnection.vaultURL=http://vault.example/
reject "two auth methods on the default connection" "$schema" --set defaultConnection.create=true \
  --set defaultConnection.vaultURL=https://v.vault.azure.net/ --set defaultConnection.auth.managedIdentity.clientID=x \
  --set defaultConnection.auth.workloadIdentity.clientID=y
reject "an existing ServiceAccount without a name" "$schema" --set serviceAccount.create=false

# ---------------------------------------------------------------------------------------------------------------
step "start the control plane (kube-apiserver + etcd)"
"$work/controlplane" -kubeconfig-out "$KUBECONFIG" -assets-dir "$ASSETS" >"$work/controlplane.log" 2>&1 &
cp_pid=$!
for _ in $(seq 1 180); do
  [[ -s $KUBECONFIG ]] && break
  kill -0 "$cp_pid" 2>/dev/null || { cat "$work/controlplane.log" >&2; fail "the control plane exited"; }
  sleep 0.5
done
[[ -s $KUBECONFIG ]] || fail "the control plane did not start within 90s"
server_version=$(kubectl version -o json | sed -n 's/.*"gitVersion": "\(v[^"]*\)".*/\1/p' | tail -n 1)
ok "API server $server_version up ($(sed -n 's/^control plane ready: server \([^,]*\),.*/\1/p' "$work/controlplane.log"))"

# Namespaces: the release namespace and a check namespace enforce the "restricted" Pod Security Standard.
kubectl create namespace "$NS" >/dev/null
kubectl label namespace "$NS" pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/warn=restricted >/dev/null
kubectl create namespace psa-check >/dev/null
kubectl label namespace psa-check pod-security.kubernetes.io/enforce=restricted >/dev/null
for ns in "$WATCH_A" "$WATCH_B" monitoring; do kubectl create namespace "$ns" >/dev/null; done
kubectl create priorityclass vaultcert-test --value=1000 --description="helm-test" >/dev/null
ok "namespaces $NS (restricted), psa-check (restricted), $WATCH_A, $WATCH_B, monitoring; PriorityClass vaultcert-test"
# The Gateway API CRDs of the version go.mod pins, as a cluster with Gateway API has them: the RBAC checks then
# ask the authorizer about gateways and referencegrants like any other kind.
gateway_crds=$(go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api)/config/crd/standard
kubectl apply --server-side -f "$gateway_crds/gateway.networking.k8s.io_gateways.yaml" \
  -f "$gateway_crds/gateway.networking.k8s.io_referencegrants.yaml" >/dev/null
kubectl wait --for condition=established --timeout=60s crd/gateways.gateway.networking.k8s.io crd/referencegrants.gateway.networking.k8s.io >/dev/null
ok "Gateway API CRDs ($(go list -m -f '{{.Version}}' sigs.k8s.io/gateway-api)) installed"

# ---------------------------------------------------------------------------------------------------------------
step "helm install (default values)"
run_logged install helm install "$RELEASE" "$CHART" --namespace "$NS" --timeout 2m
grep -q 'STATUS: deployed' "$work/install.log" || fail "helm install did not report STATUS: deployed"
grep -q 'Ask for a certificate' "$work/install.log" || fail "NOTES.txt was not shown"
ok "helm install $RELEASE: deployed, NOTES shown"
for crd in vaultcertificates vaultconnections clustervaultconnections; do
  run_logged "crd-$crd" kubectl wait --for condition=Established --timeout=60s "crd/$crd.vaultcert.io"
done
ok "CRDs installed from $CHART/crds and Established"
replicas=$(kubectl -n "$NS" get deploy "$RELEASE" -o jsonpath='{.spec.replicas}')
[[ $replicas == 2 ]] || fail "Deployment replicas = $replicas, want 2"
args=$(kubectl -n "$NS" get deploy "$RELEASE" -o jsonpath='{.spec.template.spec.containers[0].args}')
for want in -leader-elect=true -leader-election-namespace="$NS" -metrics-bind-address=:8080 -health-probe-bind-address=:8081; do
  grep -q -- "$want" <<<"$args" || fail "Deployment args lack -$want: $args"
done
grep -q -- '--namespaces' <<<"$args" && fail "cluster mode must not pass --namespaces: $args"
sc=$(kubectl -n "$NS" get deploy "$RELEASE" -o jsonpath='{.spec.template.spec.containers[0].securityContext}')
for want in '"readOnlyRootFilesystem":true' '"allowPrivilegeEscalation":false' '"runAsNonRoot":true' '"drop":\["ALL"\]' '"type":"RuntimeDefault"'; do
  grep -qE "$want" <<<"$sc" || fail "container securityContext lacks $want: $sc"
done
for obj in serviceaccount/"$RELEASE" service/"$RELEASE"-metrics poddisruptionbudget/"$RELEASE" role/"$RELEASE"-leader-election rolebinding/"$RELEASE"-leader-election; do
  kubectl -n "$NS" get "$obj" >/dev/null 2>&1 || fail "$obj missing after install"
done
for obj in clusterrole/"$RELEASE"-manager clusterrolebinding/"$RELEASE"-manager clusterrole/"$RELEASE"-view clusterrole/"$RELEASE"-edit; do
  kubectl get "$obj" >/dev/null 2>&1 || fail "$obj missing after install"
done
ok "Deployment (2 replicas, leader election, probes ports, restricted securityContext), ServiceAccount, metrics Service, PDB, RBAC present"

# ---------------------------------------------------------------------------------------------------------------
step "kubectl experience: printer columns and explain"
cols=$(kubectl get crd vaultcertificates.vaultcert.io -o jsonpath='{.spec.versions[0].additionalPrinterColumns[*].name}')
for want in Ready Secret Version Expires Age; do
  grep -qw "$want" <<<"$cols" || fail "VaultCertificate printer columns ($cols) lack $want"
done
ok "VaultCertificate printer columns: $cols"
for crd in vaultconnections clustervaultconnections; do
  c=$(kubectl get crd "$crd.vaultcert.io" -o jsonpath='{.spec.versions[0].additionalPrinterColumns[*].name}')
  grep -qw Ready <<<"$c" || fail "$crd printer columns ($c) lack Ready"
done
ok "connection printer columns include Ready"
short=$(kubectl api-resources --api-group=vaultcert.io --no-headers)
grep -qw vcert <<<"$short" || fail "short name vcert missing: $short"
explain=$(kubectl explain vaultcertificate.spec)
for want in certificateName secretName connectionRef refreshInterval; do
  grep -q "$want" <<<"$explain" || fail "kubectl explain vaultcertificate.spec lacks $want"
done
desc_lines=$(grep -cE '^ {4,}[A-Za-z]' <<<"$explain" || true)
[[ $desc_lines -ge 10 ]] || fail "kubectl explain vaultcertificate.spec shows almost no descriptions ($desc_lines lines)"
run_logged explain-conn kubectl explain clustervaultconnection.spec.namespaceSelector
ok "kubectl explain vaultcertificate.spec documents its fields ($desc_lines description lines)"

# ---------------------------------------------------------------------------------------------------------------
step "RBAC, cluster mode: chart == config/rbac/role.yaml, checked by the API server's authorizer"
render default
"$CHARTCHECK" compare -want config/rbac/role.yaml -got "$work/default.yaml" -name "$RELEASE-manager" >/dev/null || fail "chart ClusterRole drifted from config/rbac/role.yaml"
ok "rendered ClusterRole $RELEASE-manager == config/rbac/role.yaml"
"$CHARTCHECK" rules config/rbac/role.yaml >"$work/required.txt"
kubectl api-resources --namespaced=false -o name >"$work/cluster-scoped.txt"

# can_i SA NAMESPACE|-A GROUP RESOURCE[/SUB] VERB: prints yes or no, as the API server decides for the SA.
can_i() {
  local sa=$1 scope=$2 group=$3 res=$4 verb=$5 sub="" target
  if [[ $res == */* ]]; then sub=${res#*/}; res=${res%%/*}; fi
  target=$res
  [[ $group != core ]] && target=$res.$group
  local flags=(--as="$sa")
  [[ -n $sub ]] && flags+=(--subresource="$sub")
  if [[ $scope == -A ]]; then flags+=(-A); else flags+=(-n "$scope"); fi
  kubectl auth can-i "$verb" "$target" "${flags[@]}" 2>/dev/null || true
}
is_cluster_scoped() {
  local group=$1 res=${2%%/*}
  if [[ $group == core ]]; then grep -qx "$res" "$work/cluster-scoped.txt"; else grep -qx "$res.$group" "$work/cluster-scoped.txt"; fi
}
# expect SA ANSWER SCOPE GROUP RESOURCE VERB
expect() {
  local got
  got=$(can_i "$1" "$3" "$4" "$5" "$6")
  [[ $got == "$2" ]] || fail "kubectl auth can-i $6 $5 ($4) in ${3/-A/all namespaces} as $1: got '$got', want '$2'"
}
SA="system:serviceaccount:$NS:$RELEASE"
n=0
while read -r group res verb; do
  expect "$SA" yes -A "$group" "$res" "$verb"
  n=$((n + 1))
done <"$work/required.txt"
ok "the ServiceAccount may do all $n things role.yaml lists, in every namespace"
expect "$SA" no -A core namespaces delete
expect "$SA" no -A vaultcert.io clustervaultconnections create
expect "$SA" no -A vaultcert.io vaultconnections delete
expect "$SA" no "$NS" core pods create
expect "$SA" no default coordination.k8s.io leases create
expect "$SA" no kube-system coordination.k8s.io leases update
expect "$SA" yes "$NS" coordination.k8s.io leases update
ok "and not more (no namespace deletion, no writes to connections, no pods, Leases only in $NS)"

# ---------------------------------------------------------------------------------------------------------------
step "monitoring.coreos.com CRD stubs (hack/testdata)"
run_logged monitoring-crds kubectl apply --server-side -f hack/testdata/monitoring.coreos.com-stub-crds.yaml
run_logged monitoring-crds-wait kubectl wait --for condition=Established --timeout=60s crd/servicemonitors.monitoring.coreos.com crd/prometheusrules.monitoring.coreos.com
ok "ServiceMonitor and PrometheusRule CRD stubs Established"

# ---------------------------------------------------------------------------------------------------------------
# dry_run NAME FILE: every object of FILE accepted by a strict server-side dry run, no Pod Security warning.
dry_run() {
  local name=$1 file=$2 want got
  want=$(count_objects "$file")
  [[ $want -gt 0 ]] || fail "$name: nothing rendered"
  if ! kubectl apply --dry-run=server --validate=strict -f "$file" >"$work/$name.dry" 2>"$work/$name.dryerr"; then
    sed 's/^/         | /' "$work/$name.dryerr" >&2
    fail "$name: the API server rejected an object (server-side dry run)"
  fi
  if grep -qi 'would violate PodSecurity' "$work/$name.dryerr"; then
    sed 's/^/         | /' "$work/$name.dryerr" >&2
    fail "$name: Pod Security (restricted) warnings"
  fi
  got=$(grep -c 'server dry run' "$work/$name.dry" || true)
  [[ $got -eq $want ]] || {
    cat "$work/$name.dry" >&2
    fail "$name: $got objects accepted, $want rendered"
  }
}
# psa NAME FILE: a Pod made from the Deployment's pod template is admitted in a namespace enforcing "restricted".
psa() {
  local name=$1 file=$2
  "$CHARTCHECK" pod -in "$file" >"$work/$name.pod.json" || fail "$name: no Deployment to check"
  if ! kubectl -n psa-check apply --dry-run=server -f "$work/$name.pod.json" >"$work/$name.psa" 2>&1; then
    sed 's/^/         | /' "$work/$name.psa" >&2
    fail "$name: Pod Security admission (restricted) refused the controller's pod"
  fi
}

step "helm template + server-side dry run, default and non-default values"
# Each values set renders under its own release name, so that every object is new to the API server and the dry
# run validates a create (a dry-run patch of the installed release would merge lists such as ports).
REL=dry-default render default-crds --include-crds
dry_run default-crds "$work/default-crds.yaml"
psa default "$work/default.yaml"
ok "default values: $(count_objects "$work/default-crds.yaml") objects (CRDs included) accepted; pod admitted as restricted"
for vf in "${values_files[@]}"; do
  name=$(basename "$vf" -values.yaml)
  REL=dry-$name render "$name" -f "$vf"
  dry_run "$name" "$work/$name.yaml"
  psa "$name" "$work/$name.yaml"
  kinds=$(grep '^kind: ' "$work/$name.yaml" | sort -u | sed 's/^kind: //' | paste -sd, -)
  ok "$vf: $(count_objects "$work/$name.yaml") objects accepted ($kinds); pod admitted as restricted"
done
# The checks above have teeth: a privileged container must be refused.
render privileged --set securityContext.allowPrivilegeEscalation=true --set securityContext.readOnlyRootFilesystem=false
"$CHARTCHECK" pod -in "$work/privileged.yaml" >"$work/privileged.pod.json"
if kubectl -n psa-check apply --dry-run=server -f "$work/privileged.pod.json" >/dev/null 2>&1; then
  fail "Pod Security admission admitted a pod with allowPrivilegeEscalation=true: the restricted check proves nothing"
fi
ok "negative control: allowPrivilegeEscalation=true is refused by the restricted namespace"

# Rendered content of the non-default values.
ns_file=$work/namespaces.yaml
grep -q -- "--namespaces=$WATCH_A,$WATCH_B" "$ns_file" || fail "namespaces mode does not pass --namespaces=$WATCH_A,$WATCH_B"
grep -q '@sha256:0123456789abcdef' "$ns_file" || fail "digest image not rendered as repository@sha256:..."
grep -q 'azure.workload.identity/client-id: "11111111-2222-3333-4444-555555555555"' "$ns_file" || fail "workload identity client-id annotation missing"
grep -q 'azure.workload.identity/use: "true"' "$ns_file" || fail "workload identity label missing"
grep -q 'alert: VaultCertificateExpiringSoon' "$ns_file" || fail "expiry alert missing"
grep -q '< 21 \* 86400' "$ns_file" || fail "expiry alert does not use prometheusRule.certificateExpiring.days"
grep -q 'alert: VaultCertificateNotReady' "$ns_file" || fail "not-ready alert missing"
grep -q 'alert: VaultCertKeyVaultThrottled' "$ns_file" && fail "keyVaultThrottled.enabled=false still renders the alert"
grep -q 'alert: VaultCertKeyVaultThrottled' "$work/default.yaml" && fail "the PrometheusRule renders with prometheusRule.enabled=false"
sh_file=$work/sharded.yaml
for i in 0 1 2; do
  grep -q -- "--shard-index=$i" "$sh_file" || fail "sharding.shards=3 renders no Deployment for shard $i"
done
[[ $(grep -c -- '--shard-count=3' "$sh_file") -eq 3 ]] || fail "sharding.shards=3 must render 3 Deployments with --shard-count=3"
[[ $(grep -c -- '--shard-' "$work/default.yaml") -eq 0 ]] || fail "the default (one shard) passes shard flags"
ok "sharding.shards=3: three Deployments, shards 0, 1 and 2 of 3; the default passes no shard flags"
eg_file=$work/eventgrid.yaml
grep -q -- '--eventgrid-bind-address=:9443' "$eg_file" || fail "eventGrid.enabled does not pass --eventgrid-bind-address"
grep -q -- '--eventgrid-entra-audiences=api://vaultcert-events' "$eg_file" || fail "eventGrid.entra does not pass its audiences"
grep -q 'name: dry-eventgrid-vaultcert-eventgrid' "$eg_file" || fail "eventGrid.enabled renders no Service"
grep -q -- '--eventgrid-' "$work/default.yaml" && fail "the default values turn the Event Grid webhook on"
if "$HELM" template x "$CHART" --set eventGrid.enabled=true >/dev/null 2>&1; then
  fail "eventGrid.enabled without a shared secret or Entra must be refused"
fi
if "$HELM" template x "$CHART" -f "$CHART/ci/eventgrid-values.yaml" --set sharding.shards=2 >/dev/null 2>&1; then
  fail "eventGrid.enabled with sharding.shards > 1 must be refused"
fi
ok "eventGrid: flags, Service and mounts rendered; off by default; refused without authentication or with shards"
render alerts --set prometheusRule.enabled=true
for a in VaultCertificateExpiringSoon VaultCertificateNotReady VaultCertKeyVaultThrottled; do
  grep -q "alert: $a" "$work/alerts.yaml" || fail "alert $a missing with prometheusRule.enabled=true"
done
grep -q 'grafana_dashboard: "1"' "$ns_file" || fail "dashboard ConfigMap lacks the grafana_dashboard label"
for m in vaultcert_certificate_expiration_timestamp_seconds vaultcert_certificate_ready vaultcert_keyvault_requests_total vaultcert_keyvault_throttled_total vaultcert_keyvault_request_duration_seconds_bucket; do
  grep -q "$m" "$CHART/dashboards/vaultcert.json" || fail "dashboard does not chart $m"
done
ok "namespaces values render --namespaces, the digest image, workload identity, 3 alerts, dashboard (expiry, readiness, calls, throttling)"

step "PromQL: alerts and dashboard checked by Prometheus' parser, template expander and engine (hack/promcheck)"
"$CHARTCHECK" promrules -in "$work/alerts.yaml" >"$work/rules.json"
days=$(sed -n 's/.*< \([0-9]*\) \* 86400.*/\1/p' "$work/alerts.yaml" | head -n 1)
[[ -n $days ]] || fail "cannot read the expiry days from the rendered alert"
(
  cd hack/promcheck
  PROMCHECK_RULES=$work/rules.json PROMCHECK_DASHBOARD=$ROOT/$CHART/dashboards/vaultcert.json PROMCHECK_EXPIRY_DAYS=$days \
    go test -count=1 ./... >"$work/promcheck.log" 2>&1
) || {
  sed 's/^/         | /' "$work/promcheck.log" >&2
  fail "hack/promcheck: the alerts or the dashboard are wrong"
}
ok "alerts parse and expand; ExpiringSoon (${days}d), NotReady and KeyVaultThrottled fire for the right synthetic series only; dashboard queries parse"

# ---------------------------------------------------------------------------------------------------------------
step "helm upgrade to non-default values (namespaces mode, monitoring, NetworkPolicy, default connection)"
run_logged upgrade helm upgrade "$RELEASE" "$CHART" --namespace "$NS" -f "$CHART/ci/namespaces-values.yaml" --timeout 2m
helm history "$RELEASE" -n "$NS" --max 1 -o json | grep -q '"revision":2' || fail "release is not at revision 2 after the upgrade"
ok "helm upgrade: revision 2 deployed"
args=$(kubectl -n "$NS" get deploy "$RELEASE" -o jsonpath='{.spec.template.spec.containers[0].args}')
grep -q -- "--namespaces=$WATCH_A,$WATCH_B" <<<"$args" || fail "Deployment args lack --namespaces after the upgrade: $args"
for obj in servicemonitor/"$RELEASE" prometheusrule/"$RELEASE" networkpolicy/"$RELEASE" configmap/"$RELEASE"-dashboard serviceaccount/vaultcert-controller role/"$RELEASE"-credentials; do
  kubectl -n "$NS" get "$obj" >/dev/null 2>&1 || fail "$obj missing after the upgrade"
done
kubectl get clustervaultconnection shared-vault >/dev/null 2>&1 || fail "default ClusterVaultConnection missing after the upgrade"
for ns in "$WATCH_A" "$WATCH_B"; do
  kubectl -n "$ns" get role/"$RELEASE"-manager rolebinding/"$RELEASE"-manager >/dev/null 2>&1 || fail "Role/RoleBinding missing in $ns"
done
kubectl -n "$NS" get serviceaccount "$RELEASE" >/dev/null 2>&1 && fail "the old ServiceAccount was not removed by the upgrade"
ok "Roles in $WATCH_A and $WATCH_B, ServiceMonitor, PrometheusRule, NetworkPolicy, dashboard, ClusterVaultConnection present"

SA="system:serviceaccount:$NS:vaultcert-controller"
n=0
while read -r group res verb; do
  if [[ $group == coordination.k8s.io ]]; then
    expect "$SA" yes "$NS" "$group" "$res" "$verb"
  elif is_cluster_scoped "$group" "$res"; then
    expect "$SA" yes -A "$group" "$res" "$verb"
  else
    expect "$SA" yes "$WATCH_A" "$group" "$res" "$verb"
    expect "$SA" yes "$WATCH_B" "$group" "$res" "$verb"
    expect "$SA" no default "$group" "$res" "$verb"
    expect "$SA" no -A "$group" "$res" "$verb"
  fi
  n=$((n + 1))
done <"$work/required.txt"
ok "namespaces mode: all $n permissions of role.yaml granted in $WATCH_A and $WATCH_B (cluster-scoped kinds cluster-wide, the Lease in $NS), none in other namespaces"
expect "$SA" yes "$NS" core secrets get
expect "$SA" no "$NS" core secrets list
expect "$SA" yes "$NS" core serviceaccounts get
expect "$SA" yes "$NS" core serviceaccounts/token create
ok "namespaces mode: ClusterVaultConnection credentials in $NS usable: Secrets get (not list), ServiceAccounts get and token"

step "helm upgrade back to the default values"
run_logged upgrade-back helm upgrade "$RELEASE" "$CHART" --namespace "$NS" --reset-values --timeout 2m
args=$(kubectl -n "$NS" get deploy "$RELEASE" -o jsonpath='{.spec.template.spec.containers[0].args}')
grep -q -- '--namespaces' <<<"$args" && fail "--namespaces still set after upgrading back to cluster mode"
kubectl -n "$WATCH_A" get role "$RELEASE"-manager >/dev/null 2>&1 && fail "Role in $WATCH_A left behind"
kubectl get clustervaultconnection shared-vault >/dev/null 2>&1 && fail "default ClusterVaultConnection left behind"
expect "system:serviceaccount:$NS:$RELEASE" yes -A core secrets list
ok "revision 3: cluster mode again, namespaced Roles and the default connection removed"

# ---------------------------------------------------------------------------------------------------------------
step "config/samples"
if [[ -d config/samples ]] && ls config/samples/*.yaml >/dev/null 2>&1; then
  if [[ -f config/samples/kustomization.yaml ]]; then
    run_logged samples kubectl apply -k config/samples
  else
    run_logged samples kubectl apply -f config/samples
  fi
  ok "kubectl apply config/samples: $(grep -cE 'created|configured|unchanged' "$work/samples.log") objects accepted"
  listing=$(kubectl get vaultcertificates -A -o wide)
  head -n 1 <<<"$listing" | grep -qE 'READY +SECRET +VERSION +EXPIRES' || fail "kubectl get vaultcertificates columns: $(head -n 1 <<<"$listing")"
  echo "$listing" | sed 's/^/         /'
  ok "kubectl get vaultcertificates -A -o wide shows READY, SECRET, VERSION, EXPIRES"
else
  echo "    skip config/samples does not exist yet"
fi

# ---------------------------------------------------------------------------------------------------------------
step "helm uninstall"
run_logged uninstall helm uninstall "$RELEASE" --namespace "$NS" --timeout 2m
kubectl -n "$NS" get deploy "$RELEASE" >/dev/null 2>&1 && fail "Deployment left behind by helm uninstall"
kubectl get crd vaultcertificates.vaultcert.io >/dev/null 2>&1 || fail "helm uninstall removed the CRDs (it must keep them)"
ok "helm uninstall removed the controller and kept the CRDs (and so every VaultCertificate)"

# ---------------------------------------------------------------------------------------------------------------
step "kustomize bases (config/)"
kubectl kustomize config/crd >"$work/kustomize-crd.yaml"
[[ $(grep -c '^kind: CustomResourceDefinition' "$work/kustomize-crd.yaml") -eq $(ls config/crd/bases/*.yaml | wc -l) ]] || fail "config/crd does not hold every CRD of config/crd/bases"
ok "config/crd builds every CRD"
kubectl kustomize config/default >"$work/kustomize-default.yaml"
"$CHARTCHECK" compare -want config/rbac/role.yaml -got "$work/kustomize-default.yaml" -name vaultcert-manager >/dev/null || fail "config/default ClusterRole differs from role.yaml"
psa kustomize-default "$work/kustomize-default.yaml"
run_logged kustomize-apply kubectl apply --server-side --force-conflicts -k config/default
ok "kubectl apply --server-side -k config/default: $(count_objects "$work/kustomize-default.yaml") objects applied; pod admitted as restricted"
[[ $(kubectl -n "$NS" get deploy vaultcert -o jsonpath='{.spec.replicas}') == 2 ]] || fail "config/default Deployment does not have 2 replicas"
[[ $(kubectl get ns "$NS" -o jsonpath='{.metadata.labels.pod-security\.kubernetes\.io/enforce}') == restricted ]] || fail "config/default namespace does not enforce restricted"
SA="system:serviceaccount:$NS:vaultcert"
n=0
while read -r group res verb; do
  expect "$SA" yes -A "$group" "$res" "$verb"
  n=$((n + 1))
done <"$work/required.txt"
ok "config/default ServiceAccount may do all $n things role.yaml lists"
kubectl kustomize config/prometheus >"$work/kustomize-prometheus.yaml"
dry_run kustomize-prometheus "$work/kustomize-prometheus.yaml"
ok "config/prometheus ServiceMonitor accepted (server-side dry run)"

#!/usr/bin/env bash
# run.sh is `make e2e`: the Helm chart on a real single-node cluster (hack/cluster), pods and all, against the
# fake Key Vault (hack/e2e/main.go has the scenarios and what each asserts).
#
# It brings the cluster up unless one is already up (then it is reused and left running), builds and imports the
# images (vaultcert:dev from the same static build as the Dockerfile, and the HTTPS workload), installs helm into
# bin/ if missing, runs the scenarios, and takes down the cluster it brought up, checking that nothing is left.
# Needs root (the cluster does). Env: E2E_ARGS passes flags to hack/e2e (e.g. -timeout 5m).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local
STATE=${VAULTCERT_CLUSTER_DIR:-/var/tmp/vaultcert-cluster}
HELM_VERSION=${HELM_VERSION:-v3.22.0}

started=$(date +%s)
say() { printf '\n=== e2e: %s (%ss)\n' "$*" "$(($(date +%s) - started))"; }

brought_up=false
if [[ -s $STATE/admin.kubeconfig ]] && KUBECONFIG=$STATE/admin.kubeconfig "$(hack/envtest-assets.sh)/kubectl" get --raw /readyz >/dev/null 2>&1; then
  say "reusing the cluster that is up ($STATE)"
else
  say "cluster up"
  brought_up=true
  trap 'say "cluster down"; hack/cluster/down.sh && hack/cluster/check-clean.sh' EXIT
  hack/cluster/up.sh
fi

say "images"
hack/cluster/images.sh vaultcert tlsserver

if [[ ! -x bin/helm ]]; then
  say "helm $HELM_VERSION into bin/"
  GOBIN=$ROOT/bin go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi
# helm's cache, config and repositories stay out of the user's home.
helm_home=$(mktemp -d)
export HELM_CACHE_HOME=$helm_home/cache HELM_CONFIG_HOME=$helm_home/config HELM_DATA_HOME=$helm_home/data
export PATH="$(hack/envtest-assets.sh):$PATH" # kubectl, for the state dump on failure

say "scenarios"
# shellcheck disable=SC2086
go run ./hack/e2e -kubeconfig "$STATE/admin.kubeconfig" -helm bin/helm ${E2E_ARGS:-}
rm -rf "$helm_home"
say "passed (cluster brought up here: $brought_up)"

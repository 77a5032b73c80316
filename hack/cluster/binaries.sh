#!/usr/bin/env bash
# binaries.sh prints a directory holding every Kubernetes binary the local cluster runs: kubelet,
# kube-controller-manager, kube-scheduler and kube-proxy (built here), and kube-apiserver, etcd and kubectl
# (symlinked from hack/envtest-assets.sh, which builds and caches those).
#
# The directory is ${XDG_CACHE_HOME:-$HOME/.cache}/vaultcert/cluster/<version>. Nothing can be downloaded on our
# machines but Go modules, so the four node and controller binaries are built from the Go module proxy the first
# time, exactly as envtest-assets.sh builds kube-apiserver (cold: kubelet about 15 minutes on two busy cores,
# the rest a few more; seconds once cached). Progress goes to stderr; only the directory goes to stdout, so
# `bin=$(hack/cluster/binaries.sh)` works.
set -euo pipefail

K8S_VERSION=1.36.3   # must match the kube-apiserver envtest-assets.sh builds: the newest the module proxy serves
built=(kubelet kube-controller-manager kube-scheduler kube-proxy)
linked=(kube-apiserver etcd kubectl)
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/vaultcert/cluster/${K8S_VERSION}"

log() { echo "binaries.sh: $*" >&2; }

has_all() {
  local b
  for b in "$@"; do [[ -x "$cache/$b" ]] || return 1; done
}

# envtest_assets asks hack/envtest-assets.sh for the pinned version, never a KUBEBUILDER_ASSETS that may hold
# another one.
envtest_assets() {
  KUBEBUILDER_ASSETS='' ENVTEST_K8S_VERSION="$K8S_VERSION" "$repo/hack/envtest-assets.sh"
}

link_envtest_binaries() {
  local dir=$1 b
  for b in "${linked[@]}"; do ln -sfn "$dir/$b" "$cache/$b"; done
}

# build_node_binaries builds the four binaries in a throwaway module: k8s.io/kubernetes replaces its staging
# modules with local paths a dependent module cannot see, so each is replaced by its published v0.x twin.
build_node_binaries() {
  local work ldflags gomod pkgs=() b
  work=$(mktemp -d)
  # shellcheck disable=SC2064 # expand now: $work is local
  trap "rm -rf '$work'" EXIT
  export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
  log "building ${built[*]} v${K8S_VERSION} from the Go module proxy (first time only; kubelet takes longest)..."
  cd "$work"
  go mod init vaultcert.local/cluster-k8s >/dev/null 2>&1
  gomod=$(go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  [[ -f "$gomod" ]] || { log "cannot download k8s.io/kubernetes@v${K8S_VERSION}"; exit 1; }
  {
    echo "require k8s.io/kubernetes v${K8S_VERSION}"
    grep -oE '^\s+k8s\.io/[a-z0-9-]+ => \./staging' "$gomod" |
      awk -v v="v0.${K8S_VERSION#1.}" '{print "replace " $1 " => " $1 " " v}'
  } >> go.mod
  for b in "${built[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  go get "${pkgs[@]/%/@v${K8S_VERSION}}" >&2
  # Unstamped binaries report v0.0.0-master, which kubectl and the version skew checks refuse.
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v${K8S_VERSION}"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${K8S_VERSION#1.}"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=v${K8S_VERSION}"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=${K8S_VERSION#1.}"
  # One go build for all four shares their common packages; build into the work directory first so an
  # interrupted build never leaves a half-written binary in the cache.
  mkdir out
  go build -ldflags "$ldflags" -o out/ "${pkgs[@]}"
  for b in "${built[@]}"; do mv "out/$b" "$cache/$b"; done
}

check_versions() {
  local b v
  for b in "${built[@]}"; do
    v=$("$cache/$b" --version 2>&1)
    [[ "$v" == *"v${K8S_VERSION}"* ]] || { log "$b reports '$v', want v${K8S_VERSION}"; exit 1; }
  done
}

main() {
  local envtest
  envtest=$(envtest_assets)
  mkdir -p "$cache"
  link_envtest_binaries "$envtest"
  if ! has_all "${built[@]}"; then
    (build_node_binaries)
    check_versions
  fi
  has_all "${built[@]}" "${linked[@]}"
  echo "$cache"
}

main "$@"

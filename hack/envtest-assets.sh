#!/usr/bin/env bash
# envtest-assets.sh prints a directory holding kube-apiserver, etcd and kubectl for envtest.
#
# Order: $KUBEBUILDER_ASSETS when it already holds the binaries; else the cache under
# ${XDG_CACHE_HOME:-$HOME/.cache}/vaultcert/envtest/<version>; else they are built from the Go module proxy
# (no other download is possible on our machines) and cached. The first build takes about six minutes.
# Progress goes to stderr; only the directory goes to stdout, so `KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh)` works.
set -euo pipefail

K8S_VERSION="${ENVTEST_K8S_VERSION:-1.36.3}"   # newest kube-apiserver the module proxy serves (v1.37.x is refused)
ETCD_VERSION="${ENVTEST_ETCD_VERSION:-3.5.35}"
binaries=(kube-apiserver etcd kubectl)

has_all() {
  local dir=$1 b
  for b in "${binaries[@]}"; do [[ -x "$dir/$b" ]] || return 1; done
}

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]] && has_all "$KUBEBUILDER_ASSETS"; then
  echo "$KUBEBUILDER_ASSETS"; exit 0
fi

cache="${XDG_CACHE_HOME:-$HOME/.cache}/vaultcert/envtest/${K8S_VERSION}-etcd${ETCD_VERSION}"
if has_all "$cache"; then echo "$cache"; exit 0; fi

mkdir -p "$cache"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0

# kube-apiserver and kubectl: k8s.io/kubernetes replaces its staging modules with local paths, which a
# dependent module cannot see, so every staging module is replaced by its published v0.x twin.
echo "building kube-apiserver and kubectl v${K8S_VERSION} from the Go module proxy (first time only)..." >&2
(
  cd "$work" && mkdir k8s && cd k8s
  go mod init vaultcert.local/envtest-k8s >/dev/null 2>&1
  gomod=$(go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  staging_version="v0.${K8S_VERSION#1.}"
  {
    echo "require k8s.io/kubernetes v${K8S_VERSION}"
    grep -oE '^\s+k8s\.io/[a-z0-9-]+ => \./staging' "$gomod" | awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}'
  } >> go.mod
  go mod tidy >/dev/null 2>&1 || true
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v${K8S_VERSION} \
    -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${K8S_VERSION#1.} \
    -X k8s.io/client-go/pkg/version.gitVersion=v${K8S_VERSION} \
    -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=${K8S_VERSION#1.}"
  ldflags="${ldflags//  / }"
  go get "k8s.io/kubernetes/cmd/kube-apiserver@v${K8S_VERSION}" >&2
  go build -ldflags "$ldflags" -o "$cache/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
  go build -ldflags "$ldflags" -o "$cache/kubectl" k8s.io/kubernetes/cmd/kubectl
)

echo "building etcd v${ETCD_VERSION} from the Go module proxy (first time only)..." >&2
(
  cd "$work" && mkdir etcd && cd etcd
  go mod init vaultcert.local/envtest-etcd >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@v${ETCD_VERSION}" >&2
  go build -ldflags "-s -w" -o "$cache/etcd" go.etcd.io/etcd/server/v3
)

has_all "$cache"
echo "$cache"

#!/usr/bin/env bash
# images.sh builds image tarballs from static binaries, without a Docker engine, and imports them into the local
# cluster's containerd when it is up.
#
#   hack/cluster/images.sh                      # vaultcert:dev, the pause image and the fake vault
#   hack/cluster/images.sh vaultcert            # just one
#   hack/cluster/images.sh --no-import pause    # build only (up.sh does this before containerd runs)
#
# Binaries and tarballs go to bin/cluster/ (VAULTCERT_CLUSTER_IMAGES): bin/vaultcert is left alone, since
# `make build` writes a dynamically linked one there that other tools may be running. up.sh imports every
# tarball found there, so a recreated cluster has the images again without a rebuild.
# IMG overrides the vaultcert tag (default vaultcert:dev, as in the Makefile).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
all_kinds=(vaultcert pause fakevault tlsserver)

# tag_of is the reference each image is imported as; PAUSE_IMAGE is also containerd's sandbox_image.
tag_of() {
  case $1 in
    vaultcert) echo "${IMG:-vaultcert:dev}" ;;
    pause) echo "$PAUSE_IMAGE" ;;
    fakevault) echo "vaultcert.local/fakevault:dev" ;;
    tlsserver) echo "vaultcert.local/tlsserver:dev" ;;
  esac
}

# build_binary builds one static binary the way the Dockerfile builds vaultcert.
build_binary() {
  local kind=$1 out=$IMAGES/$1
  case $kind in
    vaultcert) (cd "$REPO" && go build -trimpath -ldflags "-s -w" -o "$out" .) ;;
    fakevault) (cd "$REPO" && go build -trimpath -ldflags "-s -w" -o "$out" ./hack/fakevault) ;;
    tlsserver) (cd "$REPO" && go build -trimpath -ldflags "-s -w" -o "$out" ./hack/e2e/tlsserver) ;;
    pause) (cd "$CLUSTER_DIR" && go build -trimpath -ldflags "-s -w" -o "$out" ./pause) ;;
    *) die "unknown image '$kind' (want: ${all_kinds[*]})" ;;
  esac
}

build_image() {
  local kind=$1
  log "image $(tag_of "$kind") <- $IMAGES/$kind"
  "$IMAGES/image-builder" -kind "$kind" -binary "$IMAGES/$kind" -tag "$(tag_of "$kind")" -o "$IMAGES/$kind.tar"
}

# import_image loads a tarball into the cluster's containerd, in the namespace the CRI plugin (so kubelet) uses.
import_image() {
  ctr -n k8s.io --address "$CONTAINERD_SOCK" images import "$1" >/dev/null
}

cluster_up() { [[ -S $CONTAINERD_SOCK ]] && ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1; }

main() {
  local import=true kinds=() kind
  if [[ ${1:-} == --no-import ]]; then import=false; shift; fi
  kinds=("$@")
  [[ ${#kinds[@]} -gt 0 ]] || kinds=("${all_kinds[@]}")
  mkdir -p "$IMAGES"
  (cd "$CLUSTER_DIR" && go build -o "$IMAGES/image-builder" ./image)
  for kind in "${kinds[@]}"; do
    build_binary "$kind"
    build_image "$kind"
  done
  if $import && cluster_up; then
    for kind in "${kinds[@]}"; do
      import_image "$IMAGES/$kind.tar"
      log "imported $(tag_of "$kind") into the cluster"
    done
  elif $import; then
    log "the cluster is not up: hack/cluster/up.sh imports these tarballs when it starts"
  fi
}

main "$@"

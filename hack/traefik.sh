#!/usr/bin/env bash
# traefik.sh prints the path of a Traefik binary for the real-ingress-controller end-to-end test (hack/e2e-ingress).
#
# Order: $TRAEFIK when it is already an executable; else the cache under
# ${XDG_CACHE_HOME:-$HOME/.cache}/vaultcert/traefik/<version>/traefik; else it is built from the Go module proxy
# (no other download is possible on our machines) and cached. The first build takes six to twenty minutes on two
# cores, depending on how warm the Go build cache is.
# Progress goes to stderr; only the binary's path goes to stdout, so `go run ./hack/e2e-ingress -traefik $(hack/traefik.sh)`
# works.
set -euo pipefail

# v3.6.12 is the newest Traefik whose dependencies the module proxy serves (v3.7.x needs modules it refuses).
TRAEFIK_VERSION="${TRAEFIK_VERSION:-3.6.12}"
module=github.com/traefik/traefik/v3

if [[ -n "${TRAEFIK:-}" && -x "${TRAEFIK}" ]]; then
  echo "$TRAEFIK"; exit 0
fi

cache="${XDG_CACHE_HOME:-$HOME/.cache}/vaultcert/traefik/${TRAEFIK_VERSION}"
if [[ -x "$cache/traefik" ]]; then echo "$cache/traefik"; exit 0; fi

mkdir -p "$cache"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0

# `go install module@version` refuses modules whose go.mod has replace directives, so a throwaway main module
# requires Traefik and repeats its replace (Containous forks) and exclude lines: without them the build resolves
# the upstream modules Traefik does not compile against.
echo "building traefik v${TRAEFIK_VERSION} from the Go module proxy (first time only, six to twenty minutes)..." >&2
cd "$work"
go mod init vaultcert.local/traefik >/dev/null 2>&1
gomod=$(go mod download -json "${module}@v${TRAEFIK_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
[[ -f "$gomod" ]] || { echo "traefik.sh: cannot download ${module}@v${TRAEFIK_VERSION}" >&2; exit 1; }
{
  echo "require ${module} v${TRAEFIK_VERSION}"
  # Both the one-line form (`replace a => b v`) and the block form (`replace (` ... `)`) are copied, each line
  # prefixed with its directive.
  awk '
    /^(replace|exclude)[ \t]*\($/ { block = $1; next }
    block != "" && /^\)/          { block = ""; next }
    block != "" && NF > 0 && $1 !~ /^\/\// { sub(/^[ \t]+/, ""); print block " " $0; next }
    /^(replace|exclude)[ \t]/     { print }
  ' "$gomod"
} >> go.mod

ldflags="-s -w -X ${module}/pkg/version.Version=v${TRAEFIK_VERSION} -X ${module}/pkg/version.BuildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
go get "${module}/cmd/traefik@v${TRAEFIK_VERSION}" >&2
# Build into the work directory first so an interrupted build never leaves a half-written binary in the cache.
go build -trimpath -ldflags "$ldflags" -o "$work/traefik" "${module}/cmd/traefik"
mv "$work/traefik" "$cache/traefik"

"$cache/traefik" version >&2
echo "$cache/traefik"

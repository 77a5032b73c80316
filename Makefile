# vaultcert Makefile. `make help` lists the targets.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

export GOFLAGS ?= -mod=mod
export GOTOOLCHAIN ?= local
CONTROLLER_GEN := go tool controller-gen
IMG ?= vaultcert:dev
HELM_VERSION ?= v3.22.0
BIN := $(CURDIR)/bin
# Tests run against a real kube-apiserver + etcd; hack/envtest-assets.sh provides them (built once, cached).
ENVTEST_ASSETS = $(shell hack/envtest-assets.sh)
TEST_TIMEOUT ?= 15m
FUZZTIME ?= 5s

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: generate
generate: ## Generate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...

.PHONY: manifests
manifests: ## Generate CRDs and RBAC, and copy the CRDs into the Helm chart.
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=vaultcert-manager paths=./controllers/... output:rbac:artifacts:config=config/rbac
	@if [ -d charts/vaultcert ]; then mkdir -p charts/vaultcert/crds && cp config/crd/bases/*.yaml charts/vaultcert/crds/; fi

.PHONY: fmt
fmt: ## gofmt the tree.
	gofmt -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## go vet.
	go vet ./...

.PHONY: verify
verify: generate manifests vet ## Fail when generated code, CRDs or chart CRDs are stale, or go vet / gofmt complain.
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	@git diff --exit-code -- api config charts || { echo "generated files are stale: run 'make generate manifests' and commit"; exit 1; }
	@test -z "$$(git status --porcelain --untracked-files=all -- api config charts)" || { echo "untracked generated files:"; git status --porcelain -- api config charts; exit 1; }

.PHONY: build
build: ## Build bin/vaultcert.
	go build -trimpath -o $(BIN)/vaultcert .

.PHONY: envtest
envtest: ## Provide kube-apiserver, etcd and kubectl (built from the Go module proxy the first time).
	@hack/envtest-assets.sh

.PHONY: test
test: ## Unit, Key Vault (fake) and envtest integration tests, plus a short fuzz run.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go test -timeout $(TEST_TIMEOUT) ./...
	$(MAKE) fuzz FUZZTIME=$(FUZZTIME)

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 5s; e.g. make fuzz FUZZTIME=5m).
	@for target in $$(go test -list '^Fuzz' ./internal/pki/ | grep '^Fuzz'); do \
		echo "fuzz $$target"; go test ./internal/pki/ -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME); \
	done

.PHONY: demo
demo: build ## Local control plane + fake Key Vault + the real binary; proves the Secrets with TLS handshakes.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go run ./hack/demo --binary $(BIN)/vaultcert $(DEMO_ARGS)

.PHONY: fakevault
fakevault: ## Run the fake Key Vault on its own (admin API under /admin/).
	go run ./hack/fakevault $(FAKEVAULT_ARGS)

.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build -t $(IMG) .

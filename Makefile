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
# A count, not a duration: go's fuzz coordinator can fail a duration run with a bare
# "context deadline exceeded" when the clock runs out mid-execution (golang/go#75804),
# which a loaded CI machine hits; a count has no deadline to race.
FUZZTIME ?= 150000x

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: generate
generate: ## Generate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...

.PHONY: manifests
manifests: ## Generate CRDs and RBAC, and copy the CRDs into the Helm chart.
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=vaultcert-manager paths="{./controllers/...,./internal/connection/...}" output:rbac:artifacts:config=config/rbac
	@if [ -d charts/vaultcert ]; then mkdir -p charts/vaultcert/crds && cp config/crd/bases/*.yaml charts/vaultcert/crds/; fi

.PHONY: fmt
fmt: ## gofmt the tree.
	gofmt -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## go vet (the root module and hack/cluster's own).
	go vet ./...
	cd hack/cluster && go vet ./...

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
	cd hack/cluster && go test ./...
	$(MAKE) fuzz FUZZTIME=$(FUZZTIME)

.PHONY: fuzz
# go test minimizes every new corpus entry for up to 60s by default, which ate
# whole short runs (about ten executions per target); a count (FUZZMINIMIZETIME,
# default 1000x) bounds it and still shrinks crashers. The summary reads go
# test's last "execs:" line per target.
fuzz: ## Run each fuzz target FUZZTIME (default 150000x executions; e.g. make fuzz FUZZTIME=5000000x or 5m) and print its executions.
	@targets=$$(go test -list '^Fuzz' ./internal/pki/ | grep '^Fuzz'); \
	log=$$(mktemp); trap 'rm -f "$$log"' EXIT; summary=""; \
	for target in $$targets; do \
		echo "fuzz $$target"; \
		go test ./internal/pki/ -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) \
			-fuzzminimizetime $(or $(FUZZMINIMIZETIME),1000x) 2>&1 | tee "$$log"; \
		summary+="$$(sed -n 's/^fuzz: elapsed: \([^,]*\), execs: \([0-9]*\) .*/'"$$target"': \2 execs in \1/p' "$$log" | tail -n 1)"$$'\n'; \
	done; \
	printf '\nfuzz summary:\n%s' "$$summary"

.PHONY: demo
demo: build ## Local control plane + fake Key Vault + the real binary; proves the Secrets with TLS handshakes.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go run ./hack/demo --binary $(BIN)/vaultcert $(DEMO_ARGS)

.PHONY: e2e-ingress
e2e-ingress: build ## A real Traefik (Ingress and Gateway API) serves vaultcert's Secrets, rotation included; the first run builds Traefik (hack/traefik.sh). E2E_INGRESS_ARGS="-keep".
	traefik="$$(hack/traefik.sh)"; KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go run ./hack/e2e-ingress -binary $(BIN)/vaultcert -traefik "$$traefik" $(E2E_INGRESS_ARGS)

.PHONY: cluster-up
cluster-up: ## A real single-node Kubernetes v1.36.3 cluster on this machine (root; binaries built once): eval "$$(make -s cluster-up)".
	@hack/cluster/up.sh

.PHONY: cluster-down
cluster-down: ## Stop the local cluster, remove every trace of it, and check that nothing is left.
	hack/cluster/down.sh
	hack/cluster/check-clean.sh

.PHONY: cluster-images
cluster-images: ## vaultcert:dev, the pause image, the fake vault and the e2e workload as image tarballs without Docker; imported when the cluster is up.
	hack/cluster/images.sh

.PHONY: cluster-smoke
cluster-smoke: cluster-images ## On the local cluster: restricted pods, logs, config/default rollout, garbage collection, pod networking.
	hack/cluster/smoke.sh

.PHONY: e2e
e2e: ## The Helm chart on the local cluster (brought up and down unless one is up): probes, workload identity, rollouts, GC, leader failover, upgrade, uninstall.
	HELM_VERSION=$(HELM_VERSION) hack/e2e/run.sh

.PHONY: fakevault
fakevault: ## Run the fake Key Vault on its own (admin API under /admin/).
	go run ./hack/fakevault $(FAKEVAULT_ARGS)

.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build -t $(IMG) .

.PHONY: helm-lint
helm-lint: ## helm lint the chart with the default and the charts/vaultcert/ci values (installs helm into bin/ if missing).
	@test -x $(BIN)/helm || command -v helm >/dev/null || GOBIN=$(BIN) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	@helm=$$(test -x $(BIN)/helm && echo $(BIN)/helm || command -v helm); \
	$$helm lint --strict charts/vaultcert; \
	for f in charts/vaultcert/ci/*-values.yaml; do $$helm lint --strict charts/vaultcert -f $$f; done

.PHONY: helm-test
helm-test: ## Chart and kustomize tests against a local API server: lint, schema, dry runs, install, upgrade, RBAC.
	HELM_VERSION=$(HELM_VERSION) hack/helm-test.sh

.PHONY: bench
bench: build ## Benchmark (not a test): BENCH_ARGS="-n 1000 -limit 4000 -window 10s"; N VaultCertificates on the fake vault in limit mode, the real binary; see docs/benchmarks.md.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go run ./hack/bench --binary $(BIN)/vaultcert $(BENCH_ARGS)

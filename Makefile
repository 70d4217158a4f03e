# gagiteck-gateway — every target sets up what it needs from a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BUF := node_modules/.bin/buf

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,speed]'
	touch $(STAMP)

.PHONY: install
install: $(STAMP) ## Create .venv and install the gateway with its dev tools

$(BUF): package.json
	npm install --no-audit --no-fund --silent
	touch $(BUF)

.PHONY: run
run: $(STAMP) ## Start the gateway with the embedded emulator (ctrl-C stops it)
	$(VENV)/bin/gagiteck-gateway serve

.PHONY: emulator
emulator: $(STAMP) ## Start the REST emulator alone
	$(VENV)/bin/gagiteck-gateway emulator

.PHONY: redis-server
redis-server: ## Install Debian's redis-server when missing (the tests start their own)
	@command -v redis-server >/dev/null || { \
		echo "installing redis-server (Debian package) for the shared-limit tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

.PHONY: test
test: $(STAMP) redis-server ## Run the whole test suite
	$(PY) -m pytest -q

FUZZ_EXAMPLES ?= 2000
FUZZ_SUMMARY := build/fuzz-summary.jsonl

.PHONY: fuzz
fuzz: $(STAMP) ## Property-based fuzzing through the gateway (2000 examples a property, random) and its figures
	@mkdir -p build && rm -f $(FUZZ_SUMMARY)
	GATEWAY_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) GATEWAY_FUZZ_DERANDOMIZE=0 GATEWAY_FUZZ_SUMMARY=$(FUZZ_SUMMARY) \
		$(PY) -m pytest tests/fuzz -q -p no:cacheprovider -p no:logging --hypothesis-show-statistics; \
		status=$$?; $(PY) -c 'from tests.fuzz import print_summary; print_summary("$(FUZZ_SUMMARY)")'; \
		exit $$status

.PHONY: generate
generate: $(STAMP) ## Regenerate the Python stubs in generated/python
	$(PY) tools/generate.py python

.PHONY: check-generated
check-generated: $(STAMP) ## Fail when the committed stubs are stale
	$(PY) tools/generate.py python --check

.PHONY: lint
lint: $(STAMP) $(BUF) ## ruff and buf lint
	$(VENV)/bin/ruff check gateway tests tools bench
	$(VENV)/bin/ruff format --check gateway tests tools bench
	$(PY) tools/generate.py buf-lint

.PHONY: fmt
fmt: $(STAMP) ## Format the Python sources
	$(VENV)/bin/ruff format gateway tests tools bench
	$(VENV)/bin/ruff check --fix gateway tests tools bench

.PHONY: typecheck
typecheck: $(STAMP) ## mypy (strict for gateway/)
	$(VENV)/bin/mypy

.PHONY: interop
interop: $(STAMP) ## Go and Java clients (plus grpcurl, grpc-health-probe) against a real gateway
	$(PY) tests/interop/harness.py go java

.PHONY: buf-breaking
buf-breaking: $(STAMP) $(BUF) ## Fail when the contract breaks callers compared with the previous commit
	$(PY) tools/generate.py buf-breaking HEAD~1

UPSTREAM_OPENAPI ?= ../shared/upstream/deployed-openapi.json

.PHONY: check-upstream
check-upstream: $(STAMP) ## Drift between the contract and the deployed service's OpenAPI document (when present)
	@if [ -f "$(UPSTREAM_OPENAPI)" ]; then \
		$(VENV)/bin/gagiteck-gateway check-upstream --openapi "$(UPSTREAM_OPENAPI)"; \
	else echo "check-upstream: $(UPSTREAM_OPENAPI) is absent; skipped"; fi

.PHONY: ci
ci: ## What CI runs
	bash .ci/run

.PHONY: clean
clean: ## Remove the virtualenv, node_modules and caches
	rm -rf $(VENV) node_modules build .mypy_cache .ruff_cache .pytest_cache

# Tools for calling a gateway, into build/bin (`go install`, so Go is needed; GOTOOLCHAIN as
# in your environment). The versions have one home each: grpcurl and grpc-health-probe in
# tests/interop/go/tools.sh, ghz in bench/lib/tooling.py.
TOOLS_BIN := build/bin
GRPCURL_VERSION = $(shell sed -n 's/^GRPCURL_VERSION=\(v[^ ]*\).*/\1/p' tests/interop/go/tools.sh)
GRPC_HEALTH_PROBE_VERSION = $(shell sed -n 's/^GRPC_HEALTH_PROBE_VERSION=\(v[^ ]*\).*/\1/p' tests/interop/go/tools.sh)
GHZ_VERSION = $(shell sed -n 's/^GHZ = (.*"\(v[^"]*\)")$$/\1/p' bench/lib/tooling.py)
TOOLS := grpcurl=github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION) \
	grpc-health-probe=github.com/grpc-ecosystem/grpc-health-probe@$(GRPC_HEALTH_PROBE_VERSION) \
	ghz=github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION)

.PHONY: tools
tools: ## grpcurl, ghz and grpc-health-probe at pinned versions into build/bin
	@command -v go >/dev/null || { echo "make tools: needs Go on the PATH (https://go.dev/dl/)" >&2; exit 1; }
	@set -e; mkdir -p $(TOOLS_BIN); bin=$$(cd $(TOOLS_BIN) && pwd); \
	for tool in $(TOOLS); do \
		name=$${tool%%=*}; package=$${tool#*=}; version=$${package##*@}; \
		case $$version in v*) ;; *) echo "make tools: no pinned version for $$name" >&2; exit 1;; esac; \
		if [ -x "$$bin/$$name" ] && [ "$$(cat "$$bin/.$$name.version" 2>/dev/null)" = "$$version" ]; then continue; fi; \
		echo "go install $$package"; \
		GOBIN="$$bin" GOFLAGS= go install "$$package"; \
		echo "$$version" >"$$bin/.$$name.version"; \
	done
	@echo "build/bin: grpcurl $(GRPCURL_VERSION), grpc-health-probe $(GRPC_HEALTH_PROBE_VERSION), ghz $(GHZ_VERSION)"
	@echo "  e.g. build/bin/grpcurl -plaintext 127.0.0.1:50051 list (with \`make run\` in another terminal)"

# The examples of README.md and docs/ as written (tests/docs, tests/consumers): every Python
# block and the grpcurl, grpc-health-probe and ghz commands against a gateway, and a Go and a
# Java client built from docs/consumers.md alone (Go modules and Maven Central reachable).
.PHONY: doctest
doctest: $(STAMP) tools generate-java ## Run the docs' examples: Python blocks, tool commands, Go and Java clients
	GATEWAY_DOCTEST=1 $(PY) -m pytest -q -p no:cacheprovider tests/docs tests/consumers

# Go stubs and interop
.PHONY: generate-go
generate-go: $(STAMP) ## Regenerate the Go stubs module in generated/go
	bash tools/generate_go.sh

.PHONY: check-generated-go
check-generated-go: $(STAMP) ## Fail when the committed Go stubs are stale
	bash tools/generate_go.sh --check

.PHONY: interop-go
interop-go: $(STAMP) ## Run the Go interop client (and grpcurl, grpc-health-probe) against a gateway started by the harness
	$(PY) tests/interop/harness.py go

# Java stubs and interop
# protoc 4.33.5 and protoc-gen-grpc-java 1.83.1 come from Maven Central through
# generated/java/pom.xml; the jar is installed into ~/.m2 for tests/interop/java.
.PHONY: generate-java
generate-java: ## Build the Java messages and grpc-java stubs (generated/java) into ~/.m2
	@command -v mvn >/dev/null || { echo "make generate-java: needs Maven (mvn) and a JDK 11+" >&2; exit 1; }
	mvn -B -q -f generated/java/pom.xml install
	touch generated/java/target/.installed
	@echo "installed com.gagiteck:gagiteck-grpc-stubs:0.1.0-SNAPSHOT into the local Maven repository (docs/consumers.md#java)"

.PHONY: interop-java
interop-java: $(STAMP) ## Run the Java interop client against a gateway started by the harness
	$(PY) tests/interop/harness.py java

# Benchmarks: the drivers are bench/*.py, their helpers bench/lib/.
# bench/run.py installs what it lacks: nginx-light and wrk (apt), ghz and protoc-gen-go
# (go install, pinned in bench/lib/tooling.py), and builds bench/vanguard. Settings: BENCH_*
# in bench/run.py's docstring (BENCH_ROUNDS, BENCH_SECONDS, BENCH_GATEWAY_VARIANTS, ...).
.PHONY: bench
bench: $(STAMP) ## Gateway (defaults and as deployed) vs direct REST, naive passthrough, vanguard-go, a bare handler; three load shapes (~9 min)
	$(PY) bench/run.py

.PHONY: bench-streaming
bench-streaming: $(STAMP) ## Streams: added time to first event, events/s, memory per idle stream
	$(PY) bench/stream_bench.py

.PHONY: bench-clients
bench-clients: $(STAMP) ## One upstream GET in a grpc.aio handler: aiohttp vs the gateway's pool
	$(PY) bench/upstream_clients.py

.PHONY: bench-profile
bench-profile: $(STAMP) ## py-spy profile of the gateway under load; top frames by own time
	$(PY) bench/profile_gateway.py

# Soak and fault run (not in CI; docs/RELIABILITY.md): SOAK_MINUTES (15 to 30), SOAK_SEED and
# SOAK_FAULT_RATE (0.01) from the environment; logs and figures in build/soak/<UTC time>/.
SOAK_MINUTES ?= 15

.PHONY: soak
soak: $(STAMP) redis-server ## Mixed load through the gateway for SOAK_MINUTES (15) with ~1% faults and a Redis restart
	$(PY) bench/soak.py --minutes $(SOAK_MINUTES)

# Deployment: the image's lock, deploy/'s manifests, and their checks (deploy/checks/).
# kustomize is built with Go into build/bin; kubernetes-validate and PyYAML join .venv
# (constraints/deploy-check.txt); checkov and pip-tools live in a venv of their own,
# build/tools-venv (constraints/tools-venv.txt), since their pins would move the gateway's.
KUSTOMIZE_VERSION := v5.7.1
KUSTOMIZE := build/bin/kustomize
TOOLS_VENV := build/tools-venv
TOOLS_VENV_STAMP := $(TOOLS_VENV)/.installed
DEPLOY_CHECK_STAMP := $(VENV)/.deploy-check-installed

.PHONY: kustomize
kustomize: ## kustomize (KUSTOMIZE_VERSION, v5.7.1) into build/bin with go install
	@command -v go >/dev/null || { echo "make kustomize: needs Go on the PATH (https://go.dev/dl/)" >&2; exit 1; }
	@set -e; mkdir -p build/bin; bin=$$(cd build/bin && pwd); \
	if [ -x "$$bin/kustomize" ] && [ "$$(cat "$$bin/.kustomize.version" 2>/dev/null)" = "$(KUSTOMIZE_VERSION)" ]; then exit 0; fi; \
	echo "go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)"; \
	GOBIN="$$bin" GOFLAGS= go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION); \
	echo "$(KUSTOMIZE_VERSION)" >"$$bin/.kustomize.version"

$(TOOLS_VENV_STAMP): constraints/tools-venv.txt
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet -r constraints/tools-venv.txt
	touch $@

$(DEPLOY_CHECK_STAMP): $(STAMP) constraints/deploy-check.txt
	$(PY) -m pip install --quiet -r constraints/deploy-check.txt
	touch $@

.PHONY: deploy-check
deploy-check: kustomize $(DEPLOY_CHECK_STAMP) $(TOOLS_VENV_STAMP) ## Render deploy/ (base, production); kubernetes-validate --strict, checkov, tests/deploy
	KUSTOMIZE=$(KUSTOMIZE) TOOLS_VENV=$(TOOLS_VENV) bash deploy/checks/manifests.sh

.PHONY: image-check
image-check: ## The Dockerfile's steps without Docker: install requirements.lock into a fresh venv, serve, health
	bash deploy/checks/image.sh

# pip-compile with hashes, for the Python of the image (3.11, Linux): pyproject's main
# dependencies, the speed extra and the build backend. Pins already in the lock are kept
# while pyproject allows them; LOCK_UPGRADE=1 moves every pin to the newest allowed.
.PHONY: lock
lock: $(TOOLS_VENV_STAMP) ## Refresh requirements.lock (pins + hashes) from pyproject.toml; LOCK_UPGRADE=1 to upgrade
	CUSTOM_COMPILE_COMMAND="make lock" PIP_FIND_LINKS= $(TOOLS_VENV)/bin/pip-compile --quiet \
		--extra speed --all-build-deps --allow-unsafe --generate-hashes --strip-extras \
		--no-emit-index-url --no-emit-find-links $(if $(LOCK_UPGRADE),--upgrade) \
		--output-file requirements.lock pyproject.toml

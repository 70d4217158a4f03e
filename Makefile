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
	mvn -B -q -f generated/java/pom.xml install
	touch generated/java/target/.installed

.PHONY: interop-java
interop-java: $(STAMP) ## Run the Java interop client against a gateway started by the harness
	$(PY) tests/interop/harness.py java

# Benchmarks: the drivers are bench/*.py, their helpers bench/lib/.
# bench/run.py installs what it lacks: nginx-light and wrk (apt), ghz and protoc-gen-go
# (go install, pinned in bench/lib/tooling.py), and builds bench/vanguard. Settings: BENCH_*
# in bench/run.py's docstring (BENCH_ROUNDS, BENCH_SECONDS, BENCH_GATEWAY_VARIANTS, ...).
.PHONY: bench
bench: $(STAMP) ## Gateway vs direct REST, naive passthrough, vanguard-go, variants: one table (~7 min)
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

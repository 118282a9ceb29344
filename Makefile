# Pulse — developer entry points. `make help` lists them.

CARGO  ?= cargo
PYTHON ?= python3
VENV   := .venv
# Checkov pins packaging<24, which pytest 9 cannot use: it gets a venv of its own.
CHECKOV_VENV := .venv-checkov

.DEFAULT_GOAL := help
KIND_CLUSTER ?= pulse
NAMESPACE    ?= monitoring
RELEASE      ?= pulse
IMAGE        ?= pulse:dev
export KIND_CLUSTER NAMESPACE RELEASE IMAGE

.PHONY: help run test lint fmt-check clippy module-cycles code-size workflows test-rust test-python python-tools deps build \
        dashboards manifests image kind-up kind-down grafana prometheus e2e load bench profile scrape-latency doctor

help: ## List targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{ \
	  text = $$2; \
	  while (match(text, /\$$\([A-Z_]+\)/)) \
	    text = substr(text, 1, RSTART - 1) ENVIRON[substr(text, RSTART + 2, RLENGTH - 3)] substr(text, RSTART + RLENGTH); \
	  printf "  %-12s %s\n", $$1, text }'

run: ## Run Pulse on :8080 with human-readable logs (Ctrl-C stops it gracefully)
	PULSE_LOG_FORMAT=text $(CARGO) run -- serve

# The Python tools install (mostly downloads) while clippy compiles; then the Rust tests, then Python's.
test: ## Everything CI runs: fmt check, clippy -D warnings, all tests
	$(MAKE) --no-print-directory -j2 --output-sync=target lint python-tools
	$(MAKE) --no-print-directory test-rust
	$(MAKE) --no-print-directory test-python

lint: fmt-check clippy module-cycles code-size workflows ## Formatting and clippy, warnings are errors; no import cycle in src/; no file over 400 lines, no function over 80; the GitHub workflows through zizmor and their schema

fmt-check:
	$(CARGO) fmt --all -- --check

# MAKEFLAGS emptied: under `make test`'s -j2, cargo would otherwise share make's two job slots with the
# pip install and compile one crate at a time.
clippy:
	MAKEFLAGS= $(CARGO) clippy --all-targets -- -D warnings

module-cycles:
	$(PYTHON) scripts/module-cycles.py

code-size:
	$(PYTHON) scripts/code-size.py

# Every GitHub workflow through zizmor (unpinned actions, excessive permissions, template injection;
# --offline: its audits that ask GitHub's API are skipped) and check-jsonschema's built-in workflow
# schema. Both come from requirements-dev.txt: under `make test`'s -j2, make installs the venv once,
# for this and for python-tools. Neither can run a workflow: what they miss is in README's "Releasing".
WORKFLOWS := $(wildcard .github/workflows/*.yaml .github/workflows/*.yml)
workflows: $(VENV)/.installed
	$(VENV)/bin/zizmor --offline --quiet $(WORKFLOWS)
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows $(WORKFLOWS)

deps: ## Check the external tools the tests use
	@command -v promtool >/dev/null || { echo "promtool missing: apt-get install prometheus (or run .ci/run)"; exit 1; }
	@command -v shellcheck >/dev/null || { echo "shellcheck missing: apt-get install shellcheck (or run .ci/run)"; exit 1; }
	@command -v prometheus-node-exporter >/dev/null || { echo "prometheus-node-exporter missing: apt-get install prometheus-node-exporter (or run .ci/run)"; exit 1; }
	@command -v npm >/dev/null || { echo "node/npm missing: apt-get install nodejs npm (or run .ci/run)"; exit 1; }
	@command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || [ -n "$$PULSE_TEST_DATABASE_URL" ] || { echo "PostgreSQL missing: apt-get install postgresql (or run .ci/run)"; exit 1; }
	@command -v redis-server >/dev/null || [ -n "$$PULSE_TEST_REDIS_URL" ] || { echo "Redis missing: apt-get install redis-server (or run .ci/run)"; exit 1; }
	@command -v chromium >/dev/null || command -v google-chrome >/dev/null || { echo "chromium missing: apt-get install chromium (or run .ci/run)"; exit 1; }

# The same command builds the binary the Python tests run (TEST_BUILD below).
# PULSE_TEST_ALL: every suite must run here (a missing PostgreSQL or promtool fails it instead of leaving
# it to `make test`, as a bare `cargo test` does); PULSE_SOAK_SECONDS: the soak test runs (60 s).
TEST_CARGO := PULSE_TEST_ALL=1 PULSE_SOAK_SECONDS=$${PULSE_SOAK_SECONDS:-60} $(CARGO) test --all-targets

test-rust: deps ## Unit and integration tests (real router, real binary, promtool, a private PostgreSQL)
	@echo "cargo test: includes a 60 s soak test (tests/integration/soak.rs; PULSE_SOAK_SECONDS=10 shortens it); a bare cargo test leaves it, the PostgreSQL suite and promtool's check to make test"
	@echo "PostgreSQL and Redis: scripts/with-postgres.sh and scripts/with-redis.sh start private servers (or use PULSE_TEST_DATABASE_URL, PULSE_TEST_REDIS_URL)"
	scripts/with-postgres.sh scripts/with-redis.sh sh -c '$(TEST_CARGO) && echo "the API suite again, on PostgreSQL" && PULSE_TEST_STORE=postgres $(CARGO) test --test integration api:: && echo "and on PostgreSQL behind the Redis cache" && PULSE_TEST_STORE=cached $(CARGO) test --test integration api::'

build:
	$(CARGO) build

$(VENV)/.installed: requirements-dev.txt
	@echo "Installing the Python test tools (requirements-dev.txt) into $(VENV)/: pytest, Helm engine, Schemathesis... (under a minute)"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	@echo "Installing Checkov (requirements-checkov.txt) into $(CHECKOV_VENV)/, a venv of its own (under a minute)"
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

# The Python tests run the `pulse` binary `cargo test` builds for tests/*.rs: after test-rust this is a
# no-op, where `cargo build` would compile pulse again (dev-dependencies enable more features). Its path
# comes from cargo's own messages, so a CARGO_TARGET_DIR is honoured; run alone, it builds what it needs.
TEST_BUILD := $(TEST_CARGO) --no-run --message-format=json-render-diagnostics | $(PYTHON) scripts/cargo-bin.py pulse

# Grafana's LogQL and TraceQL grammars, which the dashboard tests parse the Loki and Tempo queries with.
QUERY_GRAMMARS := tests/queries/node_modules/.installed
$(QUERY_GRAMMARS): tests/queries/package-lock.json
	@echo "Installing Grafana's LogQL and TraceQL grammars (tests/queries/package-lock.json) with npm ci"
	npm ci --prefix tests/queries --no-audit --no-fund --loglevel=error
	touch $@

python-tools: $(VENV)/.installed $(CHECKOV_VENV)/.installed $(QUERY_GRAMMARS)

# Two pytest workers (pytest-xdist), a test file each at a time (module fixtures are built once): the
# image's build stage (test_image.py, a cold cargo build) runs while the other files do, mostly waiting
# on servers. PYTEST_WORKERS=0 runs them in one process.
PYTEST_WORKERS ?= 2
test-python: deps python-tools ## Python checks: OpenAPI + fuzzing, the Helm chart, Checkov, the Dockerfile (lint, build stage)
	@bin=$$($(TEST_BUILD)) && echo "PULSE_BIN=$$bin" && \
	  PULSE_BIN=$$bin PULSE_TEST_ALL=1 CHECKOV=$(CHECKOV_VENV)/bin/checkov scripts/with-postgres.sh scripts/with-redis.sh \
	    $(VENV)/bin/python -m pytest -q -rs -n $(PYTEST_WORKERS) --dist loadfile tests/python

# --- chart sources ---------------------------------------------------------------------------------

dashboards: ## Copy dashboards/ (the source) into the chart, byte for byte
	rm -f charts/pulse/dashboards/*.json
	cp dashboards/*.json charts/pulse/dashboards/

manifests: dashboards $(VENV)/.installed ## Regenerate manifests/ (plain YAML) from the chart
	$(VENV)/bin/python scripts/pulsechart.py manifests > manifests/pulse.yaml

# --- image and the kind lab (need docker, kind, helm, kubectl) ------------------------------------

image: ## Build the container image $(IMAGE)
	scripts/image.sh

kind-up: ## Create/reuse a kind cluster, build and load the image, install the lab, then run pulse doctor --kube
	scripts/kind-up.sh

doctor: ## Check the lab in the current kube context (pulse doctor --kube): scraping, rules, exemplars, traces, logs, Grafana
	@bash -c 'source scripts/lib.sh && require kubectl cargo && run_doctor'

kind-down: ## Delete the kind cluster
	@command -v kind >/dev/null || { echo "error: kind is not installed: https://kind.sigs.k8s.io/"; exit 1; }
	kind delete cluster --name $(KIND_CLUSTER)

# Both check first that kubectl has a current context holding the Service: without a kubeconfig,
# kubectl would port-forward from whatever answers on localhost:8080.
grafana: ## Port-forward Grafana to http://127.0.0.1:3000 (prints the admin password)
	@bash -c 'source scripts/lib.sh && require kubectl && require_service pulse-grafana && \
	  echo "Grafana: http://127.0.0.1:3000  user admin  password $$(grafana_password)" && \
	  exec kubectl -n "$$NAMESPACE" port-forward svc/pulse-grafana 3000:80'

prometheus: ## Port-forward Prometheus to http://127.0.0.1:9090
	@bash -c 'source scripts/lib.sh && require kubectl && require_service pulse-kps-prometheus && \
	  echo "Prometheus: http://127.0.0.1:9090" && exec kubectl -n "$$NAMESPACE" port-forward svc/pulse-kps-prometheus 9090:9090'

bench: ## Benchmarks: criterion micro-benchmarks, then Pulse against bare axum (the macro benchmark table)
	$(CARGO) bench --bench telemetry
	scripts/with-postgres.sh scripts/with-redis.sh $(CARGO) bench --bench macro

profile: ## Callgrind profile of Pulse at its defaults (ENDPOINT=/status/200 REQUESTS=5000 ARGS=extra-flags); prints the report's path
	scripts/profile.sh

scrape-latency: ## Request latency with and without /metrics scraped back to back (RATE=2000 DURATION=10s PULSE_BIN=an older build)
	scripts/scrape-latency.sh

load: ## Traffic from the laptop to the lab's Pulse via a port-forward (RATE=20 DURATION=60s MIX=default)
	scripts/load.sh

e2e: ## After kind-up: helm test + the Rust e2e suite (tests/integration/e2e.rs) against the current kube context
	scripts/e2e.sh
	PULSE_E2E_NAMESPACE=$(NAMESPACE) PULSE_E2E_RELEASE=$(RELEASE) $(CARGO) test --test integration e2e:: -- --ignored --test-threads=1

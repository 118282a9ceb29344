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

.PHONY: help run test lint fmt-check clippy test-rust test-python deps build \
        dashboards manifests image kind-up kind-down grafana prometheus e2e load bench

help: ## List targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

run: ## Run Pulse on :8080 with human-readable logs (Ctrl-C stops it gracefully)
	PULSE_LOG_FORMAT=text $(CARGO) run -- serve

test: lint test-rust test-python ## Everything CI runs: fmt check, clippy -D warnings, all tests

lint: fmt-check clippy ## Formatting and clippy, warnings are errors

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --all-targets -- -D warnings

deps: ## Check the external tools the tests use
	@command -v promtool >/dev/null || { echo "promtool missing: apt-get install prometheus (or run .ci/run)"; exit 1; }
	@command -v shellcheck >/dev/null || { echo "shellcheck missing: apt-get install shellcheck (or run .ci/run)"; exit 1; }

test-rust: deps ## Unit and integration tests (real router, real binary, promtool)
	$(CARGO) test --all-targets

build:
	$(CARGO) build

$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

test-python: build $(VENV)/.installed $(CHECKOV_VENV)/.installed ## Python checks: OpenAPI + fuzzing, the Helm chart, Checkov, Dockerfile lint
	PULSE_BIN=target/debug/pulse CHECKOV=$(CHECKOV_VENV)/bin/checkov $(VENV)/bin/python -m pytest -q tests/python

# --- chart sources ---------------------------------------------------------------------------------

dashboards: ## Copy dashboards/ (the source) into the chart, byte for byte
	rm -f charts/pulse/dashboards/*.json
	cp dashboards/*.json charts/pulse/dashboards/

manifests: dashboards $(VENV)/.installed ## Regenerate manifests/ (plain YAML) from the chart
	$(VENV)/bin/python scripts/pulsechart.py manifests > manifests/pulse.yaml

# --- image and the kind lab (need docker, kind, helm, kubectl) ------------------------------------

image: ## Build the container image $(IMAGE)
	@command -v docker >/dev/null || { echo "error: docker is not installed: https://docs.docker.com/get-docker/"; exit 1; }
	docker build -t $(IMAGE) --build-arg PULSE_REVISION=$$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown) .

kind-up: ## Create/reuse a kind cluster, build and load the image, install Pulse + Prometheus + Grafana
	scripts/kind-up.sh

kind-down: ## Delete the kind cluster
	@command -v kind >/dev/null || { echo "error: kind is not installed: https://kind.sigs.k8s.io/"; exit 1; }
	kind delete cluster --name $(KIND_CLUSTER)

grafana: ## Port-forward Grafana to http://127.0.0.1:3000 (prints the admin password)
	@command -v kubectl >/dev/null || { echo "error: kubectl is not installed: https://kubernetes.io/docs/tasks/tools/"; exit 1; }
	@echo "Grafana: http://127.0.0.1:3000  user admin  password $$(kubectl -n $(NAMESPACE) get secret pulse-grafana-admin -o jsonpath='{.data.admin-password}' | base64 -d)"
	kubectl -n $(NAMESPACE) port-forward svc/pulse-grafana 3000:80

prometheus: ## Port-forward Prometheus to http://127.0.0.1:9090
	@command -v kubectl >/dev/null || { echo "error: kubectl is not installed: https://kubernetes.io/docs/tasks/tools/"; exit 1; }
	kubectl -n $(NAMESPACE) port-forward svc/pulse-kps-prometheus 9090:9090

bench: ## Benchmarks: criterion micro-benchmarks, then the macro benchmark table (about 4 minutes)
	$(CARGO) bench --bench telemetry
	$(CARGO) bench --bench macro

load: ## Traffic from the laptop to the lab's Pulse via a port-forward (RATE=20 DURATION=60s MIX=default)
	scripts/load.sh

e2e: ## After kind-up: helm test + the Rust e2e suite (tests/e2e.rs) against the current kube context
	scripts/e2e.sh
	PULSE_E2E=1 PULSE_E2E_NAMESPACE=$(NAMESPACE) PULSE_E2E_RELEASE=$(RELEASE) $(CARGO) test --test e2e -- --test-threads=1

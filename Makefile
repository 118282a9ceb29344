# Pulse — developer entry points. `make help` lists them.

CARGO  ?= cargo
PYTHON ?= python3
VENV   := .venv

.DEFAULT_GOAL := help
.PHONY: help run test lint fmt-check clippy test-rust test-python deps build

help: ## List targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

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

test-rust: deps ## Unit and integration tests (real router, real binary, promtool)
	$(CARGO) test --all-targets

build:
	$(CARGO) build

$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

test-python: build $(VENV)/.installed ## Python checks against the real binary (OpenAPI validity)
	PULSE_BIN=target/debug/pulse $(VENV)/bin/python -m pytest -q tests/python

"""Property-based fuzzing with Schemathesis against Pulse's own /openapi.json.

Every check Schemathesis has runs (tests/fuzz/schemathesis.toml lists the few
documented 5xx answers): no undocumented status, every body and header matches
the document, schema-valid input is accepted and schema-invalid input rejected,
deleted resources are gone. Bounded by a fixed example count and seed.

Schemathesis only sees answers. A bug answered with a documented status (an
internal error dressed as an injected fault) or a crash between requests would
pass it, so each run also asks Pulse itself: still running, no internal errors.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, PulseProcess

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CONFIG = ROOT / "tests" / "fuzz" / "schemathesis.toml"


def fuzz(server: PulseProcess, *selection: str) -> None:
    # One worker: with two threads, Hypothesis can call ast.parse concurrently, which CPython 3.11
    # answers with "SystemError: AST constructor recursion depth mismatch" (a runtime error in the
    # tool, seen once in CI, not a finding about Pulse).
    command = [str(SCHEMATHESIS), "--config-file", str(CONFIG), "--no-color", "run",
               f"{server.base}/openapi.json", "--workers", "1", *selection]
    if seed := os.environ.get("PULSE_FUZZ_SEED"):
        command += ["--seed", seed]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-30000:] + result.stderr[-5000:]


def assert_healthy_after_fuzzing(server: PulseProcess) -> None:
    assert server.proc.poll() is None, "pulse exited during fuzzing"
    errors = server.metric("api_errors_total", "error_type")
    assert errors.get("internal", 0) == 0, errors
    assert errors.get("validation", 0) > 0, "the fuzzer's invalid input reached the validators"


@pytest.fixture
def server():
    process = PulseProcess()
    try:
        yield process
    finally:
        process.stop()


def test_every_operation_conforms_to_the_document_under_fuzzing(server):
    # The runtime settings change fault injection for everything else: fuzzed apart.
    fuzz(server, "--exclude-operation-id", "update_runtime_settings")
    assert_healthy_after_fuzzing(server)


def test_the_runtime_settings_endpoint_survives_fuzzing(server):
    fuzz(server, "--include-operation-id", "update_runtime_settings")
    assert server.proc.poll() is None, "pulse exited during fuzzing"
    settings = server.json("/admin/runtime")
    assert 0 <= settings["fault_error_rate"] <= 1, "a rejected change left nothing behind"

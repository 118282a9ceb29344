"""Property-based fuzzing with Schemathesis against Pulse's own /openapi.json.

Every check Schemathesis has runs (tests/fuzz/schemathesis.toml lists the few
documented 5xx answers): no undocumented status, every body and header matches
the document, schema-valid input is accepted and schema-invalid input rejected,
deleted resources are gone. Bounded by a fixed example count and seed: the seed in
tests/fuzz/schemathesis.toml, or PULSE_FUZZ_SEED; each run prints the one it used.
Schemathesis runs in an empty directory and must leave nothing there but Hypothesis's content-keyed
caches (no Schemathesis cache or crash files, no example database: nothing that would make a run
depend on an earlier one, or write into the checkout).

Schemathesis only sees answers. A bug answered with a documented status (an
internal error dressed as an injected fault) or a crash between requests would
pass it, so each run also asks Pulse itself: still running, no internal errors.
"""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import ROOT, PulseProcess, seed

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CONFIG = ROOT / "tests" / "fuzz" / "schemathesis.toml"


def fuzz(server: PulseProcess, workdir: Path, *selection: str) -> None:
    fuzz_seed = seed("PULSE_FUZZ_SEED", tomllib.loads(CONFIG.read_text())["seed"], "Schemathesis")
    # One worker: with two threads, Hypothesis can call ast.parse concurrently, which CPython 3.11
    # answers with "SystemError: AST constructor recursion depth mismatch" (a runtime error in the
    # tool, seen once in CI, not a finding about Pulse).
    command = [str(SCHEMATHESIS), "--config-file", str(CONFIG), "--no-color", "run",
               f"{server.base}/openapi.json", "--workers", "1", "--seed", fuzz_seed, *selection]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=workdir)
    assert result.returncode == 0, result.stdout[-30000:] + result.stderr[-5000:]
    # Hypothesis's own caches (Unicode tables, constants, keyed by content) may stay; its example
    # database (.hypothesis/examples) is off.
    left = sorted(str(p.relative_to(workdir)) for p in workdir.iterdir() if p.name != ".hypothesis")
    assert left == [], f"Schemathesis wrote {left}: runs would depend on earlier runs (and dirty a checkout)"
    assert not (workdir / ".hypothesis" / "examples").exists(), "Hypothesis's example database is on"


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


def test_every_operation_conforms_to_the_document_under_fuzzing(server, tmp_path):
    # The runtime settings change fault injection for everything else: fuzzed apart.
    fuzz(server, tmp_path, "--exclude-operation-id", "update_runtime_settings")
    assert_healthy_after_fuzzing(server)


def test_the_runtime_settings_endpoint_survives_fuzzing(server, tmp_path):
    fuzz(server, tmp_path, "--include-operation-id", "update_runtime_settings")
    assert server.proc.poll() is None, "pulse exited during fuzzing"
    settings = server.json("/admin/runtime")
    assert 0 <= settings["fault_error_rate"] <= 1, "a rejected change left nothing behind"

"""Fixtures: a real `pulse` process on a free loopback port, stopped by PID."""

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Pulse:
    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"

    def request(self, method: str, path: str, timeout: float = 15.0, headers: dict | None = None):
        """Returns (status, headers (names in lower case), body bytes); HTTP errors are answers too."""
        req = urllib.request.Request(self.base + path, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()

    def json(self, path: str):
        status, _, body = self.request("GET", path)
        assert status == 200, (path, status, body)
        return json.loads(body)

    def metric(self, name: str, label: str) -> dict[str, float]:
        """The samples of `name` on /metrics, keyed by the value of `label`."""
        _, _, body = self.request("GET", "/metrics")
        samples = {}
        for line in body.decode().splitlines():
            match = re.fullmatch(name + r"\{(.*)\} (\S+)", line)
            if match:
                labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match[1]))
                samples[labels.get(label, "")] = float(match[2])
        return samples


BINARY = os.environ.get("PULSE_BIN", str(ROOT / "target" / "debug" / "pulse"))

# Seeds of the randomised tests: printed by the test (shown when it fails) and at the end of the run.
SEEDS: dict[str, str] = {}


def seed(env_var: str, default: int | str, what: str) -> str:
    """The seed for `what`: `env_var` when set, else `default`; printed so any run can be repeated."""
    value = os.environ.get(env_var) or str(default)
    SEEDS[env_var] = f"{value} ({what})"
    print(f"{what}: seed {value} (repeat or change it with {env_var}=...)")
    return value


def pytest_collection_modifyitems(items):
    # The image's build stage (test_image.py, a cold cargo build of minutes) is the longest file: first,
    # so that under two workers (`make test-python`) the other files run while it builds.
    items.sort(key=lambda item: item.path.name != "test_image.py")


def pytest_sessionfinish(session):
    # Under pytest-xdist (`make test` runs two workers) each worker hands its seeds to the controller.
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["seeds"] = json.dumps(SEEDS)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    SEEDS.update(json.loads(getattr(node, "workeroutput", {}).get("seeds", "{}")))


def pytest_terminal_summary(terminalreporter):
    if SEEDS:
        terminalreporter.write_line("seeds: " + ", ".join(f"{var}={value}" for var, value in SEEDS.items()))


class PulseProcess(Pulse):
    """A `pulse` process on a fixed loopback port; `restart()` replaces it with a new process."""

    def __init__(self, port: int | None = None, env: dict[str, str] | None = None, binary: str | None = None,
                 args: list[str] | None = None):
        super().__init__(port or free_port())
        self.port = int(self.base.rsplit(":", 1)[1])
        self.env = env or {}
        self.args = args or []
        self.binary = binary or BINARY
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        # Flags win over PULSE_* variables, so the address is always ours.
        self.proc = subprocess.Popen(
            [self.binary, "--addr", f"127.0.0.1:{self.port}", "--shutdown-delay", "0s", *self.args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PULSE_KUBE": "off", **self.env},
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.request("GET", "/readyz", timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"pulse did not become ready (exit code {self.proc.poll()})")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s: never leaves a process behind."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


def fresh_database() -> str:
    """A new database on the test PostgreSQL server (`make test` starts one: scripts/with-postgres.sh,
    which sets PULSE_TEST_DATABASE_URL); its URL."""
    server = os.environ.get("PULSE_TEST_DATABASE_URL")
    assert server, "PULSE_TEST_DATABASE_URL unset: run the Python tests through `make test` (scripts/with-postgres.sh)"
    name = f"pulse_py_{os.getpid()}_{int(time.monotonic() * 1000)}"
    subprocess.run(["psql", server, "-q", "-c", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    base, _, _ = server.rpartition("/")
    return f"{base}/{name}"


def test_redis_url() -> str:
    """The test Redis server's URL (`make test` starts one: scripts/with-redis.sh, which sets
    PULSE_TEST_REDIS_URL): a private redis-server on loopback, shared by the tests of one run."""
    server = os.environ.get("PULSE_TEST_REDIS_URL")
    assert server, "PULSE_TEST_REDIS_URL unset: run the Python tests through `make test` (scripts/with-redis.sh)"
    return server


test_redis_url.__test__ = False  # a helper, not a test pytest should collect


@pytest.fixture(scope="session")
def pulse():
    server = PulseProcess()
    try:
        yield server
    finally:
        server.stop()


# The chart helpers live in scripts/ (shared with `make manifests`).

sys.path.insert(0, str(ROOT / "scripts"))


def run_on_tree(script: Path, tmp_path: Path, files: dict[str, str]) -> subprocess.CompletedProcess:
    """Runs a source-tree lint of scripts/ (module-cycles.py, code-size.py) on a small `src/` made of
    `files` (relative path -> code) under `tmp_path`."""
    for name, code in files.items():
        path = tmp_path / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code)
    return subprocess.run([sys.executable, script, tmp_path / "src"], capture_output=True, text=True)

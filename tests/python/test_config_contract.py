"""The chart and the binary agree on Pulse's configuration: each default and each range is defined once.

The chart passes its `config.*` values to Pulse as PULSE_* environment variables
(templates/deployment.yaml) and values.schema.json bounds them. Checked against the real binary
(PULSE_BIN):

- defaults: every PULSE_* variable the chart sets with its default values carries the binary's own
  default as `pulse serve --help` prints it ("[default: ...]"), compared as durations or numbers where
  they are ones (the chart writes seconds and milliseconds). The two the chart sets differently on
  purpose are listed with the reason.
- ranges: for every bounded `config.*` value, the binary starts with the value at each bound of the
  schema and refuses at start (exit code 2, a message naming the flag) the value just past it, both given
  the way the chart gives them (the environment variable, in the chart's units). Where the schema sets
  no maximum, the binary accepts a very large value.
- documentation: every flag of `pulse serve --help` has a row in the flag tables of README.md and
  docs/configuration.md, naming its environment variable and its default.
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import time

import pulsechart as pc
import pytest
from conftest import BINARY, Pulse, free_port

SCHEMA = json.loads((pc.CHART / "values.schema.json").read_text())["properties"]["config"]["properties"]

# config.* key -> (the variable the chart sets, how the chart writes the value).
CONFIG = {
    "shutdownDelaySeconds": ("PULSE_SHUTDOWN_DELAY", lambda v: f"{v}s"),
    "shutdownTimeoutSeconds": ("PULSE_SHUTDOWN_TIMEOUT", lambda v: f"{v}s"),
    "maxBodyBytes": ("PULSE_MAX_BODY_BYTES", str),
    "requestTimeoutSeconds": ("PULSE_REQUEST_TIMEOUT", lambda v: f"{v}s"),
    "maxStoreBytes": ("PULSE_MAX_STORE_BYTES", str),
    "maxConcurrency": ("PULSE_MAX_CONCURRENCY", str),
    "maxConnections": ("PULSE_MAX_CONNECTIONS", str),
    "headerReadTimeoutSeconds": ("PULSE_HEADER_READ_TIMEOUT", lambda v: f"{v}s"),
    "writeTimeoutSeconds": ("PULSE_WRITE_TIMEOUT", lambda v: f"{v}s"),
    "faultErrorRate": ("PULSE_FAULT_ERROR_RATE", str),
    "faultDelayMaxMs": ("PULSE_FAULT_DELAY_MAX", lambda v: f"{v}ms"),
    "backendTimeoutSeconds": ("PULSE_BACKEND_TIMEOUT", lambda v: f"{v}s"),
    "backendMaxHops": ("PULSE_BACKEND_MAX_HOPS", str),
    "databasePoolSize": ("PULSE_DATABASE_POOL_SIZE", str),
    "databaseTimeoutSeconds": ("PULSE_DATABASE_TIMEOUT", lambda v: f"{v}s"),
}
# Variables whose chart default differs from the binary's on purpose.
ON_PURPOSE = {
    "PULSE_ADMIN_ADDR": "the chart serves the admin routes on a port of their own (adminPort) that the "
                        "Service leaves out and the NetworkPolicy closes; the binary shares --addr unless told",
    "PULSE_KUBE": "the chart creates the Role the Kubernetes features need and turns them on; the binary's "
                  "`auto` turns them on in a pod too",
}
VERY_LARGE = 2**40  # where the schema has no maximum: 1 TiB, or about 35,000 years in seconds


def clean_env() -> dict[str, str]:
    """The test's environment without PULSE_* variables (they would change defaults and --help)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}


@functools.cache
def flags() -> dict[str, dict]:
    """PULSE_* variable -> {flag, takes_value, default} from `pulse serve --help`."""
    text = subprocess.run([BINARY, "serve", "--help"], capture_output=True, text=True, check=True,
                          env=clean_env(), timeout=30).stdout
    found = {}
    for block in re.split(r"\n(?=\s{2,}(?:-\w, )?--[a-z])", text):
        option = re.match(r"\s*(?:-\w, )?--([a-z0-9-]+)( <\w+>)?", block)
        # `[env: NAME=value]`, or `[env: NAME]` for the flags whose values are secrets.
        env = re.search(r"\[env: (\w+)[=\]]", block)
        if option and env:
            default = re.search(r"\[default: ([^\]]*)\]", block)
            found[env[1]] = {"flag": "--" + option[1], "takes_value": bool(option[2]),
                             "default": default[1] if default else None}
    assert len(found) > 10, f"could not read the options of `pulse serve --help`:\n{text}"
    return found

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def seconds(text: str) -> float | None:
    """A duration such as `5s`, `250ms` or `1m 30s`, in seconds; None when it is not one."""
    parts = text.split()
    matches = [_DURATION.fullmatch(p) for p in parts]
    if not parts or not all(matches):
        return None
    return sum(float(m[1]) * _UNIT[m[2]] for m in matches)


def same_setting(chart: str, binary: str) -> bool:
    if (a := seconds(chart)) is not None and (b := seconds(binary)) is not None:
        return abs(a - b) < 1e-9
    try:
        return float(chart) == float(binary)
    except ValueError:
        return chart == binary


def chart_env(values: dict | None = None) -> dict[str, str]:
    """The PULSE_* variables (with a value) of the Pulse container, rendered with these values."""
    objects = pc.render_objects(values or {}, name="pulse", namespace="monitoring")
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"
                     and o["metadata"]["labels"].get("app.kubernetes.io/component") == "server"]  # not loadgen, redis
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    return {e["name"]: e["value"] for e in env if e["name"].startswith("PULSE_") and "value" in e}


# --- defaults -----------------------------------------------------------------------------------

def test_the_chart_sets_only_variables_the_binary_reads():
    assert sorted(set(chart_env()) - set(flags())) == []


@pytest.mark.parametrize("var", sorted(set(chart_env()) - set(ON_PURPOSE)))
def test_the_chart_default_is_the_binary_default(var):
    chart = chart_env()[var]
    flag = flags()[var]
    # A switch (no value) defaults to false; clap prints no default for it.
    binary = flag["default"] if flag["takes_value"] else (flag["default"] or "false")
    assert binary is not None, f"{flag['flag']} has no default, the chart sets {var}={chart}"
    assert same_setting(chart, binary), f"{var}: the chart's default is {chart!r}, {flag['flag']}'s is {binary!r}"


def test_the_deliberate_differences_still_differ():
    env = chart_env()
    for var in ON_PURPOSE:
        assert var in env and var in flags(), f"{var} is no longer set: drop it from ON_PURPOSE"
        assert not same_setting(env[var], flags()[var]["default"] or ""), f"{var} now agrees: drop it from ON_PURPOSE"


# --- the cache ----------------------------------------------------------------------------------

CACHE_ON = {"postgresql": {"enabled": True}, "redis": {"enabled": True}, "cache": {"timeout": "50ms"}}


def test_the_cache_variables_are_ones_the_binary_reads_and_the_ttl_default_is_its_own():
    """With the bundled Redis (and a cache timeout set), every PULSE_* variable the chart adds is one the
    binary reads (--redis-url, --cache-ttl, --cache-timeout), and cache.ttl's default is --cache-ttl's."""
    env = chart_env(CACHE_ON)
    assert {"PULSE_REDIS_URL", "PULSE_CACHE_TTL", "PULSE_CACHE_TIMEOUT"} <= set(env)
    assert sorted(set(env) - set(flags())) == []
    binary = flags()["PULSE_CACHE_TTL"]["default"]
    assert binary is not None and same_setting(env["PULSE_CACHE_TTL"], binary), \
        f"cache.ttl's default is {env['PULSE_CACHE_TTL']!r}, --cache-ttl's is {binary!r}"


# --- ranges -------------------------------------------------------------------------------------

def test_every_bounded_config_value_is_covered():
    bounded = {k for k, s in SCHEMA.items() if s.get("type") in {"integer", "number"}}
    assert bounded == set(CONFIG), "add the new config value to CONFIG (variable and unit)"
    for key in CONFIG:
        assert "minimum" in SCHEMA[key], f"config.{key}: the schema sets no minimum"


@pytest.mark.parametrize("key", sorted(CONFIG))
def test_the_chart_writes_the_value_as_the_table_says(key):
    var, write = CONFIG[key]
    value = SCHEMA[key]["minimum"] + (1 if SCHEMA[key]["type"] == "integer" else 0.5)
    assert chart_env({"config": {key: value}})[var] == write(value)


def range_cases():
    for key, (var, write) in CONFIG.items():
        schema = SCHEMA[key]
        step = 1 if schema["type"] == "integer" else 1e-6
        low = schema["minimum"]
        yield pytest.param(key, write(low), True, id=f"{key}={low} accepted")
        yield pytest.param(key, write(low - step), False, id=f"{key}={low - step} refused")
        if "maximum" in schema:
            high = schema["maximum"]
            yield pytest.param(key, write(high), True, id=f"{key}={high} accepted")
            yield pytest.param(key, write(high + step), False, id=f"{key}={high + step} refused")
        else:
            yield pytest.param(key, write(VERY_LARGE), True, id=f"{key}={VERY_LARGE} accepted (no maximum)")


def start(var: str, value: str) -> tuple[subprocess.Popen, Pulse]:
    """`pulse serve` configured through the environment, as the chart does, on a free loopback port."""
    port = free_port()
    env = {**clean_env(), "PULSE_ADDR": f"127.0.0.1:{port}", "PULSE_KUBE": "off", "PULSE_SHUTDOWN_DELAY": "0s",
           var: value}
    proc = subprocess.Popen([BINARY, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return proc, Pulse(port)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM; a second one (exits at once) if the shutdown delay is long; SIGKILL as a last resort."""
    for sig, wait in [(signal.SIGTERM, 3), (signal.SIGTERM, 5)]:
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                pass
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def ready(proc: subprocess.Popen, pulse: Pulse, timeout: float = 10) -> bool:
    """True once /readyz answers 200; False when the process exits first (or never gets ready)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if pulse.request("GET", "/readyz", timeout=1)[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("key, value, accepted", list(range_cases()))
def test_the_schema_range_is_what_the_binary_accepts(key, value, accepted):
    var = CONFIG[key][0]
    flag = flags()[var]["flag"]
    proc, pulse = start(var, value)
    try:
        up = ready(proc, pulse)
    finally:
        stop(proc)
    stderr = proc.stderr.read()
    proc.stderr.close()
    if accepted:
        assert up, f"{var}={value} is inside values.schema.json's range but pulse did not start: {stderr.strip()}"
    else:
        assert not up, f"{var}={value} is outside values.schema.json's range, yet pulse started with it"
        # `--max-store-bytes 0` means "no limit" to the PostgreSQL store; without a database
        # (as here) Pulse refuses it when it builds the store (exit 1), not while parsing (2).
        # The chart's schema refuses 0 always: the chart's in-memory default must stay bounded.
        expected = 1 if (var, str(value)) == ("PULSE_MAX_STORE_BYTES", "0") else 2
        assert proc.returncode == expected, \
            f"{var}={value}: exit code {proc.returncode}, expected {expected}: {stderr.strip()}"
        first = stderr.strip().splitlines()[0] if stderr.strip() else ""
        assert flag in first, f"{var}={value}: the message does not name {flag}: {first!r}"


# --- the documented flag tables -----------------------------------------------------------------

def flag_table(doc: str) -> dict[str, tuple[str, str]]:
    """The first table of `doc` whose rows start with a flag: flag -> (environment cell, default cell)."""
    rows = {}
    for line in (pc.ROOT / doc).read_text().splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) >= 4 and (flag := re.fullmatch(r"`(--[a-z0-9-]+)`", cells[0])):
            rows.setdefault(flag[1], (cells[1], cells[2]))
        elif rows and not line.startswith("|"):
            break  # the end of the first flag table (the serve flags; `pulse load`'s come later)
    return rows


@pytest.mark.parametrize("doc", ["README.md", "docs/configuration.md"])
def test_every_serve_flag_is_in_the_documented_table_with_its_variable_and_default(doc):
    table = flag_table(doc)
    problems = []
    for var, flag in sorted(flags().items(), key=lambda item: item[1]["flag"]):
        row = table.get(flag["flag"])
        if row is None:
            problems.append(f"{flag['flag']} has no row")
            continue
        environment, default = row
        if f"`{var}`" not in environment:
            problems.append(f"{flag['flag']}: the row names {environment}, not `{var}`")
        expected = flag["default"] if flag["default"] is not None else ("false" if not flag["takes_value"] else None)
        if expected is not None and default.strip("`") != expected:
            problems.append(f"{flag['flag']}: the row's default is {default}, `pulse serve --help` says {expected!r}")
    assert problems == [], f"{doc}'s flag table and `pulse serve --help` differ:\n" + "\n".join(problems)

"""Native histograms end to end: Debian's Prometheus (2.42) with `--enable-feature=native-histograms,
exemplar-storage` scrapes a real Pulse under `pulse load` (it then asks for the protobuf exposition
first, and keeps the native kind only: 2.42 cannot keep both kinds of one scrape). The native
histogram's request rate agrees with `http_requests_total`'s, its p99 falls in the classic bucket
that holds the classic p99 (read from the text answer's classic buckets, which 2.42 did not keep), and
`query_exemplars` on the native series answers trace ids Pulse returned in `traceparent` and logged.
Every process is stopped by PID, even on failure; the whole test takes about 35 s.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import yaml
from conftest import BINARY, Pulse, free_port
from prometheus_client.parser import text_string_to_metric_families as parse_text

DURATION = "http_request_duration_seconds"
USERS = 'method="GET",route="/api/users"'
STATUS = 'method="GET",route="/status/{code}"'
LOAD_SECONDS = 20
CONCURRENCY = 4
# One native bucket of schema 3: the factor between its bounds.
NATIVE_BUCKET = 2 ** (1 / 8)


def query(port: int, promql: str, at: float) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?{urllib.parse.urlencode({'query': promql, 'time': at})}"
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)["data"]["result"]


def scalar(port: int, promql: str, at: float) -> float:
    result = query(port, promql, at)
    assert len(result) == 1, (promql, result)
    return float(result[0]["value"][1])


def exemplars(port: int, promql: str, start: float) -> dict[str, dict]:
    """trace id -> the exemplar's series labels and value."""
    params = urllib.parse.urlencode({"query": promql, "start": start, "end": time.time() + 60})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query_exemplars?{params}", timeout=5) as r:
        answer = json.load(r)
    return {e["labels"]["trace_id"]: {**series["seriesLabels"], "value": float(e["value"])}
            for series in answer["data"] for e in series["exemplars"]}


def wait(what, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = what()
            if found:
                return found
        except OSError:
            pass
        if time.monotonic() > deadline:
            return what()
        time.sleep(0.5)


def classic_p99_bucket(text: str) -> tuple[float, float]:
    """(lower, upper] of the classic bucket holding the p99 of GET /api/users, from the text answer."""
    buckets = sorted((float(s.labels["le"]), s.value) for f in parse_text(text) if f.name == DURATION
                     for s in f.samples if s.name == f"{DURATION}_bucket" and s.labels["route"] == "/api/users"
                     and s.labels["method"] == "GET")
    total = buckets[-1][1]
    lower = 0.0
    for upper, cumulative in buckets:
        if cumulative >= 0.99 * total:
            return lower, upper
        lower = upper
    raise AssertionError(buckets)


def traced(pulse: Pulse, path: str) -> str:
    """A sampled caller's request; the trace id Pulse answered in `traceparent`."""
    trace_id = secrets.token_hex(16)
    _, headers, _ = pulse.request("GET", path, headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"})
    assert headers["traceparent"].split("-")[1] == trace_id
    return trace_id


def test_prometheus_reads_the_native_histograms_of_a_loaded_pulse(tmp_path):
    binary = shutil.which("prometheus")
    assert binary, "prometheus missing: apt-get install prometheus (or run .ci/run)"
    port, prometheus_port = free_port(), free_port()
    pulse = Pulse(port)
    log = tmp_path / "pulse.log"
    processes: list[subprocess.Popen] = []
    try:
        processes.append(subprocess.Popen(
            [BINARY, "--addr", f"127.0.0.1:{port}", "--shutdown-delay", "0s"], stdout=log.open("w"),
            stderr=subprocess.DEVNULL, env={**os.environ, "PULSE_KUBE": "off"}))
        assert wait(lambda: pulse.request("GET", "/readyz", timeout=1)[0] == 200, 10), "pulse not ready"
        start = time.time()
        # The load first, Prometheus a moment later: the series' first scrape then holds a few hundred
        # requests, so rate() extrapolates the native histogram and the counter alike (2.42 stops a
        # counter's extrapolation at its zero point, a histogram's not).
        load = subprocess.Popen([BINARY, "load", "--target", pulse.base, "--mix", "users", "--rate", "100",
                                 "--concurrency", str(CONCURRENCY), "--duration", f"{LOAD_SECONDS}s",
                                 "--output", "json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        processes.append(load)
        config = {"global": {"scrape_interval": "1s"},
                  "scrape_configs": [{"job_name": "pulse", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}]}
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        processes.append(subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{prometheus_port}",
             "--enable-feature=native-histograms", "--enable-feature=exemplar-storage"],
            stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w")))
        assert wait(lambda: query(prometheus_port, 'up{job="pulse"} == 1', time.time()), 20), "no scrape"
        # Sampled requests of our own, on a route the load does not send, a scrape apart (each
        # bucket keeps its latest exemplar per scrape).
        mine = []
        for _ in range(3):
            mine.append(traced(pulse, "/status/201"))
            time.sleep(1.5)
        time.sleep(max(0.0, start + LOAD_SECONDS - 5 - time.time()))
        during = time.time()
        native_rate = scalar(prometheus_port, f"histogram_count(rate({DURATION}{{{USERS}}}[1m]))", during)
        counted_rate = scalar(prometheus_port, f"sum(rate(http_requests_total{{{USERS}}}[1m]))", during)
        native_count = scalar(prometheus_port, f"histogram_count({DURATION}{{{USERS}}})", during)
        counted = scalar(prometheus_port, f"sum(http_requests_total{{{USERS}}})", during)
        load.wait(timeout=LOAD_SECONDS + 30)
        summary = json.loads(load.stdout.read())
        time.sleep(2.5)  # the last scrapes
        end = time.time()
        _, _, text = pulse.request("GET", "/metrics")
        p99 = scalar(prometheus_port, f"histogram_quantile(0.99, rate({DURATION}{{{USERS}}}[1m]))", end)
        # 2.42 scraped protobuf and kept the native kind: no classic series of the histogram.
        assert query(prometheus_port, f"{DURATION}{{{USERS}}}", end)[0]["histogram"]
        assert not query(prometheus_port, f"{DURATION}_bucket", end)
        found = wait(lambda: set(mine) <= set(exemplars(prometheus_port, f"{DURATION}{{{STATUS}}}", start))
                     and exemplars(prometheus_port, f"{DURATION}{{{USERS}}}", start), 15)
        assert found, f"exemplars missing\n{(tmp_path / 'prometheus.log').read_text()[-2000:]}"
        of_status = exemplars(prometheus_port, f"{DURATION}{{{STATUS}}}", start)
        of_users = exemplars(prometheus_port, f"{DURATION}{{{USERS}}}", start)
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=10)

    assert summary, "pulse load printed no summary"
    print(f"rates: native {native_rate:.3f}/s, counter {counted_rate:.3f}/s; counts: native {native_count:.0f}, "
          f"counter {counted:.0f}; p99 {p99:.6f} s")
    # A [1m] window holding about 10 s of a 100/s load: rate() spreads it over the minute.
    assert native_rate > 10, native_rate
    # The same requests counted twice: within 2 % (a scrape can fall between the two records of a request).
    assert abs(native_rate - counted_rate) <= 0.02 * counted_rate, (native_rate, counted_rate)
    # In one scrape, read a moment apart: at most the requests in flight apart.
    assert abs(counted - native_count) <= CONCURRENCY, (counted, native_count)
    lower, upper = classic_p99_bucket(text.decode())
    print(f"classic p99 bucket ({lower}, {upper}]")
    # A native bucket that straddles a classic bound can put the estimate up to one native bucket past it.
    assert lower / NATIVE_BUCKET < p99 <= upper * NATIVE_BUCKET, (p99, lower, upper)
    assert set(mine) <= set(of_status), (mine, of_status)
    # The load's exemplars are requests Pulse served, sampled, and logged with their trace ids.
    logged = {json.loads(line).get("trace_id") for line in log.read_text().splitlines() if line.startswith("{")}
    assert of_users and set(of_users) <= logged, (sorted(of_users), len(logged))
    assert all(0 < e["value"] < 10 for e in of_users.values())

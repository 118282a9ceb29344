"""Exemplars end to end, with real engines: a real Pulse, scraped by the Debian Prometheus started with
the features the chart turns on (`exemplar-storage`), answers `/api/v1/query_exemplars` with the trace
ids of the requests made; the OpenMetrics body parses with the reference OpenMetrics parser
(prometheus_client) and holds the same series as the text body. (`promtool check metrics` on the text
body, which stays as it was: tests/integration/metrics.rs.)
"""

from __future__ import annotations

import json
import math
import secrets
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pulsechart as pc
import pytest
import yaml
from conftest import PulseProcess, free_port
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
                     "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
DURATION = "http_request_duration_seconds"


def get(pulse, path: str, accept: str | None = None, headers: dict | None = None):
    """(status, headers, body text) of `GET path`."""
    status, answered, body = pulse.request("GET", path, headers={**({"Accept": accept} if accept else {}),
                                                                 **(headers or {})})
    return status, answered, body.decode()


def traced(pulse: PulseProcess, path: str, sampled: bool = True) -> str:
    """Requests `path` as a sampled (or unsampled) caller's child; returns the trace id Pulse answered."""
    trace_id = secrets.token_hex(16)
    flags = "01" if sampled else "00"
    _, headers, _ = get(pulse, path, headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-{flags}"})
    answered = headers["traceparent"].split("-")[1]
    assert answered == trace_id
    return trace_id


def series_of(families) -> dict[tuple, float]:
    """(sample name, sorted labels) -> value: the series identity a scraper stores."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def test_curl_gets_the_text_format_and_prometheus_gets_openmetrics(pulse):
    status, headers, text = get(pulse, "/metrics")
    assert status == 200 and headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# EOF" not in text and " # {" not in text
    status, headers, body = get(pulse, "/metrics", accept=PROMETHEUS_ACCEPT)
    assert status == 200
    assert headers["content-type"] == "application/openmetrics-text; version=1.0.0; charset=utf-8"
    assert body.endswith("# EOF\n")
    assert "accept" in headers["vary"].lower()


def test_the_openmetrics_body_parses_and_has_the_text_bodys_series(pulse):
    for path in ("/api/users", "/status/503", "/api/users/999"):
        get(pulse, path)
    trace_id = traced(pulse, "/api/users")  # the latest of its bucket
    _, _, text = get(pulse, "/metrics")
    _, _, body = get(pulse, "/metrics", accept=PROMETHEUS_ACCEPT)
    openmetrics = list(parse_openmetrics(body))  # the reference parser: raises on what it rejects
    text_series, om_series = series_of(parse_text(text)), series_of(openmetrics)
    # Same series (name and labels). Values move between two scrapes only for the process and
    # request-counting series the scrapes themselves change; the rest must be equal. The open
    # connections are among them: the server may see the previous request's connection close
    # after the next one opens (seen on a loaded machine: 2 and 1).
    assert set(om_series) == set(text_series)
    moving = ("process_", "http_requests_in_progress", "pulse_connections_open")
    for key, value in om_series.items():
        if not key[0].startswith(moving):
            assert math.isclose(value, text_series[key]), key
    # The exemplar of the traced request sits on a bucket of its own series.
    exemplars = [(s.labels, s.exemplar) for f in openmetrics if f.name == DURATION for s in f.samples if s.exemplar]
    mine = [(labels, e) for labels, e in exemplars if e.labels["trace_id"] == trace_id]
    assert mine, f"no exemplar with trace {trace_id}"
    labels, exemplar = mine[0]
    assert labels["route"] == "/api/users" and labels["method"] == "GET"
    assert len(exemplar.labels["span_id"]) == 16 and exemplar.value <= float(labels["le"])
    assert abs(float(exemplar.timestamp) - time.time()) < 60


def test_unsampled_requests_leave_no_exemplar(pulse):
    trace_id = traced(pulse, "/api/data", sampled=False)
    _, _, body = get(pulse, "/metrics", accept=PROMETHEUS_ACCEPT)
    assert trace_id not in body


def prometheus_features() -> list[str]:
    """The Prometheus feature flags the stack chart turns on."""
    spec = pc.effective_values("stack")["kube-prometheus-stack"]["prometheus"]["prometheusSpec"]
    return spec.get("enableFeatures", [])


def test_the_chart_turns_on_exemplar_storage():
    assert "exemplar-storage" in prometheus_features()


def test_prometheus_stores_the_exemplars_of_the_requests_made(tmp_path):
    binary = shutil.which("prometheus")
    assert binary, "prometheus missing: apt-get install prometheus (or run .ci/run)"
    pulse = PulseProcess()
    config = {"global": {"scrape_interval": "1s"},
              "scrape_configs": [{"job_name": "pulse", "static_configs": [{"targets": [pulse.base.removeprefix("http://")]}]}]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    flags = [f"--enable-feature={feature}" for feature in prometheus_features()]
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", *flags],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"))
    try:
        fast = [traced(pulse, "/api/users") for _ in range(3)]
        slow = traced(pulse, "/delay/1")  # lands in the (1, 2.5] bucket
        start = time.time() - 60
        found: dict[str, dict] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            query = urllib.parse.urlencode({"query": f"{DURATION}_bucket", "start": start, "end": time.time() + 60})
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query_exemplars?{query}", timeout=5) as r:
                    answer = json.load(r)
            except OSError:
                time.sleep(0.5)
                continue
            found = {e["labels"]["trace_id"]: {**series["seriesLabels"], "value": float(e["value"])}
                     for series in answer["data"] for e in series["exemplars"]}
            if slow in found and fast[-1] in found:
                break
            time.sleep(0.5)
        assert slow in found, f"the slow request's trace is not among {sorted(found)}\n" \
                              f"{(tmp_path / 'prometheus.log').read_text()[-2000:]}"
        assert found[slow]["route"] == "/delay/{seconds}" and found[slow]["le"] == "2.5"
        assert found[slow]["value"] >= 1.0
        # Each bucket keeps its latest: the last fast request is the one /api/users shows.
        assert fast[-1] in found and found[fast[-1]]["route"] == "/api/users"
        assert set(found) <= set(fast) | {slow}, "only the requests made, all sampled"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        pulse.stop()

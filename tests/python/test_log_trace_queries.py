"""The dashboards' Loki (LogQL) and Tempo (TraceQL) queries, proven without a Loki or a Tempo.

No Loki or Tempo binary runs here, so each query is checked in the three ways that together say it
finds what Pulse emits in the lab:

- it parses with Grafana's own grammars (@grafana/lezer-logql, @grafana/lezer-traceql, pinned in
  tests/queries/package-lock.json), with the variables as a user sets them;
- every stream label a LogQL selector reads is an index label Loki makes from an OTLP resource
  attribute that the lab's collector puts on Pulse's log records, and every field its pipeline
  filters on is a field of Pulse's real access-log line (numbers where it compares numbers);
- every attribute a TraceQL query reads is on the server span or the resource of a real Pulse's OTLP
  export, decoded with the OTLP protobuf messages.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pulsechart as pc
import pytest
from conftest import BINARY, free_port
from dashboards import all_values, load_all, queries, substitute
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from test_runtime_facts import FACT

QUERIES_DIR = Path(__file__).resolve().parents[1] / "queries"
LANGUAGE = {"loki": "logql", "tempo": "traceql"}

# The resource attributes Loki's OTLP endpoint turns into index labels by default (dots become
# underscores), and those of them the lab's collector gives a Pulse log record from the pod itself:
# the container parser's (from the log file's path) and k8s_attributes' deployment name. Not
# service.name, whose source changed with the collector's version (docs/runtime-facts.md).
LOKI_INDEX_ATTRIBUTES = set(FACT["loki-otlp-index-labels"].value)
LAB_LOG_RESOURCE = set(FACT["container-parser-resource"].value) | {"k8s.deployment.name"}

# One concrete choice per variable, as a user picking a single value would send it (a route template
# with braces, which Grafana's regex format escapes).
PICKED = {"namespace": "monitoring", "job": "pulse", "pod": "pulse-7d9c-x2x4q", "route": "/api/users/{id}"}


def parse(requests: list[dict]) -> list[dict]:
    """Grafana's grammars on each {"language", "query"} (tests/queries/parse.mjs)."""
    if not (QUERIES_DIR / "node_modules").is_dir():
        pytest.fail("the query grammars are not installed: make test does it "
                    "(npm ci --prefix tests/queries)")
    done = subprocess.run(["node", str(QUERIES_DIR / "parse.mjs")], input=json.dumps(requests),
                          capture_output=True, text=True, check=True, timeout=60)
    return json.loads(done.stdout)


def dashboard_queries() -> list[tuple[str, str, str, dict]]:
    """(where, kind, query, dashboard) for every Loki and Tempo query of every dashboard."""
    return [(f"{name}: {where}", kind, query, dashboard)
            for name, dashboard in load_all().items() for kind in LANGUAGE
            for where, query in queries(dashboard, kind)]


def interpolated(picked: dict | None = None) -> list[tuple[str, str, str]]:
    """(where, kind, query) with the variables as Grafana fills them in: "All", or `picked`."""
    found = dashboard_queries()
    assert {kind for _, kind, _, _ in found} == set(LANGUAGE), "a logs and a traces panel"
    return [(where, kind, substitute(query, values=all_values(dashboard), picked=picked))
            for where, kind, query, dashboard in found]


def parsed(picked: dict | None = None) -> list[tuple[str, str, dict]]:
    found = interpolated(picked)
    answers = parse([{"language": LANGUAGE[kind], "query": query} for _, kind, query in found])
    return [(where, kind, answer) for (where, kind, _), answer in zip(found, answers, strict=True)]


# A Go string literal's escapes: what Loki and Tempo accept inside "..." (they unquote with Go's rules).
GO_ESCAPE = re.compile(r"""\\([abfnrtv\\'"]|[0-7]{3}|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})""")
STRING = re.compile(r'"((?:[^"\\]|\\.)*)"|`([^`]*)`')


@pytest.mark.parametrize("choice", ["all", "picked"])
def test_every_logs_and_traces_query_parses_with_grafanas_grammars(choice):
    for where, kind, answer in parsed(PICKED if choice == "picked" else None):
        assert answer["error"] is None, f"{where}: syntax error at offset {answer['error']}"


@pytest.mark.parametrize("choice", ["all", "picked"])
def test_every_string_is_one_loki_and_tempo_can_unquote(choice):
    """The grammars accept any backslash escape; Loki and Tempo do not (`\\/` from Grafana's regex
    format is invalid in "..."). Raw `...` strings take the escaped value as it is."""
    for where, _, query in interpolated(PICKED if choice == "picked" else None):
        for quoted, _raw in STRING.findall(query):
            rest = GO_ESCAPE.sub("", quoted)
            assert "\\" not in rest, f"{where}: an escape Go strings do not have in {quoted!r}"


def test_log_selectors_have_a_matcher_that_cannot_match_the_empty_string():
    """Loki refuses a selector whose every matcher matches "": "All" must not leave it so."""
    matcher = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|`([^`]*)`)')
    for where, kind, query in interpolated():
        if kind != "loki":
            continue
        selector = query[query.index("{") + 1:query.index("}")]
        matchers = [(op, quoted or raw) for _, op, quoted, raw in matcher.findall(selector)]
        assert matchers, where
        assert any((op == "=" and value) or (op == "=~" and not re.fullmatch(value, ""))
                   for op, value in matchers), f"{where}: {selector}"


def test_the_grammars_reject_a_broken_query():
    """The check above can fail: a query with a dangling pipe and one with a missing value do."""
    broken = parse([{"language": "logql", "query": '{service_name="pulse"} | status >= '},
                    {"language": "traceql", "query": "{ span.http.route =~ }"}])
    assert all(answer["error"] is not None for answer in broken)


def test_log_selectors_read_index_labels_the_lab_gives_pulses_log_records():
    labels = {attribute.replace(".", "_") for attribute in LOKI_INDEX_ATTRIBUTES & LAB_LOG_RESOURCE}
    for where, kind, answer in parsed():
        if kind != "loki":
            continue
        selector = {text for node, text, enclosing in answer["names"] if "Selector" in enclosing}
        assert selector and selector <= labels, f"{where}: {selector - labels}"


class Receiver(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP traces endpoint: keeps each decoded ExportTraceServiceRequest."""

    received: list = []

    def do_POST(self):  # noqa: N802 (the http.server API)
        body = self.rfile.read(int(self.headers["content-length"]))
        request = trace_service_pb2.ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.received.append(request)
        answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def emitted():
    """A real Pulse, as the chart runs it (pod identity from the downward API variables), exporting
    to a real OTLP decoder: (its access-log lines, its server spans' attributes, its resource's)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = free_port()
    env = {**os.environ, "PULSE_KUBE": "off", "OTEL_BSP_SCHEDULE_DELAY": "50",
           "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
           "POD_NAME": PICKED["pod"], "POD_NAMESPACE": PICKED["namespace"], "NODE_NAME": "node-1"}
    proc = subprocess.Popen([BINARY, "--addr", f"127.0.0.1:{port}", "--shutdown-delay", "0s"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        for path in ("/api/users", "/status/503"):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5)
            except urllib.error.HTTPError:
                pass
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
        server.shutdown()
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("message") == "request"]
    spans, resources = [], []
    for request in Receiver.received:
        for resource_spans in request.resource_spans:
            resources.append({a.key for a in resource_spans.resource.attributes})
            spans += [s for scope in resource_spans.scope_spans for s in scope.spans]
    server_spans = [{a.key for a in s.attributes} for s in spans if s.kind == s.SPAN_KIND_SERVER]
    assert len(access) == 2 and len(server_spans) == 2
    return access, server_spans, resources


def test_log_filters_read_fields_of_pulses_access_line(emitted):
    access, _, _ = emitted
    for where, kind, answer in parsed():
        if kind != "loki":
            continue
        for node, text, enclosing in answer["names"]:
            if "LabelFilter" not in enclosing:
                continue
            for line in access:
                assert text in line, f"{where}: {text!r} is not a field of {line}"
                if "NumberFilter" in enclosing or "DurationFilter" in enclosing:
                    assert isinstance(line[text], int | float), f"{where}: {text!r} is not a number"


def test_trace_queries_read_attributes_pulses_spans_have(emitted):
    _, server_spans, resources = emitted
    for where, kind, answer in parsed():
        if kind != "tempo":
            continue
        fields = [text for node, text, _ in answer["names"] if node == "AttributeField"]
        assert fields, where
        for field in fields:
            scope, _, name = field.partition(".")
            have = resources if scope == "resource" else server_spans
            assert scope in ("resource", "span") and all(name in attrs for attrs in have), f"{where}: {field}"


def test_the_slow_request_threshold_is_the_latency_alerts():
    (dashboard,) = [d for n, d in load_all().items() if n == "pulse-overview.json"]
    threshold = pc.effective_values("default")["prometheusRule"]["alerts"]["latencyP95Seconds"]
    assert float(all_values(dashboard)["slow_ms"]) == threshold * 1000

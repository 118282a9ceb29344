"""`pulse doctor` against a real Prometheus (Debian's) scraping real Pulses, and each breakage made for
real with its cause asserted: Pulse not in the scrape configuration, the wrong port, the rule file
missing, exemplar storage off, retention shorter than the SLO window, Pulse unreachable, spans not
exported.

Grafana, Tempo and Loki cannot run here. Small servers in this process answer their documented APIs
from what Pulse really emits:
- Tempo: `GET /api/traces/{id}` (https://grafana.com/docs/tempo/latest/api_docs/#query), built from
  the spans both Pulses export to it over OTLP/HTTP, decoded with the OTLP protobuf messages;
- Loki: `GET /loki/api/v1/query_range` with a `|= "text"` line filter
  (https://grafana.com/docs/loki/latest/reference/loki-http-api/#query-logs-within-a-range-of-time),
  over Pulse's own JSON log lines;
- Grafana: `GET /api/datasources`, `GET /api/datasources/uid/{uid}/health` and
  `GET /api/dashboards/uid/{uid}` behind basic authentication
  (https://grafana.com/docs/grafana/latest/developers/http_api/data_source/,
  https://grafana.com/docs/grafana/latest/developers/http_api/dashboard/); the Prometheus
  datasource's health is whether the real Prometheus answers.
The kind e2e job runs doctor against the real ones (`make e2e`).
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import BINARY, ROOT, PulseProcess, free_port
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from rules import rule_spec, write_rule_file

GRAFANA_PASSWORD = "doctor-test-password"
DASHBOARD_UIDS = {json.loads(p.read_text())["uid"] for p in (ROOT / "dashboards").glob("*.json")}


def serve(handler) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def url_of(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


class Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Tempo(Quiet):
    """OTLP/HTTP in (POST /v1/traces), Tempo's trace-by-id API out."""

    resources: dict[str, list[dict]] = {}  # trace id (hex) -> the resources of its spans

    def do_POST(self):  # noqa: N802 (the http.server API)
        request = trace_service_pb2.ExportTraceServiceRequest()
        request.ParseFromString(self.rfile.read(int(self.headers["content-length"])))
        for resource_spans in request.resource_spans:
            attributes = [{"key": a.key, "value": {"stringValue": a.value.string_value}}
                          for a in resource_spans.resource.attributes]
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.resources.setdefault(span.trace_id.hex(), []).append({"attributes": attributes})
        answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def do_GET(self):  # noqa: N802
        match = re.fullmatch(r"/api/traces/([0-9a-f]{32})", self.path)
        if not match or match[1] not in self.resources:
            return self.answer(404, {"error": "trace not found"})
        self.answer(200, {"batches": [{"resource": r, "scopeSpans": []} for r in self.resources[match[1]]]})


class Loki(Quiet):
    """query_range over the log lines in `lines`, with the one line filter doctor uses."""

    lines: list[str] = []
    deaf = False  # True: the lines never arrived (the collector cannot read them)

    def do_GET(self):  # noqa: N802
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query).get("query", [""])[0]
        wanted = re.search(r'\|= "([^"]+)"', query)
        if url.path != "/loki/api/v1/query_range" or not wanted or not re.match(r"\{.+\}", query):
            return self.answer(400, {"message": "parse error"})
        found = [[str(time.time_ns()), line] for line in list(self.lines) if wanted[1] in line and not self.deaf]
        streams = [{"stream": {"service_name": "pulse"}, "values": found}] if found else []
        self.answer(200, {"status": "success", "data": {"resultType": "streams", "result": streams}})


class Grafana(Quiet):
    prometheus = ""
    dashboards = set(DASHBOARD_UIDS)

    def do_GET(self):  # noqa: N802
        expected = "Basic " + base64.b64encode(f"admin:{GRAFANA_PASSWORD}".encode()).decode()
        if self.headers.get("authorization") != expected:
            return self.answer(401, {"message": "Unauthorized"})
        if self.path == "/api/datasources":
            return self.answer(200, [{"uid": "prometheus", "name": "Prometheus", "type": "prometheus"}])
        if self.path == "/api/datasources/uid/prometheus/health":
            try:
                urllib.request.urlopen(self.prometheus + "/api/v1/status/buildinfo", timeout=2).read()
                return self.answer(200, {"status": "OK", "message": "Successfully queried the Prometheus API."})
            except OSError as e:
                return self.answer(400, {"status": "ERROR", "message": f"Post: dial tcp: {e}"})
        match = re.fullmatch(r"/api/dashboards/uid/([\w-]+)", self.path)
        if match and match[1] in self.dashboards:
            return self.answer(200, {"dashboard": {"uid": match[1]}, "meta": {}})
        self.answer(404, {"message": "Dashboard not found"})


class LoggedPulse(PulseProcess):
    """A Pulse whose JSON log lines go to the fake Loki (PulseProcess sends them nowhere)."""

    def __init__(self, env: dict[str, str]):
        super().__init__(env=env)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--addr", f"127.0.0.1:{self.port}", "--shutdown-delay", "0s"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "PULSE_KUBE": "off", "OTEL_BSP_SCHEDULE_DELAY": "100", **self.env})
        threading.Thread(target=lambda out: [Loki.lines.append(line) for line in out],
                         args=(self.proc.stdout,), daemon=True).start()
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.request("GET", "/readyz", timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("pulse did not become ready")
            time.sleep(0.05)


class Prometheus:
    """Debian's Prometheus on a free port, scraping what `config` says, stopped by PID."""

    def __init__(self, work: Path, scrape: list[dict], *, rules: bool = True, features=("exemplar-storage",),
                 retention: str = "30d"):
        binary = shutil.which("prometheus")
        assert binary, "prometheus missing: apt-get install prometheus (or run .ci/run)"
        work.mkdir(parents=True, exist_ok=True)
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "scrape_configs": scrape}
        if rules:
            config["rule_files"] = [str(write_rule_file(rule_spec(), work / "pulse-rules.yaml"))]
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        flags = [f"--enable-feature={f}" for f in features]
        self.proc = subprocess.Popen(
            [binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", f"--storage.tsdb.retention.time={retention}", *flags],
            stdout=subprocess.DEVNULL, stderr=(work / "prometheus.log").open("w"))
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.base + "/-/ready", timeout=1).read()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def pulse_job(target: str) -> dict:
    """The scrape job the chart's ServiceMonitor becomes: job = the Service's name, discovery's labels."""
    return {"job_name": "pulse", "static_configs": [{"targets": [target], "labels": {
        "namespace": "monitoring", "pod": "pulse-0", "service": "pulse"}}]}


def doctor(*args: str, timeout: str = "30s") -> tuple[int, dict[str, dict]]:
    """Runs `pulse doctor ... --output json`: (exit code, the checks by name)."""
    result = subprocess.run([BINARY, "doctor", *args, "--timeout", timeout, "--output", "json"],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "GRAFANA_PASSWORD": GRAFANA_PASSWORD})
    assert result.stdout, result.stderr
    report = json.loads(result.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert len(checks) == len(report["checks"]), "check names are unique"
    assert all(set(c) == {"name", "status", "detail", "cause"} for c in report["checks"])
    return result.returncode, checks


def failed(checks: dict[str, dict]) -> dict[str, str]:
    return {name: c["cause"] for name, c in checks.items() if c["status"] == "fail"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A Pulse calling a backend Pulse, both exporting spans to the fake Tempo and logging to the fake
    Loki, scraped by a real Prometheus with the chart's rules; steady traffic so the rules have data."""
    tempo, loki, grafana = serve(Tempo), serve(Loki), serve(Grafana)
    otlp = {"OTEL_EXPORTER_OTLP_ENDPOINT": url_of(tempo)}
    backend = LoggedPulse({**otlp, "OTEL_SERVICE_NAME": "pulse-backend"})
    pulse = LoggedPulse({**otlp, "PULSE_BACKEND_URL": backend.base})
    prometheus = Prometheus(tmp_path_factory.mktemp("prometheus"), [pulse_job(pulse.base.removeprefix("http://"))])
    Grafana.prometheus = prometheus.base
    stop = threading.Event()

    def traffic():
        while not stop.is_set():
            for path in ("/api/users", "/status/500", "/data"):
                try:
                    pulse.request("GET", path, timeout=5)
                except OSError:
                    pass
            time.sleep(0.05)

    threading.Thread(target=traffic, daemon=True).start()
    deadline = time.monotonic() + 20
    while "1" not in urllib.request.urlopen(prometheus.base + "/api/v1/query?query=up", timeout=5).read().decode() \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        yield {"pulse": pulse, "backend": backend, "prometheus": prometheus, "tempo": url_of(tempo),
               "loki": url_of(loki), "grafana": url_of(grafana)}
    finally:
        stop.set()
        prometheus.stop()
        for server in (pulse, backend):
            server.stop()
        for server in (tempo, loki, grafana):
            server.shutdown()


def everything(lab: dict) -> list[str]:
    return ["--prometheus", lab["prometheus"].base, "--pulse", lab["pulse"].base, "--grafana", lab["grafana"],
            "--tempo", lab["tempo"], "--loki", lab["loki"], "--namespace", "monitoring"]


def test_every_check_passes_on_a_working_installation(lab):
    code, checks = doctor(*everything(lab), timeout="60s")
    assert failed(checks) == {}
    assert code == 0
    assert {c["status"] for c in checks.values()} == {"pass"}
    expected = {"pulse.ready", "pulse.request", "prometheus.reachable", "prometheus.target", "prometheus.rules",
                "prometheus.retention", "prometheus.recordings", "prometheus.exemplars", "tempo.trace",
                "loki.logs", "grafana.reachable", "grafana.datasource.prometheus"}
    expected |= {f"grafana.dashboard.{uid}" for uid in DASHBOARD_UIDS}
    assert set(checks) == expected
    assert "pulse-backend" in checks["tempo.trace"]["detail"], "the backend's spans are in the trace"
    assert "30d" in checks["prometheus.retention"]["detail"]


def test_the_table_is_for_people_and_skips_what_was_not_given(lab):
    result = subprocess.run([BINARY, "doctor", "--pulse", lab["pulse"].base, "--timeout", "5s"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^PASS\s+pulse\.ready\s", result.stdout, re.M), result.stdout
    assert re.search(r"^skip\s+prometheus\s+no --prometheus", result.stdout, re.M), result.stdout
    assert result.stdout.rstrip().endswith("skipped")


def test_bad_usage_exits_2():
    for args in ([], ["--prometheus", "localhost:9090"], ["--pulse", "http://x", "--output", "xml"]):
        result = subprocess.run([BINARY, "doctor", *args], capture_output=True, text=True, timeout=30)
        assert result.returncode == 2, (args, result.stderr)


# Each breakage, made for real, and the cause doctor must name: (Prometheus's settings, the failing
# check, words of its cause).
BREAKAGES = {
    "pulse not scraped": (dict(scrape=[]), "prometheus.target", "not in Prometheus's scrape configuration"),
    "wrong port": (dict(scrape="closed"), "prometheus.target", "connection refused"),
    "rule file missing": (dict(rules=False), "prometheus.rules", "PrometheusRule is not loaded"),
    "exemplar storage off": (dict(features=()), "prometheus.exemplars", "exemplar storage is off"),
    "retention too short": (dict(retention="7d"), "prometheus.retention", "retention 7d is shorter than the 30d"),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_each_prometheus_breakage_fails_with_its_cause(lab, breakage, tmp_path):
    settings, check, cause = BREAKAGES[breakage]
    settings = dict(settings)
    target = lab["pulse"].base.removeprefix("http://")
    scrape = settings.pop("scrape", None)
    jobs = [pulse_job(f"127.0.0.1:{free_port()}" if scrape == "closed" else target)] if scrape is None or scrape == "closed" else scrape
    prometheus = Prometheus(tmp_path, jobs, **settings)
    try:
        time.sleep(3)  # a few scrapes and rule evaluations
        code, checks = doctor("--prometheus", prometheus.base, "--pulse", lab["pulse"].base, timeout="8s")
    finally:
        prometheus.stop()
    assert code == 1
    assert checks[check]["status"] == "fail", checks[check]
    assert cause in checks[check]["cause"], checks[check]
    assert checks["pulse.ready"]["status"] == "pass"


def test_pulse_unreachable_fails_with_its_cause(lab):
    code, checks = doctor("--pulse", f"http://127.0.0.1:{free_port()}", "--prometheus", lab["prometheus"].base,
                          timeout="5s")
    assert code == 1
    assert checks["pulse.ready"]["status"] == "fail"
    assert "Pulse is unreachable" in checks["pulse.ready"]["cause"]
    assert "connection refused" in checks["pulse.ready"]["cause"].lower()


def test_spans_not_exported_fail_the_trace_check_with_pulses_own_counts(lab):
    silent = LoggedPulse({})  # no OTEL_EXPORTER_OTLP_ENDPOINT
    try:
        code, checks = doctor("--pulse", silent.base, "--tempo", lab["tempo"], timeout="4s")
    finally:
        silent.stop()
    assert code == 1
    assert "Pulse has exported no spans: set OTEL_EXPORTER_OTLP_ENDPOINT" in checks["tempo.trace"]["cause"]


def test_a_backend_that_does_not_export_is_named(lab):
    mute_backend = LoggedPulse({})
    pulse = LoggedPulse({"OTEL_EXPORTER_OTLP_ENDPOINT": lab["tempo"], "PULSE_BACKEND_URL": mute_backend.base,
                         "OTEL_SERVICE_NAME": "pulse-front"})
    try:
        code, checks = doctor("--pulse", pulse.base, "--tempo", lab["tempo"], timeout="5s")
    finally:
        pulse.stop()
        mute_backend.stop()
    assert code == 1
    assert checks["tempo.trace"]["status"] == "fail"
    assert "pulse" in checks["tempo.trace"]["cause"] and "does not export" in checks["tempo.trace"]["cause"]


def test_grafana_failures_name_their_cause(lab):
    Grafana.dashboards = DASHBOARD_UIDS - {"pulse-slo"}
    try:
        code, checks = doctor("--grafana", lab["grafana"], timeout="5s")
    finally:
        Grafana.dashboards = set(DASHBOARD_UIDS)
    assert code == 1
    (missing,) = [c for c in checks.values() if c["status"] == "fail"]
    assert "sidecar" in missing["cause"]
    result = subprocess.run([BINARY, "doctor", "--grafana", lab["grafana"], "--output", "json"],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "GRAFANA_PASSWORD": "wrong"})
    assert result.returncode == 1
    (check,) = json.loads(result.stdout)["checks"][-1:]
    assert "set GRAFANA_USER and GRAFANA_PASSWORD" in check["cause"]


def test_logs_missing_from_loki_fail_with_their_cause(lab):
    Loki.deaf = True
    try:
        code, checks = doctor("--pulse", lab["pulse"].base, "--loki", lab["loki"], timeout="4s")
    finally:
        Loki.deaf = False
    assert code == 1
    assert "/var/log/pods" in checks["loki.logs"]["cause"]

"""A real Prometheus scraping a real Pulse: every dashboard query returns data, the chart's rules load
and evaluate without errors, and an alert reacts to real traffic.

Pulse (on the test PostgreSQL, with the test Redis as its cache), Prometheus (Debian's `prometheus`
package) and node-exporter (Debian's `prometheus-node-exporter`) run on loopback ports. The scrape config is what the chart's ServiceMonitor
produces (job = Service name, port `http`, path /metrics, the namespace/pod/service labels Kubernetes
discovery adds) at a 1 s interval, and node-exporter's job is what kube-prometheus-stack's ServiceMonitor
makes of it. Container metrics exist only where a kubelet runs cAdvisor, so a fixture exporter serves
cAdvisor-shaped series for the Runtime dashboard's container panels, and Prometheus filters them through
the metric relabelings the stack chart gives the kubelet's cAdvisor ServiceMonitor (read from its values,
as the Prometheus Operator turns them into `metric_relabel_configs`). Every process is stopped by PID,
even on failure.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pulsechart as pc
import pytest
import yaml
from conftest import Pulse, PulseProcess, free_port, fresh_database, seed, test_redis_url
from dashboards import all_values, expressions, load_all, substitute
from rules import rule_spec, write_rule_file

POD = "pulse-test-0"
NAMESPACE = "monitoring"


class CadvisorFixture(BaseHTTPRequestHandler):
    """cAdvisor's series for Pulse's container, as the kubelet exposes them, advancing with time."""

    started = time.monotonic()

    def do_GET(self):  # noqa: N802 (http.server API)
        t = time.monotonic() - self.started
        cgroup = f"/kubepods.slice/kubepods-burstable.slice/{POD}/pulse"
        labels = f'namespace="{NAMESPACE}",pod="{POD}",container="pulse",id="{cgroup}"'
        body = "\n".join([
            # Series the stack's cAdvisor relabelings drop: they must not reach Prometheus.
            "# TYPE container_spec_cpu_shares gauge",
            f"container_spec_cpu_shares{{{labels}}} 51",
            "# TYPE container_memory_swap gauge",
            f"container_memory_swap{{{labels}}} 0",
            "# TYPE container_memory_rss gauge",
            'container_memory_rss{id="/system.slice/containerd.service"} 50000000',
            "# TYPE container_cpu_usage_seconds_total counter",
            f"container_cpu_usage_seconds_total{{{labels}}} {0.05 * t:.3f}",
            "# TYPE container_memory_working_set_bytes gauge",
            f"container_memory_working_set_bytes{{{labels}}} {12_000_000 + int(t) * 1000}",
            "# TYPE container_spec_memory_limit_bytes gauge",
            f"container_spec_memory_limit_bytes{{{labels}}} 134217728",
            "# TYPE container_cpu_cfs_periods_total counter",
            f"container_cpu_cfs_periods_total{{{labels}}} {int(t * 10)}",
            "# TYPE container_cpu_cfs_throttled_periods_total counter",
            f"container_cpu_cfs_throttled_periods_total{{{labels}}} {int(t)}",
            "",
        ]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def relabel_config(rule: dict) -> dict:
    """A ServiceMonitor RelabelConfig (camelCase) as the Prometheus Operator writes it into the
    scrape config (snake_case)."""
    names = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    return {names.get(key, key): value for key, value in rule.items()}


def kubelet_cadvisor_relabelings() -> list[dict]:
    """The cAdvisor ServiceMonitor's metricRelabelings the kind lab installs (the stack's values)."""
    kubelet = pc.effective_values("kind")["kube-prometheus-stack"]["kubelet"]["serviceMonitor"]
    return [relabel_config(rule) for rule in kubelet["cAdvisorMetricRelabelings"]]


def traffic(pulse: Pulse, stop: threading.Event, rng: random.Random):
    """The mix a dashboard should show: successes, 4xx, 5xx (about 1 in 8), slow requests, gauges."""
    requests = [
        ("GET", "/api/users"), ("GET", "/api/users"), ("POST", "/api/users?name=Ann&email=ann@example.com"),
        ("GET", "/api/users/1"), ("GET", "/api/users/999"), ("GET", "/api/error"),
        ("POST", "/data"), ("GET", "/data"), ("GET", "/items/42?q=test"), ("GET", "/update?users=-1"),
        ("GET", "/update?users=12"), ("GET", "/cpu?value=42.5"), ("GET", "/delay/0.6"), ("GET", "/status/503"),
        ("GET", "/no/such/path"), ("GET", "/version"),
    ]
    while not stop.is_set():
        method, path = rng.choice(requests)
        if path == "/data":
            body = json.dumps({"key": f"k{rng.randrange(50)}", "value": "x" * rng.randrange(2000)}).encode()
            req = urllib.request.Request(pulse.base + path, data=body, method=method,
                                         headers={"Content-Type": "application/json"})
            try:
                urllib.request.urlopen(req, timeout=10).read()
            except OSError:
                pass
        elif path == "/delay/0.6":
            threading.Thread(target=pulse.request, args=(method, path), daemon=True).start()
        else:
            try:
                pulse.request(method, path)
            except OSError:
                pass
        time.sleep(0.02)


def cache_hits_and_misses(pulse: Pulse) -> int:
    """Lookups the cache answers both ways: a new user read twice (a miss, then a hit), the list read
    twice (likewise), and a user that does not exist (a miss each time). Returns the user's id."""
    status, _, body = pulse.request("POST", "/api/users?name=Cache&email=cache@example.com")
    assert status == 201, (status, body)
    user = json.loads(body)["id"]
    for path in [f"/api/users/{user}", f"/api/users/{user}", "/api/users", "/api/users", "/api/users/999999"]:
        status, _, body = pulse.request("GET", path)
        assert status in (200, 404), (path, status, body)
    return user


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout}s")


class Prometheus:
    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params) -> dict:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:  # 400 carries the parse error as JSON
            return json.load(e)

    def query(self, expr: str) -> dict:
        return self.get("/api/v1/query", query=expr)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """(prometheus, pulse): Prometheus scraping its own Pulse, with the chart's rules loaded. Pulse is
    restarted once, as a crashed pod would be, so the restart annotations have something to show."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus missing: apt-get install prometheus (or run .ci/run)"
    work: Path = tmp_path_factory.mktemp("prometheus")
    write_rule_file(rule_spec(), work / "pulse-rules.yaml")

    cadvisor = ThreadingHTTPServer(("127.0.0.1", 0), CadvisorFixture)
    threading.Thread(target=cadvisor.serve_forever, daemon=True).start()

    node_exporter_binary = shutil.which("prometheus-node-exporter")
    assert node_exporter_binary, "node-exporter missing: apt-get install prometheus-node-exporter (or run .ci/run)"
    node_exporter_target = f"127.0.0.1:{free_port()}"
    node_exporter = subprocess.Popen([node_exporter_binary, f"--web.listen-address={node_exporter_target}"],
                                     stdout=subprocess.DEVNULL, stderr=(work / "node-exporter.log").open("w"))

    # The chart gives Pulse its node's name through the downward API (NODE_NAME = spec.nodeName, which
    # is the node's hostname, as node-exporter's node_uname_info reports it).
    # On PostgreSQL (a database of its own) with the Redis cache in front, so the runtime dashboard's
    # database row has data: PostgreSQL's operations, the cache's hit ratio and Redis's latency. As the
    # chart passes them: PULSE_DATABASE_URL and PULSE_REDIS_URL (--database-url, --redis-url).
    pulse = PulseProcess(env={"NODE_NAME": os.uname().nodename, "POD_NAME": POD, "POD_NAMESPACE": NAMESPACE,
                              "PULSE_DATABASE_URL": fresh_database(), "PULSE_REDIS_URL": test_redis_url(),
                              "PULSE_CACHE_TTL": "5m"})
    pulse_target = pulse.base.removeprefix("http://")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(work / "pulse-rules.yaml")],
        "scrape_configs": [
            {   # What the chart's ServiceMonitor becomes: job = Service name, plus discovery's labels.
                "job_name": "pulse",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [pulse_target], "labels": {
                    "namespace": NAMESPACE, "pod": POD, "service": "pulse", "container": "pulse",
                    "endpoint": "http"}}],
            },
            {   # kube-prometheus-stack's kubelet/cAdvisor job keeps the metrics' own labels.
                "job_name": "kubelet",
                "honor_labels": True,
                "static_configs": [{"targets": [f"127.0.0.1:{cadvisor.server_port}"]}],
                "metric_relabel_configs": kubelet_cadvisor_relabelings(),
            },
            {   # What kube-prometheus-stack's node-exporter ServiceMonitor makes of its DaemonSet's pod:
                # job from the Service's jobLabel, the node's address as instance.
                "job_name": "node-exporter",
                "static_configs": [{"targets": [node_exporter_target], "labels": {
                    "namespace": NAMESPACE, "pod": "pulse-kps-prometheus-node-exporter-x7k2p",
                    "service": "pulse-kps-prometheus-node-exporter", "endpoint": "http-metrics",
                    "container": "node-exporter"}}],
            },
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(work / "prometheus.log").open("w"))
    stop = threading.Event()
    try:
        wait_http(f"http://127.0.0.1:{port}/-/ready")
        prometheus = Prometheus(port)
        poll(lambda: prometheus.query('up{job="pulse"} == 1')["data"]["result"], 15)
        pulse.restart()
        cache_hits_and_misses(pulse)
        rng = random.Random(int(seed("PULSE_TRAFFIC_SEED", 7, "the live-Prometheus traffic mix")))
        threading.Thread(target=traffic, args=(pulse, stop, rng), daemon=True).start()
        yield prometheus, pulse
    finally:
        stop.set()
        pulse.stop()
        for process in (proc, node_exporter):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        cadvisor.shutdown()


def poll(check, timeout: float):
    """Calls `check` until it returns a truthy value or `timeout` passes; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def test_every_dashboard_query_returns_series(stack):
    prometheus, _ = stack
    queries = [(f"{name}: {where}", substitute(expr, values=all_values(dashboard)))
               for name, dashboard in load_all().items() for where, expr in expressions(dashboard)]
    assert len(queries) > 50
    pending = dict(queries)

    def settle():
        for where, expr in list(pending.items()):
            answer = prometheus.query(expr)
            assert answer["status"] == "success", f"{where}: {expr}\n{answer.get('error')}"
            result = answer["data"]["result"]
            if answer["data"]["resultType"] == "scalar" or result:
                del pending[where]
        return not pending

    poll(settle, timeout=60)
    assert pending == {}, "queries without data:\n" + "\n".join(f"{w}: {e}" for w, e in pending.items())


def test_the_cache_answers_with_hits_and_misses_and_redis_operations_are_apart(stack):
    """The cache panels' series come from real lookups: hits and misses both, and Redis's operations
    labelled apart from PostgreSQL's in the shared duration histogram."""
    prometheus, _ = stack
    results = poll(lambda: {r["metric"]["result"] for r in prometheus.query(
        'sum by (result) (pulse_cache_requests_total{job="pulse"})')["data"]["result"]} >= {"hit", "miss"}, 30)
    assert results, "the cache saw no hit and miss (is PULSE_REDIS_URL reaching Pulse?)"
    systems = poll(lambda: {r["metric"].get("db_system_name") for r in prometheus.query(
        'count by (db_system_name) (db_client_operation_duration_seconds_count{job="pulse"})')["data"]["result"]}
                   >= {"postgresql", "redis"}, 30)
    assert systems, "db_client_operation_duration_seconds must carry db_system_name postgresql and redis"


def test_variable_queries_find_the_labels(stack):
    prometheus, _ = stack
    for label, value in [("namespace", NAMESPACE), ("job", "pulse"), ("pod", POD)]:
        answer = poll(lambda: prometheus.query(f"group by ({label}) (pulse_build_info)")["data"]["result"], 30)
        assert [r["metric"].get(label) for r in answer] == [value]


def test_the_chart_rules_load_and_evaluate_healthy(stack):
    prometheus, _ = stack
    expected = {r.get("record") or r.get("alert") for g in rule_spec()["groups"] for r in g["rules"]}

    def evaluated():
        groups = prometheus.get("/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return rules if rules and all(r["lastEvaluation"] > "2000" and r["health"] != "unknown"
                                      for r in rules) else None

    rules = poll(evaluated, timeout=30)
    assert rules, "rules were not evaluated"
    assert {r["name"] for r in rules} == expected
    unhealthy = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert unhealthy == []
    sli = poll(lambda: prometheus.query("pulse:sli_error:ratio_rate5m")["data"]["result"], 30)
    assert sorted(s["metric"]["slo"] for s in sli) == ["availability", "latency"]
    assert all(s["metric"]["job"] == "pulse" and s["metric"]["namespace"] == NAMESPACE for s in sli)


def test_high_error_rate_reacts_to_real_traffic(stack):
    """About 1 request in 8 fails on purpose: HighErrorRate goes pending (it fires after 5 minutes)."""
    prometheus, _ = stack
    alerts = poll(lambda: prometheus.query('ALERTS{alertname="HighErrorRate"}')["data"]["result"], 45)
    assert alerts and alerts[0]["metric"]["alertstate"] in {"pending", "firing"}
    assert alerts[0]["metric"]["namespace"] == NAMESPACE


def test_pulse_is_up_and_its_restart_was_seen(stack):
    prometheus, _ = stack
    up = poll(lambda: prometheus.query('up{job="pulse"} == 1')["data"]["result"], 15)
    assert up and up[0]["metric"]["pod"] == POD
    restarts = poll(lambda: prometheus.query('changes(process_start_time_seconds{job="pulse"}[5m]) > 0')
                    ["data"]["result"], 15)
    assert restarts, "the restart annotation's query must see the restart"


def test_the_cadvisor_series_pass_the_stacks_relabelings_as_the_dashboard_needs(stack):
    """The stack keeps container_spec_memory_limit_bytes (the memory-vs-limit panel) while the rest of
    kube-prometheus-stack's cAdvisor drops still apply."""
    prometheus, _ = stack
    kept = poll(lambda: prometheus.query('container_spec_memory_limit_bytes{job="kubelet"}')["data"]["result"], 30)
    assert kept and kept[0]["metric"]["pod"] == POD
    for dropped in ["container_spec_cpu_shares", "container_memory_swap", 'container_memory_rss{pod=""}']:
        assert prometheus.query(dropped)["data"]["result"] == [], f"{dropped} should be dropped"
    assert poll(lambda: prometheus.query('up{job="node-exporter"} == 1')["data"]["result"], 15)

"""Every dashboard is valid Grafana 11+ dashboard JSON that follows the project's conventions."""

from __future__ import annotations

import itertools
import re

import pytest
from dashboards import QUERY_FIELDS, expressions, load_all, panels

DASHBOARDS = load_all()
EXPECTED = {"pulse-overview.json": "pulse-overview", "pulse-runtime.json": "pulse-runtime", "pulse-slo.json": "pulse-slo"}


def test_the_three_dashboards_with_stable_uids():
    assert {name: d["uid"] for name, d in DASHBOARDS.items()} == EXPECTED


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
class TestDashboard:
    def test_schema_version_is_grafana_11(self, name):
        assert DASHBOARDS[name]["schemaVersion"] >= 39  # Grafana 11.0

    def test_titles_tags_and_links(self, name):
        d = DASHBOARDS[name]
        assert d["title"].startswith("Pulse / ")
        assert "pulse" in d["tags"]
        assert any(link["type"] == "dashboards" and "pulse" in link["tags"] for link in d["links"])

    def test_panel_ids_are_unique(self, name):
        ids = [p["id"] for p in panels(DASHBOARDS[name])]
        assert len(ids) == len(set(ids))

    def test_grid_positions_fit_and_do_not_overlap(self, name):
        boxes = []
        for p in panels(DASHBOARDS[name]):
            g = p["gridPos"]
            assert all(isinstance(g[k], int) for k in "xywh"), p["title"]
            assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, p["title"]
            boxes.append((p["title"], g))
        for (a, ga), (b, gb) in itertools.combinations(boxes, 2):
            apart = (ga["x"] + ga["w"] <= gb["x"] or gb["x"] + gb["w"] <= ga["x"]
                     or ga["y"] + ga["h"] <= gb["y"] or gb["y"] + gb["h"] <= ga["y"])
            assert apart, f"{a!r} overlaps {b!r}"

    def test_datasource_is_the_variable(self, name):
        d = DASHBOARDS[name]
        (var,) = [v for v in d["templating"]["list"] if v["name"] == "datasource"]
        assert var["type"] == "datasource" and var["query"] == "prometheus"
        assert var["current"]["value"] == "prometheus"  # kube-prometheus-stack's datasource uid
        refs = [p["datasource"] for p in panels(d) if p["type"] != "row"]
        refs += [t["datasource"] for p in panels(d) for t in p.get("targets", [])]
        refs += [v["datasource"] for v in d["templating"]["list"] if v["type"] == "query"]
        refs += [a["datasource"] for a in d["annotations"]["list"] if "expr" in a]
        # Logs and traces panels read the datasource variable of their kind, defaulting to the uid the
        # stack provisions (charts/pulse-stack: `loki`, `tempo`).
        sources = {v["name"]: v for v in d["templating"]["list"] if v["type"] == "datasource"}
        for kind, (variable, _) in QUERY_FIELDS.items():
            if kind != "prometheus" and any(r["type"] == kind for r in refs):
                assert sources[variable]["query"] == kind and sources[variable]["current"]["value"] == kind
        assert refs and all(r == {"type": r["type"], "uid": "${%s}" % QUERY_FIELDS[r["type"]][0]} for r in refs)

    def test_every_panel_is_described_and_has_a_unit(self, name):
        for p in panels(DASHBOARDS[name]):
            if p["type"] == "row":
                continue
            assert p.get("description"), p["title"]
            if p["type"] not in ("table", "logs"):
                assert p["fieldConfig"]["defaults"].get("unit"), p["title"]

    def test_rates_use_the_rate_interval(self, name):
        for where, expr in expressions(DASHBOARDS[name]):
            for window in re.findall(r"\b(?:rate|irate)\([^\[]*\[([^\]]+)\]", expr):
                assert window == "$__rate_interval", f"{where}: {expr}"

    def test_queries_filter_by_the_dashboard_variables(self, name):
        variables = {v["name"] for v in DASHBOARDS[name]["templating"]["list"]}
        for where, expr in expressions(DASHBOARDS[name]):
            if where.startswith("variable") or "pulse:slo_objective:ratio" in expr and "$" not in expr:
                continue
            assert "$namespace" in expr, f"{where}: {expr}"
            if "container_" not in expr:
                assert "$job" in expr, f"{where}: {expr}"
            if "pod" in variables and "pulse:" not in expr:
                assert "$pod" in expr, f"{where}: {expr}"


def test_latency_panels_show_exemplars():
    """A latency panel's dots are the exemplars Pulse writes on http_request_duration_seconds buckets."""
    latency = [(name, p["title"], t) for name, d in DASHBOARDS.items() for p in panels(d)
               if p["type"] == "timeseries" for t in p.get("targets", [])
               if "http_request_duration_seconds_bucket" in t.get("expr", "")]
    assert latency
    for name, title, target in latency:
        assert target.get("exemplar") is True, f"{name}: {title} {target['refId']}"


def test_the_cache_panels_compute_what_their_descriptions_say(tmp_path):
    """The cache panels' PromQL on known series, in promtool: the hit ratio is hits / (hits + misses +
    errors) per entity (0, not a gap, for an entity with no hit) and overall; the latency panel reads
    Redis's operations only, and the PostgreSQL panels none of them (each expected set of series is
    exact: one more, from the other system, fails)."""
    import shutil
    import subprocess

    import yaml
    from dashboards import all_values, substitute

    runtime = DASHBOARDS["pulse-runtime.json"]
    by_title = {p["title"]: p for p in panels(runtime)}
    expr = {(title, t["refId"]): substitute(t["expr"], rate_interval="5m", values=all_values(runtime))
            for title in ["Cache hit ratio", "Cache latency", "Database operations", "Database operation p99"]
            for t in by_title[title]["targets"]}
    labels = 'job="pulse", namespace="monitoring", pod="pulse-0"'
    series = [
        # user: 6 hits, 3 misses, 1 error a minute; items: misses only.
        (f'pulse_cache_requests_total{{{labels}, entity="user", result="hit"}}', "0+60x10"),
        (f'pulse_cache_requests_total{{{labels}, entity="user", result="miss"}}', "0+30x10"),
        (f'pulse_cache_requests_total{{{labels}, entity="user", result="error"}}', "0+10x10"),
        (f'pulse_cache_requests_total{{{labels}, entity="items", result="miss"}}', "0+50x10"),
    ]
    # Redis GETs all under 1 ms; PostgreSQL SELECTs all between 0.1 and 0.25 s.
    for system, op, boundaries in [("redis", "GET", {"0.001": 1, "0.1": 1, "0.25": 1, "+Inf": 1}),
                                   ("postgresql", "SELECT", {"0.001": 0, "0.1": 0, "0.25": 1, "+Inf": 1})]:
        for le, share in boundaries.items():
            series.append((f'db_client_operation_duration_seconds_bucket{{{labels}, db_system_name="{system}", '
                           f'db_operation_name="{op}", db_collection_name="users", le="{le}"}}',
                           f"0+{100 * share}x10"))
        series.append((f'db_client_operation_duration_seconds_count{{{labels}, db_system_name="{system}", '
                       f'db_operation_name="{op}", db_collection_name="users"}}', "0+100x10"))
    tests = {"rule_files": [], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": s, "values": v} for s, v in series],
        "promql_expr_test": [
            {"expr": expr[("Cache hit ratio", "A")], "eval_time": "10m",
             "exp_samples": [{"labels": '{entity="user"}', "value": 0.6}, {"labels": '{entity="items"}', "value": 0}]},
            {"expr": expr[("Cache hit ratio", "B")], "eval_time": "10m",
             "exp_samples": [{"labels": "{}", "value": 0.4}]},
            {"expr": expr[("Cache latency", "A")], "eval_time": "10m",
             "exp_samples": [{"labels": '{db_operation_name="GET"}', "value": 0.00099}]},
            {"expr": expr[("Cache latency", "B")], "eval_time": "10m",
             "exp_samples": [{"labels": '{db_operation_name="GET"}', "value": 0.0005}]},
            {"expr": expr[("Database operations", "A")], "eval_time": "10m",
             "exp_samples": [{"labels": '{db_operation_name="SELECT", db_collection_name="users"}',
                              "value": 100 / 60}]},
            {"expr": expr[("Database operation p99", "A")], "eval_time": "10m",
             "exp_samples": [{"labels": '{db_operation_name="SELECT"}', "value": 0.2485}]},
        ]}]}
    (tmp_path / "panels.test.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    tool = shutil.which("promtool")
    assert tool, "promtool missing: apt-get install prometheus (or run .ci/run)"
    result = subprocess.run([tool, "test", "rules", "panels.test.yaml"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_database_duration_query_names_its_system():
    """db_client_operation_duration_seconds holds PostgreSQL's and the cache's Redis operations: a query
    that does not say which mixes them (the database panels read postgresql, the cache panel redis)."""
    found = {}
    for name, dashboard in DASHBOARDS.items():
        for where, expr in expressions(dashboard):
            for selector in re.findall(r"db_client_operation_duration_seconds\w*\{([^}]*)\}", expr):
                system = re.search(r'db_system_name="(\w+)"', selector)
                assert system, f"{name}: {where}: {expr}"
                found.setdefault(system[1], []).append(where)
    assert set(found) == {"postgresql", "redis"}

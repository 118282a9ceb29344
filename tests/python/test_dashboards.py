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

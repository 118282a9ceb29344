"""Reading the dashboards: panels (rows included), every PromQL expression they hold, and their
LogQL (Loki) and TraceQL (Tempo) queries."""

from __future__ import annotations

import json
import re
from pathlib import Path

DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"


def load_all() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict) -> list[dict]:
    """Every panel, including those nested in collapsed rows."""
    found = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def expressions(dashboard: dict) -> list[tuple[str, str]]:
    """(where, PromQL) for panel targets, annotations and query variables. Grafana's
    `label_values(metric, label)` becomes `group by (label) (metric)`."""
    exprs = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            if target["datasource"]["type"] == "prometheus":
                exprs.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for note in dashboard.get("annotations", {}).get("list", []):
        if "expr" in note:
            exprs.append((f"annotation {note['name']!r}", note["expr"]))
    for var in dashboard.get("templating", {}).get("list", []):
        if var["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"]["query"])
        assert match, f"unsupported variable query {var['query']['query']!r}"
        exprs.append((f"variable ${var['name']}", f"group by ({match[2]}) ({match[1]})"))
    return exprs


# The datasource variable of each query language's panels, and the field its query is in.
QUERY_FIELDS = {"prometheus": ("datasource", "expr"), "loki": ("logs", "expr"), "tempo": ("traces", "query")}


def queries(dashboard: dict, kind: str) -> list[tuple[str, str]]:
    """(where, query) of every panel target on a `kind` datasource ("loki" or "tempo")."""
    field = QUERY_FIELDS[kind][1]
    return [(f"panel {panel['title']!r} {target['refId']}", target[field])
            for panel in panels(dashboard) for target in panel.get("targets", [])
            if target["datasource"]["type"] == kind]


def all_values(dashboard: dict) -> dict[str, str]:
    """Each query variable's "All" value, and each constant's value."""
    values = {}
    for var in dashboard.get("templating", {}).get("list", []):
        if var["type"] == "query":
            values[var["name"]] = var.get("allValue", ".*")
        elif var["type"] == "constant":
            values[var["name"]] = var["query"]
    return values


def escape_regex(value: str) -> str:
    """Grafana's `${var:regex}` format of one value (its escapeRegex)."""
    return re.sub(r"[\\^$*+?.()|[\]{}/]", lambda m: "\\" + m[0], value)


def substitute(expr: str, rate_interval: str = "1m", range_: str = "5m", values: dict | None = None,
               picked: dict | None = None) -> str:
    """Grafana's variables as it interpolates them: "All" (or a constant) gives `values` raw (a custom
    all value is not escaped); a `picked` value is escaped for `${var:regex}`, raw for `$var`."""
    chosen = {"namespace": ".*", "job": ".*", "pod": ".*", "route": ".+", "slow_ms": "500"} | (values or {})
    picked = picked or {}

    def value(var: str, fmt: str | None) -> str:
        if var in picked:
            return escape_regex(picked[var]) if fmt == "regex" else picked[var]
        return chosen[var]

    for var in sorted(set(chosen) | set(picked), key=len, reverse=True):
        expr = re.sub(r"\$\{" + var + r"(?::(\w+))?\}|\$" + var + r"\b", lambda m, v=var: value(v, m[1]), expr)
    return expr.replace("$__rate_interval", rate_interval).replace("$__range", range_)

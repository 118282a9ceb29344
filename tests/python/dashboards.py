"""Reading the dashboards: panels (rows included) and every PromQL expression they hold."""

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


def substitute(expr: str, rate_interval: str = "1m", range_: str = "5m") -> str:
    """Grafana's variables with the values a user sees with "All" selected."""
    for var in ("namespace", "job", "pod"):
        expr = expr.replace(f"${var}", ".*")
    return expr.replace("$__rate_interval", rate_interval).replace("$__range", range_)

"""The PrometheusRule spec as the chart renders it, in the forms promtool and Prometheus load."""

from __future__ import annotations

import copy
from pathlib import Path

import pulsechart as pc
import yaml

RULE_TESTS = pc.ROOT / "tests" / "rules"


def rule_spec(values: dict | None = None) -> dict:
    """`spec` of the PrometheusRule rendered for release "pulse" in namespace "monitoring"."""
    objects = pc.render_objects(values or {}, name="pulse", namespace="monitoring")
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    return rule["spec"]


def alerts(spec: dict) -> list[dict]:
    return [r for g in spec["groups"] for r in g["rules"] if "alert" in r]


def write_rule_file(spec: dict, path: Path, *, annotations: bool = True) -> Path:
    """Writes a Prometheus rule file. Without annotations for `promtool test rules`, which compares
    them verbatim; they are checked separately."""
    spec = copy.deepcopy(spec)
    if not annotations:
        for rule in alerts(spec):
            rule.pop("annotations", None)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path

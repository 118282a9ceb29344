#!/usr/bin/env python3
"""Render the Pulse chart offline with the real Helm v4 engine (helm-python-sdk).

Used by the chart tests and by `make manifests`, which writes the plain-YAML install
(`manifests/pulse.yaml`) for users without Helm.

    python scripts/pulsechart.py manifests > manifests/pulse.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

import helm_python
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "pulse"
VALUE_SETS = {
    "default": None,
    "kind": CHART / "ci" / "kind-values.yaml",
    "all-on": CHART / "ci" / "all-on-values.yaml",
    "all-off": CHART / "ci" / "all-off-values.yaml",
}
# The plain manifests: no helm-test hooks (nothing runs them without Helm), no subchart.
MANIFEST_VALUES = {"tests": {"enabled": False}, "kube-prometheus-stack": {"enabled": False}}
# Apply order, as Helm would: identities and config before workloads.
KIND_ORDER = [
    "ServiceAccount", "Role", "RoleBinding", "Secret", "ConfigMap", "Service", "Deployment", "HorizontalPodAutoscaler",
    "PodDisruptionBudget", "NetworkPolicy", "Ingress", "ServiceMonitor", "PrometheusRule", "Pod",
]


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (the dashboards) as readable `|` blocks."""


def _str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def load_values(name: str) -> dict:
    path = VALUE_SETS[name]
    return yaml.safe_load(path.read_text()) if path else {}


def render(values: dict | None = None, *, name: str = "pulse", namespace: str = "monitoring") -> dict[str, str]:
    """Template path -> rendered text, as `helm template` would produce."""
    chart = helm_python.Chart.load(str(CHART))
    return chart.render(values or {}, name=name, namespace=namespace, is_install=True)


def render_objects(values: dict | None = None, **kw) -> list[dict]:
    """Every Kubernetes object the chart renders (NOTES.txt excluded)."""
    objects = []
    for path, text in render(values, **kw).items():
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def manifests() -> str:
    objects = render_objects(MANIFEST_VALUES, name="pulse")
    objects.sort(key=lambda o: (KIND_ORDER.index(o["kind"]), o["metadata"]["name"]))
    header = (
        "# Pulse for clusters without Helm: `kubectl apply -n <namespace> -f manifests/pulse.yaml`.\n"
        "# Needs the Prometheus Operator CRDs (ServiceMonitor, PrometheusRule) and a Grafana sidecar that\n"
        "# loads ConfigMaps labelled grafana_dashboard=\"1\". Generated from charts/pulse by `make manifests`\n"
        "# with the default values; do not edit by hand.\n"
    )
    body = "".join("---\n" + yaml.dump(o, Dumper=_Dumper, sort_keys=False, width=120) for o in objects)
    return header + body


if __name__ == "__main__":
    if sys.argv[1:] != ["manifests"]:
        sys.exit("usage: pulsechart.py manifests")
    sys.stdout.write(manifests())

#!/usr/bin/env python3
"""Render the Pulse charts offline with the real Helm v4 engine (helm-python-sdk).

Used by the chart tests and by `make manifests`, which writes the plain-YAML install
(`manifests/pulse.yaml`) for users without Helm.

    python scripts/pulsechart.py manifests > manifests/pulse.yaml
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path

import helm_python
import yaml

ROOT = Path(__file__).resolve().parents[1]
# The application chart (no dependencies) and the umbrella that adds the monitoring stack.
CHART = ROOT / "charts" / "pulse"
STACK = ROOT / "charts" / "pulse-stack"
# Name -> (chart, values file): the value sets the tests render, lint and validate.
VALUE_SETS = {
    "default": (CHART, None),
    "all-on": (CHART, CHART / "ci" / "all-on-values.yaml"),
    "all-off": (CHART, CHART / "ci" / "all-off-values.yaml"),
    "stack": (STACK, None),
    "kind": (STACK, STACK / "ci" / "kind-values.yaml"),
}
# The plain manifests: no helm-test hooks (nothing runs them without Helm).
MANIFEST_VALUES = {"tests": {"enabled": False}}
# Apply order, as Helm would: identities and config before workloads.
KIND_ORDER = [
    "ServiceAccount", "Role", "RoleBinding", "Secret", "ConfigMap", "Service", "Deployment", "HorizontalPodAutoscaler",
    "PodDisruptionBudget", "NetworkPolicy", "Ingress", "HTTPRoute", "ServiceMonitor", "PrometheusRule", "Pod",
]


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (the dashboards) as readable `|` blocks."""


def _str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def chart_of(value_set: str) -> Path:
    return VALUE_SETS[value_set][0]


def load_values(value_set: str) -> dict:
    path = VALUE_SETS[value_set][1]
    return yaml.safe_load(path.read_text()) if path else {}


def effective_values(value_set: str) -> dict:
    """The values a value set installs with: the chart's values.yaml with the set's file merged on
    top, as Helm merges `-f` (maps key by key, anything else replaced). What the subcharts get."""
    def merge(base: dict, over: dict) -> dict:
        for key, value in over.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merge(base[key], value)
            else:
                base[key] = value
        return base
    defaults = yaml.safe_load((chart_of(value_set) / "values.yaml").read_text()) or {}
    return merge(defaults, load_values(value_set))


_ASSEMBLED: dict[Path, Path] = {}


def assembled(chart: Path = CHART) -> Path:
    """A copy of `chart` as this repository defines it: whatever `helm dependency build` left in its
    `charts/` (downloaded subcharts, Chart.lock) is not taken, and each `file://` dependency is copied
    into the copy's `charts/` from where it points, as `helm dependency build` would. Subcharts from
    chart repositories are absent, so only this repository's templates render."""
    chart = chart.resolve()
    if chart not in _ASSEMBLED:
        work = Path(tempfile.mkdtemp(prefix=f"{chart.name}-"))
        atexit.register(shutil.rmtree, work, True)
        ignore = shutil.ignore_patterns("charts", "Chart.lock", "*.tgz")
        copy = work / chart.name
        shutil.copytree(chart, copy, ignore=ignore)
        for dependency in yaml.safe_load((chart / "Chart.yaml").read_text()).get("dependencies", []):
            repository = dependency.get("repository", "")
            if repository.startswith("file://"):
                source = (chart / repository.removeprefix("file://")).resolve()
                target = copy / "charts" / dependency["name"]
                if not target.exists():  # one copy serves every alias of a chart
                    shutil.copytree(source, target, ignore=ignore)
        _ASSEMBLED[chart] = copy
    return _ASSEMBLED[chart]


def render(values: dict | None = None, *, name: str = "pulse", namespace: str = "monitoring",
           chart: Path = CHART) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` would produce (paths start with the chart's
    name; the Pulse chart's under the umbrella with `pulse-stack/charts/pulse/`)."""
    loaded = helm_python.Chart.load(str(assembled(chart)))
    return loaded.render(values or {}, name=name, namespace=namespace, is_install=True)


def render_set(value_set: str, **kw) -> dict[str, str]:
    return render(load_values(value_set), chart=chart_of(value_set), **kw)


def objects_of(rendered: dict[str, str]) -> list[dict]:
    """Every Kubernetes object in a render (NOTES.txt excluded)."""
    objects = []
    for path, text in rendered.items():
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def render_objects(values: dict | None = None, **kw) -> list[dict]:
    """Every Kubernetes object the chart renders (NOTES.txt excluded)."""
    return objects_of(render(values, **kw))


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

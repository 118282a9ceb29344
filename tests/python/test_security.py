"""Checkov on the rendered chart: no finding but those tests/security/checkov-skips.yaml accepts.

Every value set in charts/pulse/ci plus the defaults is rendered by the real Helm engine (Pulse's
own templates; the kube-prometheus-stack subchart is upstream's to scan) and scanned by Checkov. The restricted Pod Security Standard is checked field by field in test_chart.py.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess

import pulsechart as pc
import pytest
import yaml

ROOT = pc.ROOT
SKIPS_FILE = ROOT / "tests" / "security" / "checkov-skips.yaml"
CHECKOV = os.environ.get("CHECKOV", str(ROOT / ".venv-checkov" / "bin" / "checkov"))


def skips() -> list[dict]:
    return yaml.safe_load(SKIPS_FILE.read_text())


def accepted(finding: tuple[str, str, str], skip: dict) -> bool:
    value_set, check, resource = finding
    return (check == skip["check"]
            and value_set in skip.get("values", pc.VALUE_SETS)
            and any(fnmatch.fnmatchcase(resource, p) for p in skip["resources"]))


@pytest.fixture(scope="module")
def findings(tmp_path_factory) -> tuple[list[tuple[str, str, str]], int]:
    """(value set, check id, resource) of every failed check, and how many checks passed."""
    failed, passed = [], 0
    # One directory and one run per value set: Checkov's graph checks (a pod without a
    # NetworkPolicy) would otherwise match objects of one set with another's.
    for name in pc.VALUE_SETS:
        out = tmp_path_factory.mktemp(name)
        # This repository's charts only (the Pulse chart, and under the stack the Pulse subchart):
        # the stack's downloaded subcharts are never rendered here.
        texts = [text for path, text in pc.render_set(name).items() if not path.endswith("NOTES.txt")]
        (out / "chart.yaml").write_text("\n---\n".join(texts))
        result = subprocess.run([CHECKOV, "--directory", str(out), "--framework", "kubernetes",
                                 "--output", "json", "--quiet", "--skip-download"],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode in (0, 1), result.stderr[-3000:]
        report = json.loads(result.stdout)
        for r in report if isinstance(report, list) else [report]:
            passed += r["summary"]["passed"]
            failed += [(name, f["check_id"], f["resource"]) for f in r["results"]["failed_checks"]]
    return failed, passed


def test_checkov_scanned_every_value_set(findings):
    _, passed = findings
    assert passed > 500, "Checkov ran its Kubernetes checks"


def test_no_finding_but_the_accepted_ones(findings):
    failed, _ = findings
    unexplained = sorted(f for f in failed if not any(accepted(f, s) for s in skips()))
    assert unexplained == [], "fix these, or accept them in tests/security/checkov-skips.yaml with a reason"


def test_every_accepted_finding_still_occurs_and_says_why(findings):
    failed, _ = findings
    for skip in skips():
        assert len(skip.get("reason", "").split()) >= 10, f"{skip['check']}: give the reason"
        assert any(accepted(f, skip) for f in failed), f"{skip['check']} no longer fails: remove the entry"


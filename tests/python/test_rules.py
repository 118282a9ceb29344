"""Pulse's alerts and recording rules, as rendered by the chart, checked and unit-tested by promtool."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml
from rules import RULE_TESTS, alerts, rule_spec, write_rule_file

ROOT = RULE_TESTS.parents[1]
EXPECTED_ALERTS = {
    "PulseDown", "HighErrorRate", "HighLatencyP95", "PulseSaturated",
    "PulseAvailabilityBurnRateFast", "PulseAvailabilityBurnRateSlow",
    "PulseLatencyBurnRateFast", "PulseLatencyBurnRateSlow",
    "PulseErrorBudgetExhausted", "PulseSLIAbsent", "PulseDatabaseErrors", "PulseCacheErrors",
}


def promtool(*args, cwd):
    tool = shutil.which("promtool")
    assert tool, "promtool missing: apt-get install prometheus (or run .ci/run)"
    return subprocess.run([tool, *args], capture_output=True, text=True, cwd=cwd)


def run_unit_tests(spec, tmp_path, pattern="*.test.yaml"):
    write_rule_file(spec, tmp_path / "pulse-rules.yaml", annotations=False)
    tests = sorted(RULE_TESTS.glob(pattern))
    for test in tests:
        shutil.copy(test, tmp_path / test.name)
    return promtool("test", "rules", *[t.name for t in tests], cwd=tmp_path)


def test_promtool_check_rules_accepts_the_rendered_rules(tmp_path):
    path = write_rule_file(rule_spec(), tmp_path / "rules.yaml")
    result = promtool("check", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_fires_and_stays_silent_in_promtool_unit_tests(tmp_path):
    result = run_unit_tests(rule_spec(), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_alert_has_a_firing_and_a_silent_case():
    cases: dict[str, set[str]] = {name: set() for name in EXPECTED_ALERTS}
    for test_file in RULE_TESTS.glob("*.test.yaml"):
        for test in yaml.safe_load(test_file.read_text())["tests"]:
            for check in test.get("alert_rule_test", []):
                cases.setdefault(check["alertname"], set()).add("fires" if check["exp_alerts"] else "silent")
    assert {name: kinds for name, kinds in cases.items() if kinds != {"fires", "silent"}} == {}


@pytest.mark.parametrize("values, broken", [
    # A threshold that no longer matches the tests' failures must make them fail...
    ({"prometheusRule": {"alerts": {"errorRateThreshold": 0.2}}}, "HighErrorRate"),
    ({"prometheusRule": {"alerts": {"inFlightThreshold": 20}}}, "PulseSaturated"),
    # ...and an SLO loose enough to ignore the burns too.
    ({"slo": {"availability": {"objective": 0.99}}}, "PulseAvailabilityBurnRate"),
    ({"slo": {"latency": {"objective": 0.9}}}, "PulseLatencyBurnRate"),
    # 1 % errors fit a 98 % objective: the budget is not spent.
    ({"slo": {"availability": {"objective": 0.98}}}, "PulseErrorBudgetExhausted"),
    ({"prometheusRule": {"alerts": {"sliAbsentFor": "20m"}}}, "PulseSLIAbsent"),
    ({"prometheusRule": {"alerts": {"databaseErrorsThreshold": 100}}}, "PulseDatabaseErrors"),
    # 10 % of lookups failing is under a 20 % threshold; and 5 minutes of them do not fill a 15m `for`.
    ({"prometheusRule": {"alerts": {"cacheErrorRatioThreshold": 0.2}}}, "PulseCacheErrors"),
    ({"prometheusRule": {"alerts": {"cacheErrorsFor": "15m"}}}, "PulseCacheErrors"),
])
def test_the_unit_tests_notice_changed_thresholds(values, broken, tmp_path):
    # The minute-resolution file has a firing case for each of these; the day-long file is not needed.
    result = run_unit_tests(rule_spec(values), tmp_path, "alerts.test.yaml")
    assert result.returncode != 0
    assert f"alertname: {broken}" in result.stdout + result.stderr


def test_the_expected_alerts_with_severity_and_annotations():
    rules = alerts(rule_spec())
    assert {r["alert"] for r in rules} == EXPECTED_ALERTS
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", runbooks, re.M)}
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"], rule["alert"]
        anchor = notes["runbook_url"].split("#", 1)[1]
        assert anchor == rule["alert"].lower(), rule["alert"]
        assert anchor in anchors, f"docs/runbooks.md has no section for {rule['alert']}"


def test_thresholds_come_from_values():
    spec = rule_spec({"prometheusRule": {"alerts": {"errorRateThreshold": 0.07, "latencyP95Seconds": 0.8}},
                      "slo": {"availability": {"objective": 0.995}, "latency": {"thresholdSeconds": 1}}})
    text = "\n".join(r["expr"] for g in spec["groups"] for r in g["rules"])
    assert "> 0.07" in text and "> 0.8" in text
    assert "(14.4 * (1 - 0.995))" in text
    assert 'le="1"' in text and 'le="0.5"' not in text

"""The release's scripts, run as the release workflow runs them: the version check
(scripts/release-version.py), the notes (scripts/release-notes.py) and the stack's chart repositories
(scripts/chart-repos.sh, also the lab's)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

VERSION_SCRIPT = ROOT / "scripts" / "release-version.py"
NOTES_SCRIPT = ROOT / "scripts" / "release-notes.py"
CHART_REPOS = ROOT / "scripts" / "chart-repos.sh"
CRATE_VERSION = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]


def run(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, **kw)


def tree(tmp_path: Path, crate: str, app_versions: dict[str, str]) -> Path:
    """A checkout with only what the version check reads: Cargo.toml and each chart's Chart.yaml."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "Cargo.toml").write_text(f'[package]\nname = "pulse"\nversion = "{crate}"\nedition = "2024"\n')
    for chart, app_version in app_versions.items():
        (tmp_path / "charts" / chart).mkdir(parents=True)
        (tmp_path / "charts" / chart / "Chart.yaml").write_text(
            f'apiVersion: v2\nname: {chart}\nversion: 0.3.0\n# a comment\nappVersion: "{app_version}"\n')
    return tmp_path


# --- the version check --------------------------------------------------------------------------

def test_this_checkout_releases_under_its_crate_version():
    result = run(VERSION_SCRIPT, f"v{CRATE_VERSION}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{CRATE_VERSION}\n"


def test_a_tag_that_is_not_the_crate_version_stops_the_release():
    result = run(VERSION_SCRIPT, "v9.9.9")
    assert result.returncode == 1 and result.stdout == ""
    assert f"tag v9.9.9 is not v + the crate version in Cargo.toml (v{CRATE_VERSION})" in result.stderr
    assert run(VERSION_SCRIPT, CRATE_VERSION).returncode == 1, "the tag carries a v"


def test_a_chart_whose_app_version_lags_stops_the_release(tmp_path):
    root = tree(tmp_path, "1.2.0", {"pulse": "1.2.0", "pulse-stack": "1.1.0"})
    result = run(VERSION_SCRIPT, "v1.2.0", "--root", root)
    assert result.returncode == 1
    assert "charts/pulse-stack/Chart.yaml: appVersion 1.1.0 is not the crate version 1.2.0" in result.stderr
    assert "charts/pulse/Chart.yaml" not in result.stderr


def test_the_dry_run_checks_the_charts_without_a_tag(tmp_path):
    root = tree(tmp_path, "1.2.0", {"pulse": "1.2.0", "pulse-stack": "1.2.0"})
    assert run(VERSION_SCRIPT, "--root", root).stdout == "1.2.0\n"
    root = tree(tmp_path / "lagging", "1.2.0", {"pulse": "1.0.0"})
    assert run(VERSION_SCRIPT, "--root", root).returncode == 1


def test_the_app_version_is_read_as_a_yaml_parser_reads_it():
    """The script reads Chart.yaml with a regular expression (no PyYAML on the runner)."""
    spec = importlib.util.spec_from_file_location("release_version", VERSION_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    read = module.app_versions(ROOT)
    assert set(read) == {"charts/pulse/Chart.yaml", "charts/pulse-stack/Chart.yaml"}
    for chart, app_version in read.items():
        assert app_version == str(yaml.safe_load((ROOT / chart).read_text())["appVersion"])


# --- the notes ----------------------------------------------------------------------------------

CHANGELOG = """# Changelog

## [Unreleased]

### Added
- something later

## [1.2.0] - 2026-09-01

### Added
- the page for people

### Fixed
- a bug

## 1.1.0

- older

[1.2.0]: https://github.com/pulse-observability/pulse/compare/v1.1.0...v1.2.0
[1.1.0]: https://github.com/pulse-observability/pulse/releases/tag/v1.1.0
"""


@pytest.fixture
def changelog(tmp_path) -> Path:
    path = tmp_path / "CHANGELOG.md"
    path.write_text(CHANGELOG)
    return path


def test_the_notes_are_the_versions_section_and_nothing_else(changelog):
    result = run(NOTES_SCRIPT, "1.2.0", "--changelog", changelog)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "### Added\n- the page for people\n\n### Fixed\n- a bug\n"


def test_the_last_section_leaves_out_the_link_definitions(changelog):
    assert run(NOTES_SCRIPT, "1.1.0", "--changelog", changelog).stdout == "- older\n"


def test_a_version_without_a_section_fails_with_what_to_do(changelog):
    result = run(NOTES_SCRIPT, "1.3.0", "--changelog", changelog)
    assert result.returncode == 1 and result.stdout == ""
    assert "CHANGELOG.md has no section `## [1.3.0]`" in result.stderr
    assert run(NOTES_SCRIPT, "1.2", "--changelog", changelog).returncode == 1, "1.2 is not 1.2.0"


def test_an_empty_section_fails(tmp_path):
    path = tmp_path / "CHANGELOG.md"
    path.write_text("# Changelog\n\n## [2.0.0] - 2026-10-01\n\n## [1.0.0]\n- first\n")
    result = run(NOTES_SCRIPT, "2.0.0", "--changelog", path)
    assert result.returncode == 1 and "is empty" in result.stderr


def test_this_changelog_has_the_unreleased_section_a_release_is_cut_from():
    result = run(NOTES_SCRIPT, "Unreleased")
    assert result.returncode == 0 and result.stdout.startswith("### ")


# --- the stack's chart repositories -------------------------------------------------------------

def test_chart_repos_adds_every_repository_the_stack_depends_on(tmp_path):
    """`helm dependency build charts/pulse-stack` fails on a repository Helm has not been told of."""
    log = tmp_path / "helm.log"
    fake = tmp_path / "bin" / "helm"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    fake.chmod(0o755)
    for tool in ("bash", "dirname", "sed", "sort"):
        (fake.parent / tool).symlink_to(shutil.which(tool))
    result = subprocess.run([shutil.which("bash"), CHART_REPOS], capture_output=True, text=True,
                            env={"PATH": str(fake.parent)})
    assert result.returncode == 0, result.stderr
    added = {line.split()[3] for line in log.read_text().splitlines() if line.startswith("repo add ")}
    stack = yaml.safe_load((ROOT / "charts" / "pulse-stack" / "Chart.yaml").read_text())
    remote = {d["repository"] for d in stack["dependencies"] if d["repository"].startswith("https://")}
    assert remote and added == remote
    names = [line.split()[2] for line in log.read_text().splitlines()]
    assert "prometheus-community" in names and len(set(names)) == len(names)


def test_the_lab_adds_the_stacks_repositories_the_same_way():
    assert '"$ROOT/scripts/chart-repos.sh" "$stack"' in (ROOT / "scripts" / "kind-up.sh").read_text()

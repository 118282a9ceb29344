#!/usr/bin/env python3
"""Prints the version being released, after checking that every place naming it agrees.

The release workflow (.github/workflows/release.yaml) runs it on the pushed tag: `release-version.py
v1.2.3` fails unless the tag is `v` + the crate version (Cargo.toml) and every chart's appVersion
(charts/*/Chart.yaml) is that version too, so an image, its charts and their default image tag
cannot be published under different numbers. Without a tag (the workflow's dry run from a branch) it
checks the charts against the crate alone. Standard library only: it runs on the bare runner.
`--root DIR` checks another checkout.
"""
from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

# Chart.yaml is YAML, but its top-level `appVersion: "x"` line is all this needs (no PyYAML on the
# runner); tests/python/test_release.py checks the reading against a YAML parser.
APP_VERSION = re.compile(r'^appVersion:\s*["\']?([^"\'\s#]+)["\']?\s*(#.*)?$', re.M)


def crate_version(root: Path) -> str:
    return tomllib.loads((root / "Cargo.toml").read_text())["package"]["version"]


def app_versions(root: Path) -> dict[str, str | None]:
    """Each chart's appVersion (None when the line is missing), keyed by the chart's directory."""
    found = {}
    for chart in sorted((root / "charts").glob("*/Chart.yaml")):
        match = APP_VERSION.search(chart.read_text())
        found[str(chart.relative_to(root))] = match[1] if match else None
    return found


def problems(root: Path, tag: str | None) -> tuple[str, list[str]]:
    version = crate_version(root)
    errors = []
    if tag is not None and tag != f"v{version}":
        errors.append(f"tag {tag} is not v + the crate version in Cargo.toml (v{version})")
    charts = app_versions(root)
    if not charts:
        errors.append("no charts/*/Chart.yaml found")
    for chart, app_version in charts.items():
        if app_version != version:
            errors.append(f"{chart}: appVersion {app_version} is not the crate version {version}")
    return version, errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tag", nargs="?", help="the pushed tag, vX.Y.Z (omitted: no tag to check)")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args()
    version, errors = problems(args.root, args.tag)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if errors:
        print("Bump Cargo.toml's version and both charts' appVersion together, then tag v<version>.",
              file=sys.stderr)
        return 1
    print(version)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Prints CHANGELOG.md's section for one version: the notes of its GitHub release.

`release-notes.py 1.2.3` prints what lies between the heading `## [1.2.3]` (or `## 1.2.3`, either
followed by ` - <date>`) and the next `## ` heading, without Keep a Changelog's link definitions
(`[1.2.3]: https://...`). It fails when the section is missing or empty: the release workflow runs
it before anything is published, so a release without notes never starts. Standard library only.
`--changelog FILE` reads another file.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

LINK_DEFINITION = re.compile(r"^\[[^\]]+\]:\s+\S+")


def section(text: str, version: str) -> str | None:
    """The section's body, stripped; None when no heading names the version."""
    heading = re.compile(rf"^## \[?{re.escape(version)}\]?(\s+-\s+.*)?\s*$")
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if heading.match(line)), None)
    if start is None:
        return None
    body = []
    for line in lines[start + 1:]:
        if line.startswith("## "):
            break
        if not LINK_DEFINITION.match(line):
            body.append(line)
    return "\n".join(body).strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("version", help="X.Y.Z, without the tag's v")
    parser.add_argument("--changelog", type=Path,
                        default=Path(__file__).resolve().parent.parent / "CHANGELOG.md")
    args = parser.parse_args()
    notes = section(args.changelog.read_text(), args.version)
    if notes is None:
        print(f"error: {args.changelog.name} has no section `## [{args.version}]`: move the Unreleased "
              f"entries under `## [{args.version}] - <date>` before tagging", file=sys.stderr)
        return 1
    if not notes:
        print(f"error: {args.changelog.name}'s section for {args.version} is empty", file=sys.stderr)
        return 1
    print(notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Fails when a source file of src/ is over 400 lines or a function in it over 80.

Why a limit at all: a module a newcomer can read in one sitting has one concern, and a function that
fits on a screen can be checked line by line; the numbers are the ones this codebase chose when it
was split by concern (every file and function was brought under them), so the check only keeps what
is already true. A function is counted from its `fn` line to its closing brace, tests included
(`#[cfg(test)]` code is read by the next engineer too). The code is `cargo fmt`-formatted, so a
function's closing brace is the first line after it holding only `}` at the `fn` line's indent; a
declaration without a body (a trait's `fn f();`) is not a function here. Run by `make lint`;
`code-size.py DIR` checks another source tree.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
MAX_FILE_LINES = 400
MAX_FN_LINES = 80
# `pub(crate) async fn name`, `const fn`, `unsafe extern "C" fn`...: the keyword after any qualifiers.
FN = re.compile(r"^(\s*)(?:pub(?:\([^)]*\))?\s+)?(?:(?:const|async|unsafe|extern(?:\s+\"[^\"]*\")?)\s+)*fn\s+(\w+)")


def functions(lines: list[str]):
    """(name, first line number, length) of every function with a body."""
    for i, line in enumerate(lines):
        m = FN.match(line)
        if not m:
            continue
        indent, name = m.group(1), m.group(2)
        # The signature ends at the first `{` or `;` at its end of line: a `;` first means no body.
        j = i
        while j < len(lines) and not re.search(r"[{;]\s*(//.*)?$", lines[j]):
            j += 1
        if j == len(lines) or re.search(r";\s*(//.*)?$", lines[j]):
            continue
        if re.search(r"\}\s*(//.*)?$", lines[j]) and lines[j].count("{") <= lines[j].count("}"):
            yield name, i + 1, j - i + 1  # a one-line body: `fn f() -> u8 { 1 }`
            continue
        end = next((k for k in range(j, len(lines)) if lines[k].rstrip() == indent + "}"), None)
        if end is None:
            raise SystemExit(f"code-size: cannot find the end of fn {name} at line {i + 1}")
        yield name, i + 1, end - i + 1


def main() -> int:
    src = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else SRC
    problems = []
    for path in sorted(src.rglob("*.rs")):
        lines = path.read_text().splitlines()
        shown = path.relative_to(src.parent)
        if len(lines) > MAX_FILE_LINES:
            problems.append(f"{shown}: {len(lines)} lines (at most {MAX_FILE_LINES}): split it by concern")
        for name, start, length in functions(lines):
            if length > MAX_FN_LINES:
                problems.append(f"{shown}:{start}: fn {name} is {length} lines (at most {MAX_FN_LINES})")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

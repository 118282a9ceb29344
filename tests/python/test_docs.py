"""The documentation says what the repository does: its links resolve, its recipes name what the
repository needs, and its lists of suites and tools are complete.

- every relative link in README.md and docs/**/*.md names a file that exists and, with a `#fragment`
  into a Markdown file, an anchor GitHub generates there (a heading's slug, or an explicit
  `<a id=...>`/`<a name=...>`);
- the bare-cluster recipes (README, docs/kubernetes.md) add every Helm repository charts/pulse-stack's
  dependencies come from, so `helm dependency build` works after them;
- the test prerequisites (README's quick start and Troubleshooting, docs/testing.md) name every
  package `make deps` asks for;
- docs/testing.md describes every test suite: the integration modules, the Python test files, the
  benchmarks, the unit tests;
- `make test-python` prints each skipped test's reason (`-rs`).
"""

from __future__ import annotations

import functools
import html
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


# --- links --------------------------------------------------------------------------------------

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target "title"), ![alt](target); the text may hold one level of brackets.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
HREF = re.compile(r"<a\s[^>]*\bhref=\"([^\"]*)\"", re.IGNORECASE)
ANCHOR = re.compile(r"<a\s[^>]*\b(?:id|name)=\"([^\"]+)\"", re.IGNORECASE)
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(text: str):
    """(line number, line) outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def heading_text(markdown: str) -> str:
    """A heading as GitHub renders it to text: code spans, links, emphasis and tags reduced to their text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", markdown)  # links and images: their text
    text = re.sub(r"(`+)(.+?)\1", r"\2", text)  # code spans: their content
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = re.sub(r"(\*{1,3}|_{1,3})(\S(?:.*?\S)?)\1", r"\2", text)  # emphasis
    return html.unescape(text)


def slug(text: str) -> str:
    """GitHub's heading anchor (github-slugger): lower case; every character that is not a letter,
    a digit, a space, `-` or `_` dropped; each space a `-`."""
    kept = "".join(ch for ch in text.lower() if ch.isalnum() or ch in " -_")
    return kept.replace(" ", "-")


@functools.cache
def anchors(path: Path) -> frozenset[str]:
    """Every anchor GitHub generates in a Markdown file: heading slugs (a repeated one gets `-1`,
    `-2`...), and explicit `<a id=...>` / `<a name=...>` anchors."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for _, line in prose_lines(path.read_text()):
        if match := HEADING.match(line):
            base = slug(heading_text(match[2]))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        found.update(ANCHOR.findall(line))
    return frozenset(found)


def links(path: Path):
    """(line number, target) of every link in a Markdown file, outside code."""
    for number, line in prose_lines(path.read_text()):
        prose = INLINE_CODE.sub("", line)
        for pattern in (INLINE_LINK, REFERENCE, HREF):
            for target in pattern.findall(prose):
                yield number, target


def is_relative(target: str) -> bool:
    return bool(target) and not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:|//", target)


def shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def broken(path: Path, target: str) -> str | None:
    """Why a relative link from `path` does not resolve, or None."""
    file_part, _, fragment = target.partition("#")
    destination = (path.parent / file_part).resolve() if file_part else path
    if not destination.exists():
        return f"{shown(destination)} does not exist"
    if fragment and destination.suffix == ".md" and fragment not in anchors(destination):
        return f"{shown(destination)} has no heading or anchor #{fragment}"
    return None


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc):
    problems = [f"{doc.relative_to(ROOT)}:{number}: ({target}) {why}"
                for number, target in links(doc) if is_relative(target)
                if (why := broken(doc, target))]
    assert problems == []


@pytest.mark.parametrize("heading, expected", [
    ("Traffic generator: `pulse load`", "traffic-generator-pulse-load"),
    ("`/status/{code}`", "statuscode"),
    ("The local lab (kind)", "the-local-lab-kind"),
    ("CRDs on upgrade: *why* [this](x.md)", "crds-on-upgrade-why-this"),
    ("snake_case and 2–3 s", "snake_case-and-23-s"),
    ("The kind suite: `make e2e`", "the-kind-suite-make-e2e"),
])
def test_slugs_follow_github(heading, expected):
    assert slug(heading_text(heading)) == expected


def test_repeated_headings_and_explicit_anchors(tmp_path):
    doc = tmp_path / "a.md"
    doc.write_text("# Usage\n## Usage\n```\n# Usage\n```\n### Usage!\n<a id=\"kept\"></a>\n<a name=\"old\">\n")
    assert anchors(doc) == {"usage", "usage-1", "usage-2", "kept", "old"}
    assert broken(doc, "#usage-2") is None
    assert broken(doc, "#usage-3") == f"{doc} has no heading or anchor #usage-3"
    assert "does not exist" in (broken(doc, "b.md") or "")


# --- the bare-cluster recipe --------------------------------------------------------------------

def stack_repositories() -> set[str]:
    chart = yaml.safe_load((ROOT / "charts" / "pulse-stack" / "Chart.yaml").read_text())
    return {d["repository"].rstrip("/") for d in chart["dependencies"] if d["repository"].startswith("https://")}


def added_repositories(text: str) -> set[str]:
    return {url.rstrip("/") for url in re.findall(r"^\s*helm repo add \S+ (\S+)", text, re.MULTILINE)}


def recipe_block(text: str) -> str:
    """The shell block that runs `helm dependency build charts/pulse-stack` before `helm install`."""
    blocks = re.findall(r"```(?:bash|console|sh)\n(.*?)```", text, re.DOTALL)
    recipes = [b for b in blocks if "helm dependency build charts/pulse-stack" in b and "helm install" in b]
    assert recipes, "no block with `helm dependency build charts/pulse-stack` and `helm install`"
    return "\n".join(recipes)


@pytest.mark.parametrize("doc", ["README.md", "docs/kubernetes.md", "scripts/kind-up.sh"])
def test_the_bare_cluster_recipe_adds_every_repository_the_stack_needs(doc):
    assert len(stack_repositories()) >= 3, "charts/pulse-stack's remote dependencies not found"
    text = (ROOT / doc).read_text()
    if doc == "scripts/kind-up.sh":
        # The lab adds them with scripts/chart-repos.sh, which reads them from the stack's
        # Chart.yaml (test_release.py checks it adds exactly those).
        assert re.search(r'^[^#\n]*chart-repos\.sh', text, re.MULTILINE), "kind-up.sh no longer runs chart-repos.sh"
        return
    recipe = recipe_block(text) if doc.endswith(".md") else text
    missing = stack_repositories() - added_repositories(recipe)
    assert missing == set(), f"{doc}: `helm dependency build` needs `helm repo add` for {sorted(missing)}"


# --- the test prerequisites ---------------------------------------------------------------------

def deps_packages() -> dict[str, list[str]]:
    """What `make deps` checks: the command it looks for -> the packages its message says to install."""
    recipe = re.search(r"^deps:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert recipe, "no deps target in the Makefile"
    found = {}
    for line in recipe[1].splitlines():
        command = re.search(r"command -v (\S+)", line)
        packages = re.search(r"apt-get install ([\w .+-]+?) \(", line)
        assert command and packages, f"a deps line this test cannot read: {line}"
        found[command[1]] = packages[1].split()
    assert len(found) >= 6, found
    return found


def readme_section(start: str) -> str:
    """README text from the paragraph or item starting with `start` to the next blank line or item."""
    text = (ROOT / "README.md").read_text()
    at = text.index(start)
    end = re.compile(r"\n\s*\n|\n- ").search(text, at + len(start))
    return text[at:end.start() if end else None]


def places_in_testing_md() -> dict[str, str]:
    text = (ROOT / "docs" / "testing.md").read_text()
    make_test_row = next(line for line in text.splitlines() if line.startswith("| `make test` |"))
    tools = text[text.index("## Tools"):text.index("### The prometheus-operator CRD schemas")]
    deps = tools[tools.index("Before the Rust suites"):]
    return {"docs/testing.md `make test` row": make_test_row,
            "docs/testing.md Tools table": tools[:tools.index("Before the Rust suites")],
            "docs/testing.md `make deps` paragraph": deps}


def prerequisite_places() -> dict[str, str]:
    ci = (ROOT / ".ci" / "run").read_text()
    return {"README quick start (Testing)": readme_section("**Testing.**"),
            "README Troubleshooting": readme_section("- **`make test` says"),
            **places_in_testing_md(),
            ".ci/run's apt-get list": " ".join(re.findall(r"need_apt\+=\(([^)]*)\)", ci))}


@pytest.mark.parametrize("place", sorted(prerequisite_places()))
def test_the_prerequisites_name_every_package_make_deps_checks(place):
    text = prerequisite_places()[place]
    missing = sorted({p for packages in deps_packages().values() for p in packages
                      if not re.search(rf"(?<![\w-]){re.escape(p)}(?![\w-])", text)})
    assert missing == [], f"{place} does not name {missing}, which `make deps` asks for:\n{text}"


# --- docs/testing.md lists every suite ----------------------------------------------------------

def suites() -> list[str]:
    """Every test suite file: the integration modules, the Python test files, the benchmarks."""
    integration = [p for p in sorted((ROOT / "tests" / "integration").glob("*.rs")) if p.name != "main.rs"]
    python = sorted((ROOT / "tests" / "python").glob("test_*.py"))
    cargo = (ROOT / "Cargo.toml").read_text()
    benches = [ROOT / (m[1] if m[1] else f"benches/{m[0]}.rs")
               for m in re.findall(r'\[\[bench\]\]\nname = "([^"]+)"\n(?:path = "([^"]+)"\n)?', cargo)]
    assert len(benches) >= 2 and all(b.exists() for b in benches), benches
    return [str(p.relative_to(ROOT)) for p in integration + python + benches]


def suite_rows() -> list[str]:
    """The first cells of docs/testing.md's table rows: where a suite is described."""
    text = (ROOT / "docs" / "testing.md").read_text()
    return [line.split("|")[1] for line in text.splitlines() if line.startswith("| ")]


@pytest.mark.parametrize("suite", suites())
def test_docs_testing_md_describes_every_suite(suite):
    # A Python suite's row names the file alone (`test_chart.py`); the others name their path.
    name = Path(suite).name if suite.startswith("tests/python/") else suite
    assert any(f"`{name}`" in cell for cell in suite_rows()), \
        f"docs/testing.md has no table row for {suite}: add one (what it drives, what it proves)"


def test_docs_testing_md_describes_the_unit_tests():
    assert any("unit tests in `src/`" in cell for cell in suite_rows())


# --- pytest's own output ------------------------------------------------------------------------

def test_make_test_python_prints_why_each_test_was_skipped():
    """CI's log shows a skipped test's reason only when pytest runs with `-rs` (or `-ra`)."""
    dry_run = subprocess.run([shutil.which("make"), "-n", "test-python"], capture_output=True, text=True,
                             cwd=ROOT, timeout=30)
    calls = [line for line in dry_run.stdout.splitlines() if "-m pytest" in line]
    assert calls, f"`make -n test-python` runs no pytest:\n{dry_run.stdout}{dry_run.stderr}"
    for call in calls:
        assert re.search(r"\s-r\w*[sa]", call), f"pytest runs without -rs (skip reasons): {call.strip()}"

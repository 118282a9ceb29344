#!/usr/bin/env python3
"""Fails when the top-level modules of src/ import each other in a cycle.

Each top-level module (src/NAME.rs or src/NAME/) is a node; `crate::OTHER` anywhere in
its files is an edge. Dependencies must point one way (configuration at the bottom,
start-up at the top), so the graph must be acyclic. Run by `make lint`.
"""
import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
# Comments and doc comments may name any module; only code counts.
COMMENT = re.compile(r"//.*$", re.MULTILINE)
CRATE_PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
USE_GROUP = re.compile(r"\buse\s+crate::\{([^}]*)\}")


def module_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".rs")


def graph() -> dict[str, set[str]]:
    modules = {module_of(p) for p in SRC.rglob("*.rs")} - {"lib", "main"}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for path in SRC.rglob("*.rs"):
        node = module_of(path)
        if node not in modules:
            continue
        code = COMMENT.sub("", path.read_text())
        targets = set(CRATE_PATH.findall(code))
        for group in USE_GROUP.findall(code):
            targets |= {t.strip().split("::")[0] for t in group.split(",") if t.strip()}
        edges[node] |= {t for t in targets if t in modules and t != node}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    edges = graph()
    found = cycles(edges)
    for component in found:
        detail = "; ".join(
            f"{m} -> {', '.join(sorted(edges[m] & set(component)))}" for m in component
        )
        print(f"import cycle among src/ modules {component}: {detail}", file=sys.stderr)
    if not found:
        print(f"module-cycles: {len(edges)} top-level modules, no import cycle")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

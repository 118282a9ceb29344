#!/usr/bin/env python3
"""Fails when modules of src/ import each other in a cycle, at any depth.

Every module is a node: `src/NAME.rs` or `src/NAME/mod.rs` is `NAME`, `src/a/b.rs` is `a::b`. A path
in a module's code (`crate::a::b`, `super::b`, `self::c`, `super::super::x`, and the names of a
`use ...::{...}` group) resolves to the deepest module it names. An edge from `a::x` to `a::y` is
an edge between the siblings `x` and `y` of `a`; an edge from `a::x::p` to `b::q` is one between the
top-level modules `a` and `b`. A child naming its own ancestor (`super::Thing` from `a::x` to `a`)
is not an edge: a parent declares its children. Each set of siblings must import each other
acyclically: dependencies point one way (configuration at the bottom, start-up at the top, and
inside a folder likewise). Run by `make lint`; `module-cycles.py DIR` checks another source tree.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
# Comments and doc comments may name any module; only code counts.
COMMENT = re.compile(r"//.*$", re.MULTILINE)
# A path that starts at crate, super or self: `crate::a::b`, `super::super::c`, `self::d::{e, f}`.
PATH = re.compile(r"\b((?:crate|self|super)(?:::(?:super|[A-Za-z_][A-Za-z0-9_]*))*)(::\{([^}]*)\})?")
# `#[cfg(test)] mod tests { ... }` at the end of a file: its `super::*` is the module itself.
TESTS = re.compile(r"#\[cfg\(test\)\]\s*mod tests\s*\{.*", re.DOTALL)


def module_of(path: Path) -> tuple[str, ...]:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    if parts in (["lib"], ["main"]):
        return ()
    return tuple(parts)


def resolve(module: tuple[str, ...], path: str, modules: set[tuple[str, ...]]) -> tuple[str, ...] | None:
    """The deepest module `path` (written in `module`) names, or None outside src/'s modules."""
    segments = path.split("::")
    head, rest = segments[0], segments[1:]
    if head == "crate":
        base: tuple[str, ...] = ()
    elif head == "self":
        base = module
    else:  # super
        base = module[:-1]
    while rest and rest[0] == "super":
        base, rest = base[:-1], rest[1:]
    found = base
    for segment in rest:
        if found + (segment,) in modules:
            found = found + (segment,)
        else:
            break
    return found


def edges_of(modules: set[tuple[str, ...]]) -> dict[tuple[str, ...], set[tuple[str, ...]]]:
    edges: dict[tuple[str, ...], set[tuple[str, ...]]] = {m: set() for m in modules}
    for path in SRC.rglob("*.rs"):
        module = module_of(path)
        code = TESTS.sub("", COMMENT.sub("", path.read_text()))
        for match in PATH.finditer(code):
            names = [match[1]]
            if match[3]:
                names = [f"{match[1]}::{n.strip().split('::')[0].split(' ')[0]}" for n in match[3].split(",")
                         if n.strip() and n.strip() not in {"self", "*"}]
            for name in names:
                target = resolve(module, name, modules)
                if target is not None and target != module:
                    edges[module].add(target)
    return edges


def sibling_graphs(edges) -> dict[tuple[str, ...], dict[str, set[str]]]:
    """For each parent module, the edges between its children that the module edges imply."""
    graphs: dict[tuple[str, ...], dict[str, set[str]]] = {}
    for source, targets in edges.items():
        for target in targets:
            common = 0
            while common < min(len(source), len(target)) and source[common] == target[common]:
                common += 1
            if common == len(source) or common == len(target):
                continue  # one is the other's ancestor
            parent = source[:common]
            graph = graphs.setdefault(parent, {})
            graph.setdefault(source[common], set()).add(target[common])
            graph.setdefault(target[common], set())
    return graphs


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
    global SRC
    if len(sys.argv) > 1:
        SRC = Path(sys.argv[1]).resolve()
    modules = {module_of(p) for p in SRC.rglob("*.rs")} - {()}
    graphs = sibling_graphs(edges_of(modules))
    found = 0
    for parent, graph in sorted(graphs.items()):
        where = "src/" + "/".join(parent) if parent else "src/"
        for component in cycles(graph):
            found += 1
            detail = "; ".join(f"{m} -> {', '.join(sorted(graph[m] & set(component)))}" for m in component)
            print(f"import cycle among the modules of {where} {component}: {detail}", file=sys.stderr)
    if not found:
        print(f"module-cycles: {len(modules)} modules, no import cycle at any depth")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

"""The oldest Rust Pulse builds with (its MSRV) is one number: Cargo.toml's `rust-version`, at least
every locked dependency's own `rust-version`, the toolchain CI's `msrv` job compiles with, and what
the README tells a new user to install. An older toolchain fails inside a dependency (sqlx 0.9.1
declares 1.94.0): the number must say so before the compiler does."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

MANIFEST = tomllib.loads((ROOT / "Cargo.toml").read_text())
RUST_VERSION = MANIFEST["package"]["rust-version"]


def version_tuple(version: str) -> tuple[int, ...]:
    parts = [int(p) for p in version.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def registry_sources() -> list[Path]:
    """cargo's unpacked crate sources (`~/.cargo/registry/src/<index>/`), where `cargo fetch` or a
    build left them."""
    cargo_home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    return sorted(p for p in (cargo_home / "registry" / "src").glob("*") if p.is_dir())


def locked_rust_versions() -> tuple[dict[str, str], list[str]]:
    """({"name version": its rust-version} for every locked registry crate found unpacked, [the
    crates not found]). cargo unpacks only what the host's build needs: a crate for another platform
    (windows-sys, ...) may be missing, and is not checked."""
    lock = tomllib.loads((ROOT / "Cargo.lock").read_text())
    sources = registry_sources()
    declared, missing = {}, []
    for package in lock["package"]:
        if not package.get("source", "").startswith("registry+"):
            continue
        crate = f"{package['name']}-{package['version']}"
        manifest = next((s / crate / "Cargo.toml" for s in sources if (s / crate / "Cargo.toml").exists()), None)
        if manifest is None:
            missing.append(crate)
            continue
        # The published Cargo.toml is normalised: a workspace-inherited rust-version is written out.
        rust_version = tomllib.loads(manifest.read_text()).get("package", {}).get("rust-version")
        if rust_version:
            declared[f"{package['name']} {package['version']}"] = str(rust_version)
    return declared, missing


def test_rust_version_is_at_least_every_locked_dependencys():
    declared, missing = locked_rust_versions()
    if not declared:
        pytest.skip("no locked crate's sources under ~/.cargo/registry/src (run `cargo fetch` first): "
                    "the dependencies' rust-version cannot be read")
    lock = tomllib.loads((ROOT / "Cargo.lock").read_text())
    registry_crates = sum(1 for p in lock["package"] if p.get("source", "").startswith("registry+"))
    assert len(missing) < registry_crates / 2, f"most locked crates are not unpacked: {missing[:5]}..."
    newer = {crate: v for crate, v in declared.items() if version_tuple(v) > version_tuple(RUST_VERSION)}
    assert newer == {}, f"Cargo.toml says rust-version {RUST_VERSION}, but these need more: {newer}"


def test_ci_compiles_with_exactly_that_toolchain():
    ci = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yaml").read_text())
    steps = ci["jobs"]["msrv"]["steps"]
    (toolchain,) = [s for s in steps if s.get("uses", "").startswith("dtolnay/rust-toolchain@")]
    assert toolchain["with"]["toolchain"] == RUST_VERSION
    assert [s["run"] for s in steps if "run" in s] == ["cargo check --locked --all-targets"]


def test_the_readme_asks_for_that_toolchain():
    readme = (ROOT / "README.md").read_text()
    assert re.search(rf"Rust toolchain, \*\*{re.escape(RUST_VERSION)} or newer\*\*", readme)
    stated = set(re.findall(r"\b1\.(\d{2,3})(?:\.\d+)?\+? or newer|Rust 1\.(\d{2,3})\+", readme))
    assert {m for pair in stated for m in pair if m} == {RUST_VERSION.split(".")[1]}

"""`make lint`'s import-cycle check (scripts/module-cycles.py) on small source trees: it sees a
circle between top-level modules and one inside a folder, through `crate::`, `super::` and
`self::` paths and `use` groups, and leaves alone what is no circle."""

import subprocess
import sys

from conftest import ROOT, run_on_tree

SCRIPT = ROOT / "scripts" / "module-cycles.py"


def check(tmp_path, files: dict[str, str]) -> subprocess.CompletedProcess:
    return run_on_tree(SCRIPT, tmp_path, files)


def test_this_repository_has_no_cycle():
    result = subprocess.run([sys.executable, SCRIPT], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_circle_inside_a_folder_through_super_paths(tmp_path):
    # The shape telemetry/ had: metrics -> openmetrics -> exemplars -> metrics.
    result = check(tmp_path, {
        "lib.rs": "pub mod telemetry;\n",
        "telemetry/mod.rs": "pub mod metrics; pub mod exemplars; pub mod openmetrics;\npub struct Error;\n",
        "telemetry/metrics.rs": "use super::Error;\nfn f() { super::openmetrics::encode(); }\n",
        "telemetry/openmetrics.rs": "use super::exemplars::{Bucket, Exemplar};\npub fn encode() {}\n",
        "telemetry/exemplars.rs": "use super::metrics::BUCKETS; // crate::lib mentioned in a comment\n",
    })
    assert result.returncode == 1
    assert "src/telemetry ['exemplars', 'metrics', 'openmetrics']" in result.stderr


def test_a_circle_between_top_level_modules_through_crate_and_self_paths(tmp_path):
    result = check(tmp_path, {
        "a/mod.rs": "mod inner;\n",
        "a/inner.rs": "use crate::{b::Thing, c};\n",
        "b.rs": "use crate::c::x::{self, Y};\n",
        "c/mod.rs": "pub mod x;\nuse self::x::Y;\n",
        "c/x.rs": "fn g() { crate::a::go(); }\n",
    })
    assert result.returncode == 1
    assert "src/ ['a', 'b', 'c']" in result.stderr


def test_children_naming_their_parent_and_test_modules_are_no_circle(tmp_path):
    result = check(tmp_path, {
        "store/mod.rs": "mod memory;\npub use memory::Memory;\npub struct Error;\n",
        "store/memory.rs": "use super::Error;\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n",
        "app.rs": "use crate::store::Memory;\n",
    })
    assert result.returncode == 0, result.stderr

"""`make lint`'s size check (scripts/code-size.py): no file of src/ over 400 lines, no function
over 80, counted the way the script's docstring says, on small source trees."""

import subprocess
import sys

from conftest import ROOT, run_on_tree

SCRIPT = ROOT / "scripts" / "code-size.py"


def check(tmp_path, files: dict[str, str]) -> subprocess.CompletedProcess:
    return run_on_tree(SCRIPT, tmp_path, files)


def body(lines: int) -> str:
    return "".join(f"        let x{i} = {i};\n" for i in range(lines))


def test_this_repository_is_within_the_limits():
    result = subprocess.run([sys.executable, SCRIPT], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_method_of_81_lines_fails_and_one_of_80_passes(tmp_path):
    # 78 body lines + the signature + the closing brace = 80.
    ok = "impl A {\n    pub(crate) async fn fits(\n        &self,\n    ) {\n" + body(76) + "    }\n}\n"
    assert check(tmp_path, {"lib.rs": ok}).returncode == 0
    long = "impl A {\n    pub async fn grown(&self) -> u8 {\n" + body(79) + "    }\n}\n"
    result = check(tmp_path, {"lib.rs": long})
    assert result.returncode == 1
    assert "src/lib.rs:2: fn grown is 81 lines (at most 80)" in result.stderr


def test_a_file_of_401_lines_fails(tmp_path):
    result = check(tmp_path, {"store/big.rs": "// a line\n" * 401})
    assert result.returncode == 1
    assert "src/store/big.rs: 401 lines" in result.stderr


def test_declarations_and_one_line_bodies_are_not_mistaken_for_long_functions(tmp_path):
    code = ("pub trait T {\n    fn declared(&self);\n}\nfn one() -> u8 { 1 }\n"
            "fn after() {\n" + body(10) + "}\n" + "// filler\n" * 100)
    result = check(tmp_path, {"lib.rs": code})
    assert result.returncode == 0, result.stderr

"""The shell scripts (lab, e2e, CI) pass shellcheck: they cannot run here (no Docker), so lint them."""

import shutil
import subprocess

import pytest
from conftest import ROOT

SCRIPTS = sorted(ROOT.glob("scripts/*.sh")) + [ROOT / ".ci" / "run"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(script):
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck missing: apt-get install shellcheck (or run .ci/run)"
    result = subprocess.run([shellcheck, "-x", "-P", "SCRIPTDIR", str(script)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout

"""The GitHub workflows, read as GitHub reads them: what the release publishes, signs and attests, and
the rules every workflow keeps (pinned actions, least privilege, no expressions inside scripts).

Nothing here can run a workflow (no GitHub, no registry, no Sigstore): these tests check what the
files ask GitHub to do. `make lint` runs zizmor and the workflow schema over the same files (the
`workflows` target); the last tests check that it does, and that zizmor catches what it is there for.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
ALL = sorted(WORKFLOWS.glob("*.y*ml"))
RELEASE = WORKFLOWS / "release.yaml"
CI = WORKFLOWS / "ci.yaml"
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
# A step or job that publishes something runs on the tag push only; workflow_dispatch is the dry run.
ON_PUSH = "github.event_name == 'push'"


def load(path: Path) -> dict:
    workflow = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as the boolean true.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


@pytest.fixture(scope="module")
def release() -> dict:
    return load(RELEASE)


def jobs(workflow: dict) -> dict:
    return workflow["jobs"]


def steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def action(step: dict) -> str | None:
    """The action's owner/name of a `uses:` step, without the ref."""
    return step["uses"].split("@")[0] if "uses" in step else None


def steps_using(job: dict, name: str) -> list[dict]:
    return [s for s in steps(job) if action(s) == name]


def step_running(job: dict, command: str) -> dict:
    (step,) = [s for s in steps(job) if command in s.get("run", "")]
    return step


def needs(workflow: dict, job: str) -> set[str]:
    """Every job `job` waits for, directly or not."""
    direct = jobs(workflow)[job].get("needs", [])
    direct = [direct] if isinstance(direct, str) else direct
    return set(direct).union(*(needs(workflow, d) for d in direct)) if direct else set()


def env_value(workflow: dict, expression: str) -> str:
    """`${{ env.NAME }}` resolved against the workflow's top-level env."""
    match = re.fullmatch(r"\$\{\{\s*env\.(\w+)\s*\}\}", expression.strip())
    assert match, f"expected an ${{{{ env.X }}}} expression, got {expression!r}"
    return workflow["env"][match[1]]


def build_step(workflow: dict) -> dict:
    (step,) = steps_using(jobs(workflow)["image"], "docker/build-push-action")
    return step


def digest_of_build(workflow: dict) -> str:
    return f"${{{{ steps.{build_step(workflow)['id']}.outputs.digest }}}}"


# --- the release: trigger and order -------------------------------------------------------------

def test_the_release_runs_on_version_tags_and_by_hand_as_a_dry_run(release):
    assert release["on"]["push"] == {"tags": ["v*"]}, "tags only: no branch push publishes"
    assert "workflow_dispatch" in release["on"]


def test_the_tests_run_first_and_every_publishing_job_waits_for_them(release):
    test = jobs(release)["test"]
    assert test["uses"] in ("$/.github/workflows/ci.yaml", "./.github/workflows/ci.yaml")
    ci = load(CI)
    assert "workflow_call" in ci["on"], "ci.yaml must be callable"
    assert step_running(jobs(ci)["test"], "bash .ci/run")
    for job in ("image", "charts", "release"):
        assert {"test", "version"} <= needs(release, job), job
    assert "image" in needs(release, "charts"), "a chart must never name an image that was not pushed"
    assert {"image", "charts"} <= needs(release, "release")


def test_the_version_job_checks_the_tag_and_the_notes_before_anything_is_built(release):
    script = step_running(jobs(release)["version"], "release-version.py")
    assert 'release-version.py "$TAG"' in script["run"]
    assert 'release-notes.py "$version"' in script["run"]
    assert script["env"]["TAG"] == "${{ github.ref_name }}"


# --- the image ----------------------------------------------------------------------------------

def test_the_image_is_built_for_amd64_and_arm64_and_pushed_to_ghcr_by_version(release):
    image = jobs(release)["image"]
    build = build_step(release)["with"]
    assert env_value(release, build["platforms"]).split(",") == ["linux/amd64", "linux/arm64"]
    assert release["env"]["IMAGE"] == "ghcr.io/pulse-observability/pulse"
    assert build["tags"] == "${{ env.IMAGE }}:${{ env.VERSION }}"
    assert image["env"]["VERSION"] == "${{ needs.version.outputs.version }}"
    assert build["push"] == "${{ " + ON_PUSH + " }}"
    assert build["context"] == ".", "the checkout (and its .dockerignore), not a fresh git clone"
    assert build["cache-from"] == "type=gha" and build["cache-to"].startswith("type=gha")
    assert steps_using(image, "docker/setup-buildx-action")
    # The Dockerfile cross-compiles; QEMU runs the arm64 image once before it is signed.
    (qemu,) = steps_using(image, "docker/setup-qemu-action")
    assert "arm64" in qemu["with"]["platforms"]
    smoke = step_running(image, "docker run")
    assert smoke["env"]["DIGEST"] == digest_of_build(release)
    assert image["outputs"]["digest"] == digest_of_build(release)


def test_the_image_is_signed_by_digest_with_cosign_keyless(release):
    image = jobs(release)["image"]
    assert steps_using(image, "sigstore/cosign-installer")
    sign = step_running(image, "cosign sign")
    assert sign["run"].strip() == 'cosign sign --yes "$IMAGE@$DIGEST"', "by digest, never by tag"
    assert sign["env"]["DIGEST"] == digest_of_build(release)
    assert "--key" not in sign["run"], "keyless: the workflow's OIDC identity signs"
    order = [s.get("id") or s.get("name") or s.get("uses") for s in steps(image)]
    assert order.index(sign["name"]) > order.index(build_step(release)["id"])


def test_provenance_and_the_sbom_are_attested_to_the_pushed_digest(release):
    image = jobs(release)["image"]
    (sbom,) = steps_using(image, "anchore/sbom-action")
    assert sbom["with"]["image"] == "${{ env.IMAGE }}@" + digest_of_build(release)
    attestations = steps_using(image, "actions/attest")
    assert len(attestations) == 2
    for attest in attestations:
        assert attest["with"]["subject-name"] == "${{ env.IMAGE }}"
        assert attest["with"]["subject-digest"] == digest_of_build(release)
        assert attest["with"]["push-to-registry"] is True
    provenance = [a for a in attestations if "sbom-path" not in a["with"]]
    sboms = [a for a in attestations if a["with"].get("sbom-path") == sbom["with"]["output-file"]]
    assert len(provenance) == 1 and len(sboms) == 1
    assert not {"predicate", "predicate-path", "predicate-type"} & provenance[0]["with"].keys(), \
        "no predicate: actions/attest writes SLSA build provenance"


# --- the charts and the release -----------------------------------------------------------------

def test_both_charts_are_packaged_with_their_dependencies_and_pushed_to_the_oci_registry(release):
    charts = jobs(release)["charts"]
    assert release["env"]["CHARTS"] == "oci://ghcr.io/pulse-observability/charts"
    script = "\n".join(s.get("run", "") for s in steps(charts))
    assert "scripts/chart-repos.sh charts/pulse-stack" in script
    assert script.index("chart-repos.sh") < script.index("helm dependency build charts/pulse-stack") \
        < script.index("helm package charts/pulse charts/pulse-stack")
    push = step_running(charts, "helm push")
    assert 'helm push "$package" "$CHARTS"' in push["run"] and "dist/*.tgz" in push["run"]
    assert push["if"] == ON_PUSH
    (helm,) = steps_using(charts, "azure/setup-helm")
    assert re.fullmatch(r"v\d+\.\d+\.\d+", helm["with"]["version"]), "a pinned Helm"


def test_the_github_release_takes_its_notes_from_the_changelog(release):
    job = jobs(release)["release"]
    assert job["if"] == ON_PUSH
    script = step_running(job, "gh release create")
    assert 'release-notes.py "$VERSION" > notes.md' in script["run"]
    assert "--notes-file notes.md" in script["run"] and "--verify-tag" in script["run"]


def test_nothing_is_pushed_signed_or_attested_in_a_dry_run(release):
    image, charts = jobs(release)["image"], jobs(release)["charts"]
    publishing = [*steps_using(image, "docker/login-action"), *steps_using(image, "sigstore/cosign-installer"),
                  *steps_using(image, "anchore/sbom-action"), *steps_using(image, "actions/attest"),
                  step_running(image, "cosign sign"), step_running(image, "docker run"),
                  step_running(charts, "helm registry login"), step_running(charts, "helm push")]
    assert [s.get("name") or s.get("uses") for s in publishing if s.get("if") != ON_PUSH] == []


# --- permissions --------------------------------------------------------------------------------

def test_every_job_has_only_the_permissions_it_uses(release):
    assert release["permissions"] == {}, "nothing by default"
    granted = {name: job.get("permissions") for name, job in jobs(release).items()}
    assert granted == {
        "version": {"contents": "read"},
        "test": {"contents": "read"},
        "image": {"contents": "read", "packages": "write", "id-token": "write", "attestations": "write"},
        "charts": {"contents": "read", "packages": "write"},
        "release": {"contents": "write"},
    }


def test_ci_reads_the_repository_and_nothing_more():
    ci = load(CI)
    assert ci["permissions"] == {"contents": "read"}
    assert all("permissions" not in job for job in jobs(ci).values())


# --- rules for every workflow -------------------------------------------------------------------

@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_with_its_version_in_a_comment(path):
    uses = re.findall(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", path.read_text(), re.M)
    assert uses
    for ref, comment in uses:
        if ref.startswith(("$/", "./")):
            continue  # this repository's own workflow, at the same commit
        assert SHA_PIN.match(ref), f"{ref}: not pinned to a 40-hex commit"
        assert re.match(r"\s+#\s+(v\d+\.\d+\.\d+|master)\b", comment), f"{ref}: no `# vX.Y.Z` comment"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_no_expression_is_expanded_inside_a_script(path):
    """`${{ }}` in `run:` is pasted into the script before it runs (template injection): values go
    through `env:` and are read as shell variables."""
    workflow = load(path)
    scripts = [s["run"] for job in jobs(workflow).values() for s in steps(job) if "run" in s]
    assert scripts
    assert [s for s in scripts if "${{" in s] == []


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_no_checkout_keeps_the_token_in_git_config(path):
    checkouts = [s for job in jobs(load(path)).values() for s in steps_using(job, "actions/checkout")]
    assert checkouts
    assert all(s.get("with", {}).get("persist-credentials") is False for s in checkouts)


# --- make lint ----------------------------------------------------------------------------------

def venv_tool(name: str) -> str:
    return shutil.which(name) or str(Path(sys.executable).parent / name)


def test_make_lint_runs_zizmor_and_the_workflow_schema_on_every_workflow():
    dry = subprocess.run(["make", "-n", "lint"], capture_output=True, text=True, cwd=ROOT)
    assert dry.returncode == 0, dry.stderr
    files = " ".join(str(p.relative_to(ROOT)) for p in ALL)
    assert f"zizmor --offline --quiet {files}" in dry.stdout
    assert f"check-jsonschema --builtin-schema vendor.github-workflows {files}" in dry.stdout


def test_zizmor_flags_an_unpinned_action_and_an_expression_in_a_script(tmp_path):
    """What the lint is there for: both findings fail it (a non-zero exit)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("""name: bad
on: [pull_request]
permissions: {}
jobs:
  x:
    runs-on: ubuntu-24.04
    permissions:
      contents: read
    steps:
      - uses: actions/checkout@v4
        with:
          persist-credentials: false
      - run: echo "${{ github.event.pull_request.title }}"
""")
    result = subprocess.run([venv_tool("zizmor"), "--offline", "--format", "plain", str(bad)],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "unpinned-uses" in result.stdout and "template-injection" in result.stdout


def test_the_workflow_schema_rejects_a_misspelt_permission(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(RELEASE.read_text().replace("id-token: write", "id_token: write", 1))
    result = subprocess.run([venv_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                             str(bad)], capture_output=True, text=True)
    assert result.returncode != 0, result.stdout

"""The container image's build stage, run without Docker.

Docker cannot run here, so this does what `docker build` does for the stage the final image copies its
files from: the build context holds exactly what .dockerignore admits (docker-py's implementation of
Docker's matching rules), and that stage's ARG, ENV, WORKDIR, COPY and RUN instructions run in order
(Dockerfile parsed by dockerfile-parse; RUN through the stage's SHELL, `/bin/sh -c` unless it sets one)
in a directory standing in for the image's filesystem. A source the context lacks, a file cargo needs
that the Dockerfile does not provide, a failing step: each fails here as it would in `docker build`.
Then the files the final stage copies must exist, and the binary must report the revision it was given
as a build argument (the context has no .git, and git is kept from finding the checkout's).

Different from the image, on purpose:
- the host's Rust toolchain and cargo registry stand in for the rust image's;
- cargo's target directory persists across runs (target/image-context/cargo-target), as Docker's layer
  cache would, and the release profile is made cheap through CARGO_PROFILE_RELEASE_* variables: thin LTO
  and one codegen unit cost minutes per run and test the compiler, not the Dockerfile;
- absolute paths inside RUN commands are not remapped (the Dockerfile's RUN steps use relative ones).
"""

from __future__ import annotations

import glob
import io
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import ROOT, PulseProcess
from docker.utils.build import PatternMatcher
from dockerfile_parse import DockerfileParser

WORK = ROOT / "target" / "image-context"
CONTEXT = WORK / "context"        # the build context, as the Docker client would send it
FS = WORK / "fs"                  # the build stage's filesystem
CARGO_TARGET = WORK / "cargo-target"
REVISION = "c0ffee0123ab"         # what `make image` passes as PULSE_REVISION (a git short hash)
BUILD_ARGS = {"PULSE_REVISION": REVISION}
# The release profile's cost, not its meaning: see the module docstring.
CHEAP_RELEASE = {
    "CARGO_PROFILE_RELEASE_LTO": "false",
    "CARGO_PROFILE_RELEASE_CODEGEN_UNITS": "16",
    "CARGO_PROFILE_RELEASE_OPT_LEVEL": "0",
    "CARGO_PROFILE_RELEASE_INCREMENTAL": "true",
}
STEP_TIMEOUT = 3600  # a cold dependency build on two cores takes minutes


# --- the build context --------------------------------------------------------------------------

def dockerignore_patterns() -> list[str]:
    """The patterns, read as the Docker client reads them (comments and blank lines dropped)."""
    path = ROOT / ".dockerignore"
    if not path.exists():
        return []
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def context_paths() -> list[str]:
    """Every path (files and directories) of the checkout the build context admits."""
    matcher = PatternMatcher(dockerignore_patterns())
    # docker-py always admits .dockerignore (the daemon reads it); COPY does not see it when excluded.
    assert matcher.patterns[-1].cleaned_pattern == ".dockerignore"
    matcher.patterns.pop()
    return sorted(matcher.walk(str(ROOT)))


def materialise_context() -> list[str]:
    shutil.rmtree(CONTEXT, ignore_errors=True)
    CONTEXT.mkdir(parents=True)
    paths = context_paths()
    for rel in paths:
        src, dst = ROOT / rel, CONTEXT / rel
        if src.is_symlink():
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(os.readlink(src))
        elif src.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)  # COPY keeps mtimes, and the Dockerfile relies on knowing that
    return paths


# --- the Dockerfile -----------------------------------------------------------------------------

_VAR = re.compile(r"\\\$|\$(?:\{(\w+)(?::([-+])([^}]*))?\}|(\w+))")


def expand(text: str, env: dict[str, str]) -> str:
    """Docker's variable substitution: $VAR, ${VAR}, ${VAR:-default}, ${VAR:+alternative}, \\$."""
    def sub(m: re.Match) -> str:
        if m[0] == "\\$":
            return "$"
        name = m[1] or m[4]
        value = env.get(name, "")
        if m[2] == "-":
            return value or m[3]
        if m[2] == "+":
            return m[3] if value else ""
        return value
    return _VAR.sub(sub, text)


def instructions() -> list[dict]:
    parser = DockerfileParser(fileobj=io.BytesIO((ROOT / "Dockerfile").read_bytes()))
    return [i for i in parser.structure if i["instruction"] != "COMMENT"]


def split_stages(steps: list[dict]) -> tuple[list[dict], list[tuple[str | None, str, list[dict]]]]:
    """(instructions before the first FROM, [(stage name, base image, instructions)])."""
    preamble, stages = [], []
    for step in steps:
        if step["instruction"] == "FROM":
            words = [w for w in step["value"].split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            stages.append((name, words[0], []))
        elif stages:
            stages[-1][2].append(step)
        else:
            preamble.append(step)
    return preamble, stages


def copy_words(value: str) -> tuple[dict[str, str], list[str]]:
    """COPY's --flags and its sources and destination (shell-like or JSON form)."""
    words = value.split()
    flags = {}
    while words and words[0].startswith("--"):
        key, _, flag_value = words.pop(0)[2:].partition("=")
        flags[key] = flag_value
    rest = " ".join(words)
    return flags, (json.loads(rest) if rest.startswith("[") else rest.split())


def build_stage_name(stages) -> str:
    """The stage the final image copies from."""
    sources = {copy_words(s["value"])[0].get("from") for s in stages[-1][2] if s["instruction"] == "COPY"}
    sources.discard(None)
    assert len(sources) == 1, f"the final stage copies from {sources or 'no stage'}; expected one build stage"
    return sources.pop()


@dataclass
class Build:
    log: list[str] = field(default_factory=list)
    failure: str | None = None
    stage: str = ""
    final_copies: list[str] = field(default_factory=list)  # absolute paths in the build stage

    def require(self) -> None:
        if self.failure:
            pytest.fail(f"the build stage did not complete: {self.failure.splitlines()[0]}", pytrace=False)


def host_env() -> dict[str, str]:
    """The host's environment without what would change the build: a foreign target dir or revision, git."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PULSE_", "GIT_", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET", "CARGO_PROFILE_"))}
    # The context has no .git; without a ceiling, git would find the checkout's above FS.
    env["GIT_CEILING_DIRECTORIES"] = str(FS)
    return {**env, **CHEAP_RELEASE}


def run_build_stage() -> Build:
    build = Build()
    preamble, stages = split_stages(instructions())
    build.stage = build_stage_name(stages)
    (name, base, steps), = [s for s in stages if s[0] == build.stage]
    assert not any(base == s[0] for s in stages), "a build stage based on another stage is not emulated"
    build.final_copies = [copy_words(s["value"])[1][0] for s in stages[-1][2]
                          if s["instruction"] == "COPY" and copy_words(s["value"])[0].get("from") == build.stage]

    global_args = {}
    for step in preamble:
        assert step["instruction"] == "ARG", f"{step['instruction']} before FROM"
        for word in shlex.split(step["value"]):
            key, _, default = word.partition("=")
            global_args[key] = BUILD_ARGS.get(key, default)

    shutil.rmtree(FS, ignore_errors=True)
    FS.mkdir(parents=True)
    CARGO_TARGET.mkdir(parents=True, exist_ok=True)
    args: dict[str, str] = {}
    env: dict[str, str] = {}
    workdir = "/"
    shell = ["/bin/sh", "-c"]

    def in_fs(path: str) -> Path:
        return FS / posixpath.normpath(posixpath.join(workdir, path)).lstrip("/")

    for step in steps:
        kind, value = step["instruction"], step["value"]
        where = f"Dockerfile:{step['startline'] + 1} {kind} {' '.join(value.split())}"
        build.log.append(where)
        scope = {**args, **env}
        if kind == "ARG":
            for word in shlex.split(value):
                key, has_default, default = word.partition("=")
                if key in BUILD_ARGS:
                    args[key] = BUILD_ARGS[key]
                elif has_default:
                    args[key] = expand(default, scope)
                else:
                    args[key] = global_args.get(key, "")
        elif kind == "ENV":
            words = shlex.split(value)
            pairs = [w.partition("=")[::2] for w in words] if "=" in words[0] else [(words[0], " ".join(words[1:]))]
            for key, raw in pairs:
                env[key] = expand(raw, scope)
        elif kind == "WORKDIR":
            workdir = posixpath.normpath(posixpath.join(workdir, expand(value, scope)))
            in_fs(".").mkdir(parents=True, exist_ok=True)
            # cargo's default target dir (./target beside Cargo.toml) is the persistent cache.
            if not in_fs("target").exists():
                in_fs("target").symlink_to(CARGO_TARGET)
        elif kind == "SHELL":
            shell = json.loads(value)
        elif kind == "COPY":
            flags, words = copy_words(value)
            unsupported = set(flags) - {"chown", "chmod", "link"}
            assert not unsupported, f"{where}: --{unsupported.pop()} is not emulated"
            *sources, dest = [expand(w, scope) for w in words]
            target = in_fs(dest)
            matches = []
            for source in sources:
                rel = posixpath.normpath(source.lstrip("/"))
                found = sorted(glob.glob(rel, root_dir=CONTEXT)) if re.search(r"[*?\[]", rel) else \
                    ([rel] if (CONTEXT / rel).exists() or (CONTEXT / rel).is_symlink() else [])
                if not found:
                    build.failure = (f"{where}: {source!r} is not in the build context (missing, or excluded "
                                     f"by .dockerignore)")
                    return build
                matches += found
            into_dir = dest.endswith("/") or len(matches) > 1 or target.is_dir()
            for rel in matches:
                src = CONTEXT / rel
                if src.is_dir() and not src.is_symlink():
                    shutil.copytree(src, target, symlinks=True, dirs_exist_ok=True)  # its contents
                else:
                    dst = target / src.name if into_dir else target
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dst, follow_symlinks=False)
        elif kind == "RUN":
            command = value
            while re.match(r"--\w+(=\S*)?\s", command):  # --mount, --network: caching and isolation only
                command = command.split(None, 1)[1]
            argv = json.loads(command) if command.startswith("[") else [*shell, command]
            started = time.monotonic()
            try:
                result = subprocess.run(argv, cwd=in_fs("."), env={**host_env(), **args, **env},
                                        capture_output=True, text=True, timeout=STEP_TIMEOUT)
            except subprocess.TimeoutExpired:
                build.failure = f"{where}: still running after {STEP_TIMEOUT} s"
                return build
            build.log.append(f"  exit {result.returncode} after {time.monotonic() - started:.0f} s")
            if result.returncode != 0:
                build.failure = f"{where}: exit code {result.returncode}\n{result.stdout[-4000:]}{result.stderr[-8000:]}"
                return build
        elif kind == "ADD":
            build.failure = f"{where}: ADD is not emulated (use COPY)"
            return build
        # Other instructions (USER, LABEL, EXPOSE, CMD...) change no file of the build stage.
    return build


@pytest.fixture(scope="module")
def build() -> Build:
    materialise_context()
    result = run_build_stage()
    print("\n".join(result.log))
    return result


# --- tests --------------------------------------------------------------------------------------

def test_the_build_context_holds_sources_only():
    paths = context_paths()
    assert "Cargo.toml" in paths and "Cargo.lock" in paths
    leaked = [p for p in paths if p.split("/")[0] in {".git", "target", ".venv", ".venv-checkov", ".tmp"}]
    assert leaked == [], "build output, the git history or local tools in the build context"


def test_the_build_stage_runs_to_the_end(build):
    if build.failure:
        pytest.fail(build.failure, pytrace=False)


def test_the_final_stage_finds_what_it_copies_from_the_build_stage(build):
    build.require()
    assert build.final_copies, f"the final stage copies nothing from {build.stage}"
    for path in build.final_copies:
        assert (FS / path.lstrip("/")).exists(), f"COPY --from={build.stage} {path}: not in the build stage"


def test_the_built_binary_reports_the_revision_build_argument(build):
    build.require()
    binary = next(p for p in build.final_copies if p.endswith("/pulse"))
    server = PulseProcess(binary=str(FS / binary.lstrip("/")))
    try:
        assert server.json("/version")["revision"] == REVISION
    finally:
        server.stop()


# --- cross-compilation (the release's linux/arm64 image) ----------------------------------------

def cross_step() -> tuple[list[str], str]:
    """(the build stage's SHELL, its RUN that sets the Rust target up)."""
    _, stages = split_stages(instructions())
    (_, _, steps), = [s for s in stages if s[0] == build_stage_name(stages)]
    shell = next((json.loads(s["value"]) for s in steps if s["instruction"] == "SHELL"), ["/bin/sh", "-c"])
    (run,) = [s["value"] for s in steps if s["instruction"] == "RUN" and "rustup target add" in s["value"]]
    return shell, run


def run_cross_step(tmp_path: Path, target_arch: str, build_arch: str) -> tuple[subprocess.CompletedProcess, Path]:
    """The step as BuildKit runs it for TARGETARCH on a BUILDARCH builder, with apt-get and rustup
    replaced by fakes that log their arguments (nothing is installed here)."""
    fakes = tmp_path / "bin"
    fakes.mkdir()
    for tool in ("apt-get", "rustup"):
        (fakes / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {tmp_path / "calls.log"}\n')
        (fakes / tool).chmod(0o755)
    workdir = tmp_path / "src"
    workdir.mkdir()
    shell, command = cross_step()
    env = {**host_env(), "PATH": f"{fakes}:{os.environ['PATH']}", "TARGETARCH": target_arch, "BUILDARCH": build_arch}
    result = subprocess.run([*shell, command], cwd=workdir, env=env, capture_output=True, text=True, timeout=60)
    return result, tmp_path


def host_triple() -> str:
    return re.search(r"^host: (\S+)$", subprocess.run(["rustc", "-vV"], capture_output=True, text=True).stdout, re.M)[1]


def test_an_arm64_image_is_cross_compiled_with_debians_cross_gcc(tmp_path):
    import tomllib
    result, root = run_cross_step(tmp_path, "arm64", "amd64")
    assert result.returncode == 0, result.stderr
    calls = (root / "calls.log").read_text().splitlines()
    assert "rustup target add aarch64-unknown-linux-gnu" in calls
    (install,) = [c for c in calls if c.startswith("apt-get install")]
    assert {"gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross", "--no-install-recommends"} <= set(install.split())
    config = tomllib.loads((root / "src" / ".cargo" / "config.toml").read_text())
    assert config["build"]["target"] == "aarch64-unknown-linux-gnu"
    assert config["target"]["aarch64-unknown-linux-gnu"]["linker"] == "aarch64-linux-gnu-gcc"
    # ring's and psm's build scripts compile C and assembly with the cc crate, which reads these.
    assert config["env"] == {"CC_aarch64_unknown_linux_gnu": "aarch64-linux-gnu-gcc",
                             "AR_aarch64_unknown_linux_gnu": "aarch64-linux-gnu-ar"}
    assert not (root / "src" / ".cargo-cross.toml").exists()


def test_a_native_build_installs_nothing_and_targets_the_host(tmp_path):
    result, root = run_cross_step(tmp_path, "amd64", "amd64")
    assert result.returncode == 0, result.stderr
    assert not (root / "calls.log").exists(), "no cross toolchain for a native build"
    config = (root / "src" / ".cargo" / "config.toml").read_text()
    assert config == f'[build]\ntarget = "{host_triple()}"\n'


def test_an_architecture_without_a_cross_toolchain_is_refused(tmp_path):
    result, _ = run_cross_step(tmp_path, "riscv64", "amd64")
    assert result.returncode == 1
    assert "no cross toolchain for TARGETARCH=riscv64 (amd64 and arm64 are built)" in result.stderr


def test_the_image_copies_the_binary_of_the_configured_target():
    """The last build step copies target/<the configured triple>/release/pulse to the path the final
    stage copies from: a cross build's binary, not the builder's."""
    _, stages = split_stages(instructions())
    (_, _, steps), = [s for s in stages if s[0] == build_stage_name(stages)]
    last_run = [s["value"] for s in steps if s["instruction"] == "RUN"][-1]
    assert 'cp "target/$triple/release/pulse" pulse' in last_run
    assert "s/^target = " in last_run and ".cargo/config.toml" in last_run
    assert "--from=build /src/pulse /usr/local/bin/pulse" in " ".join(
        s["value"] for s in stages[-1][2] if s["instruction"] == "COPY")

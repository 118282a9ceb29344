"""The shell scripts (lab, e2e, CI) pass shellcheck: they cannot run here (no Docker), so lint them."""

import re
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


# --- what the lab scripts say when a tool or the Docker daemon is missing ------------------------

def bin_dir(tmp_path, *tools: str, fakes: dict[str, str] | None = None) -> str:
    """A PATH holding only these host tools (symlinked) and fake scripts: nothing else is installed."""
    directory = tmp_path / "bin"
    directory.mkdir()
    for tool in tools:
        (directory / tool).symlink_to(shutil.which(tool))
    for name, script in (fakes or {}).items():
        (directory / name).write_text("#!/bin/sh\n" + script)
        (directory / name).chmod(0o755)
    return str(directory)


def test_kind_up_names_every_missing_tool_in_one_message(tmp_path):
    path = bin_dir(tmp_path, "bash", "dirname")
    result = subprocess.run([shutil.which("bash"), "scripts/kind-up.sh"], capture_output=True, text=True,
                            cwd=ROOT, env={"PATH": path}, timeout=30)
    assert result.returncode == 1
    first, *hints = result.stderr.splitlines()
    assert first == "error: not installed: docker kind helm kubectl cargo. Get them:"
    assert [h.split(":")[0].strip() for h in hints] == ["docker", "kind", "helm", "kubectl", "cargo"]
    assert all("https://" in h for h in hints), hints


@pytest.mark.parametrize("docker_says, expected", [
    ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
     "docker is installed but its daemon is not running"),
    ("permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock",
     "docker's daemon socket refuses user"),
], ids=["daemon-not-running", "permission-denied"])
def test_make_image_explains_a_docker_daemon_it_cannot_use(tmp_path, docker_says, expected):
    fake = f'[ "$1" = info ] && {{ echo "Client: fake"; echo "{docker_says}" >&2; exit 1; }}\n' \
           'echo "docker $*: must not run" >&2; exit 99\n'
    path = bin_dir(tmp_path, "bash", "dirname", "id", "grep", "tail", "git", fakes={"docker": fake})
    result = subprocess.run([shutil.which("make"), "-s", "image"], capture_output=True, text=True, cwd=ROOT,
                            env={"PATH": path, "HOME": str(tmp_path)}, timeout=60)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if not line.startswith("make:")]
    assert len(errors) == 1 and errors[0].startswith("error: " + expected), result.stderr
    assert "must not run" not in result.stderr, "docker build ran against a daemon it cannot use"


def test_make_help_expands_the_variables_it_mentions():
    result = subprocess.run([shutil.which("make"), "-s", "help", "IMAGE=registry.example/pulse:1.2"],
                            capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert "$(" not in result.stdout, result.stdout
    assert "Build the container image registry.example/pulse:1.2" in result.stdout


# --- make grafana / make prometheus without a cluster ---------------------------------------------

# kubectl as far as these targets use it, reading the context from $KUBECONFIG; every call is logged.
FAKE_KUBECTL = r"""echo "$*" >> "$KUBECTL_LOG"
context=$(sed -n 's/^current-context: *//p' "$KUBECONFIG" 2>/dev/null)
case "$*" in
  "config current-context")
    [ -n "$context" ] || { echo "error: current-context is not set" >&2; exit 1; }
    echo "$context" ;;
  *" get svc "*)
    for svc in $SERVICES; do case "$*" in *" get svc $svc "*) echo "service/$svc"; exit 0 ;; esac; done
    echo "Error from server (NotFound): services \"${*##* get svc }\" not found" | sed 's/ -o name//' >&2; exit 1 ;;
  *" get secret "*) echo cHc= ;;
  *) echo "kubectl $*: must not run" >&2; exit 99 ;;
esac
"""
# A kubectl that logs its calls, then runs the real one.
RECORDING_KUBECTL = 'echo "$*" >> "$KUBECTL_LOG"\nexec {real} "$@"\n'
PORT_FORWARDS = {"grafana": "pulse-grafana", "prometheus": "pulse-kps-prometheus"}


def make_port_forward(tmp_path, target: str, kubeconfig: str, kubectl: str, services: str = ""):
    """`make TARGET` with this kubeconfig and kubectl: (result, kubectl's calls)."""
    config = tmp_path / "kubeconfig"
    config.write_text(kubeconfig)
    log = tmp_path / "kubectl.log"
    path = bin_dir(tmp_path, "bash", "dirname", "sed", "grep", "tail", "base64", fakes={"kubectl": kubectl})
    result = subprocess.run([shutil.which("make"), "-s", target], capture_output=True, text=True, cwd=ROOT,
                            env={"PATH": path, "HOME": str(tmp_path), "KUBECONFIG": str(config),
                                 "KUBECTL_LOG": str(log), "SERVICES": services}, timeout=60)
    calls = log.read_text().splitlines() if log.exists() else []
    return result, calls


def kubectl_fakes():
    yield pytest.param(FAKE_KUBECTL, id="fake-kubectl")
    real = shutil.which("kubectl")
    yield pytest.param(RECORDING_KUBECTL.format(real=real), id="real-kubectl",
                       marks=pytest.mark.skipif(real is None, reason="kubectl is not installed"))


@pytest.mark.parametrize("kubectl", list(kubectl_fakes()))
@pytest.mark.parametrize("target", sorted(PORT_FORWARDS))
def test_make_port_forward_targets_stop_without_a_kube_context(tmp_path, target, kubectl):
    """An empty kubeconfig: one line saying so, and kubectl is asked for nothing but the context (never
    the default http://localhost:8080 a kubectl without a context talks to)."""
    result, calls = make_port_forward(tmp_path, target, "", kubectl)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if not line.startswith("make:")]
    assert errors == ["error: kubectl has no current context (no cluster configured): run make kind-up, "
                      "or pick one with kubectl config use-context NAME"], result.stderr
    assert calls == ["config current-context"], "kubectl was asked for more than the context"
    assert "must not run" not in result.stderr


@pytest.mark.parametrize("target", sorted(PORT_FORWARDS))
def test_make_port_forward_targets_stop_when_the_service_is_missing(tmp_path, target):
    result, calls = make_port_forward(tmp_path, target, "current-context: lab\n", FAKE_KUBECTL)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if not line.startswith("make:")]
    service = PORT_FORWARDS[target]
    assert len(errors) == 1 and errors[0].startswith(
        f"error: no Service {service} in namespace monitoring of kube context 'lab' (make kind-up first, or set "
        "NAMESPACE): kubectl says: Error from server (NotFound)"), result.stderr
    assert not any("port-forward" in call or "secret" in call for call in calls), calls


@pytest.mark.parametrize("target", sorted(PORT_FORWARDS))
def test_make_port_forward_targets_forward_when_the_service_is_there(tmp_path, target):
    service = PORT_FORWARDS[target]
    result, calls = make_port_forward(tmp_path, target, "current-context: lab\n", FAKE_KUBECTL, services=service)
    assert calls[-1].startswith(f"-n monitoring port-forward svc/{service} "), calls
    assert f"kubectl {calls[-1]}: must not run" in result.stderr  # the fake's answer to the port-forward


# --- the lab scripts with any release name ------------------------------------------------------

def script_selector(release: str) -> dict[str, str]:
    """The label selector the lab scripts find Pulse's Service with (scripts/lib.sh), for `release`."""
    result = subprocess.run([shutil.which("bash"), "-c", 'source scripts/lib.sh; echo "$PULSE_SELECTOR"'],
                            capture_output=True, text=True, cwd=ROOT, env={"RELEASE": release, "PATH": "/usr/bin:/bin"},
                            timeout=30)
    assert result.returncode == 0, result.stderr
    return dict(pair.split("=", 1) for pair in result.stdout.strip().split(","))


@pytest.mark.parametrize("release", ["pulse", "demo", "my-pulse-lab"])
def test_the_lab_scripts_find_pulse_whatever_the_release_is_called(release):
    """`RELEASE=demo make kind-up` names the objects demo-pulse: the scripts (and tests/integration/e2e.rs, which
    selects the same labels) find the Service by label, and Prometheus's job label is its name."""
    import pulsechart as pc

    objects = pc.objects_of(pc.render_set("kind", name=release, namespace="monitoring"))
    selector = script_selector(release).items()
    services = [o for o in objects if o["kind"] == "Service" and selector <= o["metadata"]["labels"].items()]
    assert len(services) == 1, [s["metadata"]["name"] for s in services]
    name = services[0]["metadata"]["name"]
    assert name == (release if "pulse" in release else f"{release}-pulse")
    deployments = {o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"}
    assert name in deployments, "tests/integration/e2e.rs rolls the Deployment of the Service's name"
    (monitor,) = [o for o in objects if o["kind"] == "ServiceMonitor"
                  and o["spec"]["selector"]["matchLabels"].items() <= services[0]["metadata"]["labels"].items()]
    assert "jobLabel" not in monitor["spec"], "the job label is then the Service name"


def test_no_lab_script_uses_the_release_name_as_an_object_name():
    forbidden = re.compile(r'(svc|deploy|deployment)/"?\$\{?RELEASE|port_forward "\$RELEASE"|job=\\?"\$\{?RELEASE'
                           r'|\$\(RELEASE\)-|svc/\$\(RELEASE\)')
    for path in sorted(ROOT.glob("scripts/*.sh")) + [ROOT / "Makefile"]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not forbidden.search(line), f"{path.name}:{number}: {line.strip()}"
    e2e = (ROOT / "tests" / "integration" / "e2e.rs").read_text()
    assert "get(&lab.release)" not in e2e and "service_get(&lab.release" not in e2e

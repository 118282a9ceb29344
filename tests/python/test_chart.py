"""The Helm chart, rendered by the real Helm v4 engine (helm-python-sdk), validated strictly.

Covers: renders and `helm lint --strict` for every value set; strict Kubernetes 1.33 schemas for core
objects, the prometheus-operator CRD schemas (unknown fields rejected) for monitoring objects and the
Gateway API's for the HTTPRoute (its own tests: test_httproute.py); the wiring between objects;
restricted pod security; values.schema.json; dashboards and manifests in sync.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import time
import tomllib
import urllib.parse
from pathlib import Path

import helm_python
import jsonschema
import kubernetes_validate
import pulsechart as pc
import pytest
import yaml
from conftest import Pulse, PulseProcess, free_port
from crds import crd_text, gateway_api_crd_text

ROOT = pc.ROOT
KUBE_VERSION = "1.33.0"
VALUE_SETS = list(pc.VALUE_SETS)
# Kind -> the plural of its CRD (tests/python/crds.py gets the pinned schemas).
MONITORING_KINDS = {"ServiceMonitor": "servicemonitors", "PrometheusRule": "prometheusrules"}
# Kind -> the plural of its Gateway API CRD (vendored in tests/crds/, pinned in crds.py).
GATEWAY_KINDS = {"HTTPRoute": "httproutes"}


def kinds(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def one(objects, kind):
    found = kinds(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


@pytest.fixture(scope="module", params=VALUE_SETS)
def rendered(request):
    """(value set name, values, objects) for each value set."""
    values = pc.load_values(request.param)
    return request.param, values, pc.objects_of(pc.render_set(request.param, name="lab", namespace="monitoring"))


# --- 1. renders and lint ------------------------------------------------------------------------

def test_every_value_set_renders_pulse(rendered):
    name, _, objects = rendered
    pulse_deployment(objects)
    pulse_service(objects)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm_lint_strict_has_no_findings(value_set):
    chart = pc.assembled(pc.chart_of(value_set))
    report = helm_python.lint(str(chart), pc.load_values(value_set), strict=True, kube_version="v" + KUBE_VERSION)
    findings = [m for m in report["messages"] if m["severity"] >= 2
                # The stack's subchart is fetched by `helm dependency build`, not committed.
                and "missing these dependencies: kube-prometheus-stack" not in m["error"]]
    assert findings == []


def test_optional_features_follow_their_switches():
    on = pc.render_objects(pc.load_values("all-on"))
    off = pc.render_objects(pc.load_values("all-off"))
    for kind in ["HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "Ingress", "ServiceMonitor",
                 "PrometheusRule", "ServiceAccount", "ConfigMap", "Pod", "Role", "RoleBinding", "HTTPRoute"]:
        assert kinds(on, kind), f"{kind} missing with every feature on"
        assert not kinds(off, kind), f"{kind} rendered with every feature off"
    assert "replicas" not in pulse_deployment(on)["spec"], "the HPA owns the replica count"


# --- 2. schemas ---------------------------------------------------------------------------------

def test_core_objects_pass_strict_kubernetes_validation(rendered):
    _, _, objects = rendered
    for obj in objects:
        if obj["kind"] in MONITORING_KINDS | GATEWAY_KINDS:  # validated against their CRDs
            continue
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {str(e).splitlines()[0]}")


def closed(schema):
    """The CRD schema with unknown fields rejected wherever it lists properties."""
    schema = copy.deepcopy(schema)

    def visit(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    return schema


def crd_validator(kind, version="v1"):
    """The `version` schema of `kind`'s pinned CRD, with unknown fields rejected."""
    text = gateway_api_crd_text(GATEWAY_KINDS[kind]) if kind in GATEWAY_KINDS else crd_text(MONITORING_KINDS[kind])
    docs = yaml.safe_load_all(text)
    crd = next(d for d in docs if d and d.get("kind") == "CustomResourceDefinition")
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = closed(served["schema"]["openAPIV3Schema"])
    # metadata is `type: object` in CRDs; the API server validates it, not the CRD.
    return jsonschema.Draft7Validator(schema)


def test_monitoring_objects_pass_the_operator_crd_schemas(rendered):
    _, _, objects = rendered
    for kind in MONITORING_KINDS:
        validator = crd_validator(kind)
        for obj in kinds(objects, kind):
            errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(obj)]
            assert errors == [], f"{kind}: {errors}"


def test_the_crd_check_rejects_unknown_fields():
    objects = pc.render_objects({})
    monitor = copy.deepcopy(one(objects, "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["intervall"] = "5s"
    assert list(crd_validator("ServiceMonitor").iter_errors(monitor)), "a misspelled field must fail"


# --- 3. wiring ----------------------------------------------------------------------------------

def instances(objects) -> dict[str, list[dict]]:
    """The objects of each Pulse the render holds, by `app.kubernetes.io/name` (`pulse`, and
    `pulse-backend` where the stack deploys a second one); the load generator's are not among them."""
    found: dict[str, list[dict]] = {}
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        if labels.get("app.kubernetes.io/component") == "server":
            found.setdefault(labels["app.kubernetes.io/name"], []).append(obj)
    return found


def pulse_deployment(objects, name="pulse"):
    """The Deployment of the Pulse `name` (the load generator, when enabled, is another one)."""
    (deployment,) = kinds(instances(objects)[name], "Deployment")
    return deployment


def pulse_service(objects, name="pulse"):
    (service,) = kinds(instances(objects)[name], "Service")
    return service


def container(deployment):
    return deployment["spec"]["template"]["spec"]["containers"][0]


def test_servicemonitor_selects_the_service_and_names_its_port(rendered):
    name, _, objects = rendered
    monitors = kinds(objects, "ServiceMonitor")
    if not monitors:
        assert name == "all-off"
        return
    for name, owned in instances(objects).items():
        service = pulse_service(objects, name)
        (monitor,) = kinds(owned, "ServiceMonitor")
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert selector.items() <= service["metadata"]["labels"].items()
        others = [s for s in kinds(objects, "Service") if s is not service]
        assert not any(selector.items() <= s["metadata"]["labels"].items() for s in others), name
        port_names = {p["name"] for p in service["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in port_names
            assert endpoint["path"] == "/metrics"


def test_service_selects_pulse_pods_and_only_them(rendered):
    _, _, objects = rendered
    service = pulse_service(objects)
    selector = service["spec"]["selector"].items()
    pod_labels = pulse_deployment(objects)["spec"]["template"]["metadata"]["labels"]
    assert selector <= pod_labels.items()
    for test_pod in kinds(objects, "Pod"):
        assert not selector <= test_pod["metadata"]["labels"].items(), "helm test pods must not receive traffic"
    assert service["spec"]["ports"][0]["targetPort"] in {p["name"] for p in container(pulse_deployment(objects))["ports"]}


def test_monitoring_objects_carry_the_release_label():
    objects = pc.render_objects({"serviceMonitor": {"labels": {"team": "sre"}}}, name="lab")
    for kind in MONITORING_KINDS:
        labels = one(objects, kind)["metadata"]["labels"]
        assert labels["release"] == "lab"
    assert one(objects, "ServiceMonitor")["metadata"]["labels"]["team"] == "sre"
    # A user can point them at another Prometheus.
    other = pc.render_objects({"serviceMonitor": {"labels": {"release": "monitoring"}}}, name="lab")
    assert one(other, "ServiceMonitor")["metadata"]["labels"]["release"] == "monitoring"


def test_one_dashboard_configmap_per_file_with_the_sidecar_label(rendered):
    name, values, objects = rendered
    files = sorted(p.name for p in (pc.CHART / "dashboards").glob("*.json"))
    maps = [cm for cm in kinds(objects, "ConfigMap") if "grafana_dashboard" in cm["metadata"]["labels"]]
    if not values.get("dashboards", {}).get("enabled", True):
        assert maps == []
        return
    assert len(maps) == len(files) >= 1
    shipped = {}
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"  # the string "1"
        assert cm["metadata"]["annotations"]["grafana_folder"] == "Pulse"
        (key, text), = cm["data"].items()
        shipped[key] = json.loads(text)
    assert sorted(shipped) == files
    for file in files:
        assert shipped[file] == json.loads((pc.CHART / "dashboards" / file).read_text())


def test_probes_use_paths_and_ports_the_container_has(rendered):
    _, _, objects = rendered
    c = container(pulse_deployment(objects))
    ports = {p["name"] for p in c["ports"]}
    expected = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    for probe, path in expected.items():
        assert c[probe]["httpGet"]["path"] == path
        assert c[probe]["httpGet"]["port"] in ports


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s)", duration)
    assert match, duration
    return int(match[1]) / (1000 if match[2] == "ms" else 1)


def test_grace_period_exceeds_shutdown_delay_plus_timeout(rendered):
    _, _, objects = rendered
    deployment = pulse_deployment(objects)
    env = {e["name"]: e.get("value") for e in container(deployment)["env"]}
    needed = seconds(env["PULSE_SHUTDOWN_DELAY"]) + seconds(env["PULSE_SHUTDOWN_TIMEOUT"])
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > needed


def test_the_binary_accepts_the_environment_the_chart_gives_it():
    """Every PULSE_* value the chart renders (durations, limits) parses in the real binary."""
    objects = pc.render_objects({"config": {"maxConcurrency": 64, "headerReadTimeoutSeconds": 7, "maxStoreBytes": 4096,
                                            "requestTimeoutSeconds": 9, "faultDelayMaxMs": 250}})
    env = {e["name"]: e["value"] for e in container(pulse_deployment(objects))["env"]
           if e["name"].startswith("PULSE_") and "value" in e}
    assert env["PULSE_MAX_CONCURRENCY"] == "64"
    assert env["PULSE_HEADER_READ_TIMEOUT"] == "7s"
    assert env["PULSE_MAX_STORE_BYTES"] == "4096"
    assert env["PULSE_ADMIN_ADDR"] == "0.0.0.0:8081"
    env["PULSE_KUBE"] = "off"  # no cluster here
    admin = Pulse(free_port())
    env["PULSE_ADMIN_ADDR"] = admin.base.removeprefix("http://")  # a free port, not 8081
    server = PulseProcess(env=env)
    try:
        assert admin.json("/admin/runtime")["fault_delay_max"] == "250ms"
        assert server.request("GET", "/admin/runtime")[0] == 404, "not on the http port"
    finally:
        server.stop()


def test_the_admin_port_is_off_the_service_and_closed_by_the_network_policy():
    objects = pc.render_objects({"networkPolicy": {"enabled": True, "from": [{"podSelector": {}}]}})
    ports = {p["name"]: p["containerPort"] for p in container(pulse_deployment(objects))["ports"]}
    assert ports == {"http": 8080, "admin": 8081}
    (service,) = kinds(objects, "Service")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    policies = {p["metadata"]["name"]: p["spec"] for p in kinds(objects, "NetworkPolicy")}
    policy = policies["pulse"]
    assert [[p["port"] for p in rule["ports"]] for rule in policy["ingress"]] == [["http"]], \
        "no rule for admin: nobody reaches it through the network"
    # The chart's own clients (test pods here) take no connections and reach only Pulse and DNS.
    clients = policies["pulse-clients"]
    assert clients["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in clients
    assert [[p["port"] for p in rule["ports"]] for rule in clients["egress"]] == [["http"], [53, 53]]
    assert clients["egress"][0]["to"] == [{"podSelector": {"matchLabels": pulse_deployment(objects)["spec"]
                                                           ["selector"]["matchLabels"]}}]

    peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}}}]
    objects = pc.render_objects({"networkPolicy": {"enabled": True, "adminFrom": peers}})
    policy = {p["metadata"]["name"]: p["spec"] for p in kinds(objects, "NetworkPolicy")}["pulse"]
    admin_rules = [r for r in policy["ingress"] if r["ports"][0]["port"] == "admin"]
    assert [r["from"] for r in admin_rules] == [peers]

    shared = pc.render_objects({"adminPort": 0})
    env = {e["name"] for e in container(pulse_deployment(shared))["env"]}
    assert "PULSE_ADMIN_ADDR" not in env
    with pytest.raises(helm_python.HelmError, match="adminPort must differ"):
        pc.render({"adminPort": 8080})


def test_a_too_short_grace_period_is_refused():
    with pytest.raises(helm_python.HelmError, match="must exceed"):
        pc.render({"terminationGracePeriodSeconds": 15})


def test_downward_api_identity_is_passed(rendered):
    _, _, objects = rendered
    env = {e["name"]: e for e in container(pulse_deployment(objects))["env"]}
    for var, field in [("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace"),
                       ("NODE_NAME", "spec.nodeName")]:
        assert env[var]["valueFrom"]["fieldRef"]["fieldPath"] == field


def pods(objects):
    """(name, pod spec) of every pod the chart creates: the Deployment's and the test pods."""
    specs = [(d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in kinds(objects, "Deployment")]
    specs += [(p["metadata"]["name"], p["spec"]) for p in kinds(objects, "Pod")]
    return specs


# The only volume types the restricted profile allows (no hostPath, nfs, ...).
RESTRICTED_VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                           "projected", "secret"}


def test_every_pod_meets_the_restricted_pod_security_standard(rendered):
    """Field by field, as the restricted profile of the Pod Security Standards lists them."""
    _, _, objects = rendered
    for name, spec in pods(objects):
        pod_sc = spec.get("securityContext", {})
        for flag in ["hostNetwork", "hostPID", "hostIPC"]:
            assert not spec.get(flag), f"{name}: {flag}"
        for volume in spec.get("volumes", []):
            kinds_of_volume = set(volume) - {"name"}
            assert kinds_of_volume <= RESTRICTED_VOLUME_TYPES, f"{name}: {kinds_of_volume}"
        assert not pod_sc.get("sysctls"), name
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c.get("securityContext", {})
            where = f"{name}/{c['name']}"
            assert not sc.get("privileged"), where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert "ALL" in sc.get("capabilities", {}).get("drop", []), where
            assert set(sc.get("capabilities", {}).get("add", [])) <= {"NET_BIND_SERVICE"}, where
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
            assert isinstance(uid, int) and uid > 0, f"{where}: a fixed non-root uid"
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
            assert seccomp in {"RuntimeDefault", "Localhost"}, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            for port in c.get("ports", []):
                assert "hostPort" not in port, where


def test_rbac_grants_exactly_the_runtime_configmap_and_events():
    objects = pc.render_objects({}, name="lab")
    deployment = pulse_deployment(objects)
    env = {e["name"]: e.get("value") for e in container(deployment)["env"]}
    configmap = env["PULSE_RUNTIME_CONFIGMAP"]
    assert env["PULSE_KUBE"] == "on"
    assert [cm["metadata"]["name"] for cm in kinds(objects, "ConfigMap")
            if "grafana_dashboard" not in cm["metadata"]["labels"]] == [configmap]
    role = one(objects, "Role")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [configmap],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ]
    assert not kinds(objects, "ClusterRole") and not kinds(objects, "ClusterRoleBinding")
    binding = one(objects, "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    account = one(objects, "ServiceAccount")["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "monitoring"}]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is True
    uid = [e for e in container(deployment)["env"] if e["name"] == "POD_UID"]
    assert uid[0]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.uid"


def test_without_the_kube_feature_there_is_no_token_and_no_rbac():
    objects = pc.render_objects({"kube": {"enabled": False}})
    deployment = pulse_deployment(objects)
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert not kinds(objects, "Role") and not kinds(objects, "RoleBinding")
    env = {e["name"]: e.get("value") for e in container(deployment)["env"]}
    assert env["PULSE_KUBE"] == "off"


def test_runtime_configmap_documents_every_key_and_takes_overrides():
    objects = pc.render_objects({"config": {"faultErrorRate": 0.1},
                                 "runtimeConfig": {"settings": {"force_unready": True}}})
    (runtime,) = [cm for cm in kinds(objects, "ConfigMap") if cm["metadata"]["name"] == "pulse-runtime"]
    assert runtime["data"] == {"log_level": "info", "fault_error_rate": "0.1", "fault_delay_max": "0ms",
                               "force_unready": "true"}


def test_requests_and_limits_are_set_by_default():
    resources = container(pulse_deployment(pc.render_objects({})))["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert {"cpu", "memory"} <= resources["limits"].keys()


def release_image() -> str:
    """The repository the release workflow pushes the image to."""
    return yaml.safe_load((ROOT / ".github" / "workflows" / "release.yaml").read_text())["env"]["IMAGE"]


def test_the_crate_version_app_version_and_default_image_are_one_fact():
    """A fresh `helm install` pulls the image the release of this very version pushed: the tag is the
    chart's appVersion, which is the crate version, and the repository is the release workflow's."""
    crate = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
    assert yaml.safe_load((pc.CHART / "Chart.yaml").read_text())["appVersion"] == crate
    assert yaml.safe_load((pc.STACK / "Chart.yaml").read_text())["appVersion"] == crate
    assert release_image() == "ghcr.io/pulse-observability/pulse"
    for objects in (pc.render_objects({}), pc.render_objects({}, name="pulse", chart=pc.STACK)):
        deployment = pulse_deployment(objects)
        assert container(deployment)["image"] == f"{release_image()}:{crate}"
        assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == crate
    manifests = (ROOT / "manifests" / "pulse.yaml").read_text()
    assert f"image: {release_image()}:{crate}" in manifests


def test_the_kind_lab_runs_the_locally_built_image_never_the_published_one():
    """`make kind-up` tests the working tree: it builds $(IMAGE) (pulse:dev), loads it into the node
    and installs with that image and pullPolicy Never, for both Pulses of the lab."""
    values = pc.load_values("kind")
    default_image = re.search(r"^IMAGE\s*\?=\s*(\S+)$", (ROOT / "Makefile").read_text(), re.M)[1]
    assert default_image == "pulse:dev"
    assert "IMAGE=${IMAGE:-pulse:dev}" in (ROOT / "scripts" / "lib.sh").read_text()
    repository, tag = default_image.split(":")
    objects = pc.render_objects(values, name="pulse", chart=pc.STACK)
    for pulse in ("pulse", "pulse-backend"):
        assert values[pulse]["image"] == {"repository": repository, "tag": tag, "pullPolicy": "Never"}
    images = {container(d)["image"] for d in kinds(objects, "Deployment")
              if container(d)["name"] == "pulse" or d["metadata"]["name"].endswith("loadgen")}
    assert images == {default_image}
    assert not any(release_image() in str(d) for d in kinds(objects, "Deployment"))
    # kind-up.sh also names $IMAGE on the command line, so IMAGE=other:tag make kind-up is followed.
    kind_up = (ROOT / "scripts" / "kind-up.sh").read_text()
    for pulse in ("pulse", "pulse-backend"):
        assert f'{pulse}.image.repository="${{IMAGE%:*}}",{pulse}.image.tag="${{IMAGE##*:}}"' in kind_up


def test_the_load_generator_renders_only_when_enabled_and_targets_the_service():
    assert not [d for d in kinds(pc.render_objects({}), "Deployment") if d["metadata"]["name"].endswith("-loadgen")]
    objects = pc.render_objects({"loadgen": {"enabled": True, "rate": 7}}, name="lab")
    (loadgen,) = [d for d in kinds(objects, "Deployment") if d["metadata"]["name"] == "lab-pulse-loadgen"]
    pulse = pulse_deployment(objects)
    service = one(objects, "Service")
    spec, pulse_spec = loadgen["spec"]["template"]["spec"], pulse["spec"]["template"]["spec"]
    assert spec["securityContext"] == pulse_spec["securityContext"]
    assert spec["containers"][0]["securityContext"] == pulse_spec["containers"][0]["securityContext"]
    assert spec["containers"][0]["image"] == pulse_spec["containers"][0]["image"]
    args = spec["containers"][0]["args"]
    assert args[0] == "load"
    target = args[args.index("--target") + 1]
    assert target == f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    assert args[args.index("--rate") + 1] == "7" and args[args.index("--duration") + 1] == "forever"
    selector = service["spec"]["selector"].items()
    assert not selector <= loadgen["spec"]["template"]["metadata"]["labels"].items(), "no traffic to the loadgen"
    assert pc.load_values("kind")["pulse"]["loadgen"]["enabled"] is True


def test_kind_values_wire_grafana_login_through_a_generated_secret():
    values = pc.load_values("kind")
    objects = pc.render_objects(values, name="pulse", chart=pc.STACK)
    kps = yaml.safe_load((pc.STACK / "values.yaml").read_text())["kube-prometheus-stack"]
    admin = kps["grafana"]["admin"]
    (secret,) = [o for o in kinds(objects, "Secret") if o["metadata"]["name"] == admin["existingSecret"]]
    assert set(secret["data"]) == {admin["userKey"], admin["passwordKey"]}
    import base64
    password = base64.b64decode(secret["data"][admin["passwordKey"]]).decode()
    assert len(password) >= 16 and password != "admin"
    notes = pc.render(values, name="pulse", chart=pc.STACK)["pulse-stack/templates/NOTES.txt"]
    assert f"port-forward svc/{kps['grafana']['fullnameOverride']} 3000:80" in notes
    assert f"get secret {admin['existingSecret']}" in notes
    assert f"port-forward svc/{kps['fullnameOverride']}-prometheus 9090:9090" in notes


def test_a_given_grafana_password_is_used():
    objects = pc.render_objects({"grafanaAdmin": {"password": "s3cret-enough"}}, chart=pc.STACK)
    import base64
    assert base64.b64decode(one(objects, "Secret")["data"]["admin-password"]) == b"s3cret-enough"


# --- 4. values.schema.json ----------------------------------------------------------------------

@pytest.mark.parametrize("values, why", [
    ({"replicas": 3}, "unknown top-level key"),
    ({"replicaCount": -1}, "negative replica count"),
    ({"service": {"port": "http"}}, "non-integer port"),
    ({"service": {"port": 80.5}}, "fractional port"),
    ({"containerPort": 70000}, "port out of range"),
    ({"image": {"pullPolicy": "Sometimes"}}, "bad image pull policy"),
    ({"image": {"tga": "1.0"}}, "unknown nested key"),
    ({"config": {"faultErrorRate": 1.5}}, "error rate above 1"),
    ({"config": {"logFormat": "xml"}}, "unknown log format"),
    ({"serviceMonitor": {"interval": "often"}}, "not a duration"),
    ({"dashboards": {"labelValue": 1}}, "label value must be a string"),
])
def test_schema_rejects(values, why):
    with pytest.raises(helm_python.HelmValuesError):
        pc.render(values)


def test_schema_accepts_the_shipped_value_sets():
    for name in VALUE_SETS:
        pc.render_set(name)


# --- 5. sources in sync -------------------------------------------------------------------------

def test_chart_dashboards_are_byte_identical_to_the_source():
    source = {p.name: p.read_bytes() for p in (ROOT / "dashboards").glob("*.json")}
    shipped = {p.name: p.read_bytes() for p in (pc.CHART / "dashboards").glob("*.json")}
    assert source, "dashboards/ is empty"
    assert shipped == source, "run `make dashboards` to copy dashboards/ into the chart"


def test_manifests_are_fresh():
    committed = (ROOT / "manifests" / "pulse.yaml").read_text()
    assert committed == pc.manifests(), "manifests/ is stale: run `make manifests`"


def test_manifests_hold_pulse_and_its_monitoring_but_no_helm_hooks():
    objects = [o for o in yaml.safe_load_all((ROOT / "manifests" / "pulse.yaml").read_text()) if o]
    present = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "ServiceMonitor", "PrometheusRule", "ConfigMap"} <= present
    assert "Pod" not in present and "Secret" not in present


# --- 6. the application chart and the stack -----------------------------------------------------

def chart_yaml(chart: Path) -> dict:
    return yaml.safe_load((chart / "Chart.yaml").read_text())


def test_the_application_chart_declares_no_dependency_and_installs_as_it_is():
    """`helm install pulse charts/pulse` needs nothing downloaded: Helm refuses a chart whose declared
    dependencies are missing from charts/, whatever their condition."""
    assert "dependencies" not in chart_yaml(pc.CHART)
    report = helm_python.lint(str(pc.CHART), {}, strict=True, kube_version="v" + KUBE_VERSION)
    assert [m for m in report["messages"] if "dependenc" in m["error"]] == []
    loaded = helm_python.Chart.load(str(pc.CHART))  # the directory itself, not a copy
    assert "pulse/templates/deployment.yaml" in loaded.render({}, name="pulse", namespace="default", is_install=True)


def test_the_stack_depends_on_this_repositorys_pulse_chart_and_the_monitoring_stack():
    stack, app = chart_yaml(pc.STACK), chart_yaml(pc.CHART)
    dependencies = {d.get("alias", d["name"]): d for d in stack["dependencies"]}
    for pulse in ("pulse", "pulse-backend"):
        assert dependencies[pulse]["name"] == "pulse"
        assert dependencies[pulse]["repository"] == "file://../pulse"
        assert dependencies[pulse]["version"] == app["version"]
    assert "condition" not in dependencies["pulse"], "the stack always installs Pulse"
    assert dependencies["pulse-backend"]["condition"] == "pulse-backend.enabled"
    kps = dependencies["kube-prometheus-stack"]
    assert kps["repository"] == "https://prometheus-community.github.io/helm-charts"
    assert re.fullmatch(r"\d+\.\d+\.\d+", kps["version"]), "pinned"
    assert kps["condition"] == "kube-prometheus-stack.enabled"
    assert stack["appVersion"] == app["appVersion"]


def test_the_stacks_pulse_values_reach_the_pulse_chart_and_its_schema():
    objects = pc.render_objects({"pulse": {"replicaCount": 3, "config": {"logLevel": "debug"}}},
                                name="pulse", chart=pc.STACK)
    deployment = pulse_deployment(objects)
    assert deployment["spec"]["replicas"] == 3
    assert {"name": "PULSE_LOG_LEVEL", "value": "debug"} in container(deployment)["env"]
    with pytest.raises(helm_python.HelmValuesError):
        pc.render({"pulse": {"replicas": 3}}, chart=pc.STACK)
    with pytest.raises(helm_python.HelmValuesError):
        pc.render({"pulse-stack": {}}, chart=pc.STACK)


@pytest.mark.parametrize("release", ["pulse", "demo"])
def test_the_lab_pulse_calls_the_lab_backend_by_its_service_name(release):
    """The kind lab's Pulse reaches the second Pulse through its Service: a renamed Service, port or
    value breaks this, not the lab."""
    objects = pc.objects_of(pc.render_set("kind", name=release))
    env = {e["name"]: e.get("value") for e in container(pulse_deployment(objects))["env"]}
    url = urllib.parse.urlsplit(env["PULSE_BACKEND_URL"])
    backend = pulse_service(objects, "pulse-backend")
    assert url.scheme == "http" and url.hostname == backend["metadata"]["name"]
    assert url.port == backend["spec"]["ports"][0]["port"]
    assert pulse_deployment(objects, "pulse-backend")["spec"]["replicas"] == 1
    backend_env = {e["name"] for e in container(pulse_deployment(objects, "pulse-backend"))["env"]}
    assert "PULSE_BACKEND_URL" not in backend_env, "the backend is the end of the chain"
    assert not [o for o in instances(objects)["pulse-backend"] if o["kind"] == "ConfigMap"
                and "grafana_dashboard" in o["metadata"]["labels"]], "one set of dashboards"


def tiny_chart_archive(directory: Path, name: str, version: str) -> Path:
    """A packaged chart `name` with one Service: what `helm dependency build` leaves in charts/."""
    import tarfile
    source = directory / "src" / name
    (source / "templates").mkdir(parents=True)
    (source / "Chart.yaml").write_text(f"apiVersion: v2\nname: {name}\nversion: {version}\n")
    (source / "templates" / "service.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: intruder\nspec:\n  ports: [{port: 80}]\n")
    archive = directory / f"{name}-{version}.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname=name)
    return archive


def test_renders_take_this_repositorys_templates_whatever_dependency_build_left(tmp_path):
    """After `make kind-up`, charts/pulse-stack/charts/ holds the downloaded subchart and Chart.lock;
    the tests still render only this repository's templates, and git ignores those files."""
    repo = tmp_path / "charts"
    shutil.copytree(pc.STACK, repo / "pulse-stack")
    shutil.copytree(pc.CHART, repo / "pulse")
    version = {d["name"]: d["version"] for d in chart_yaml(pc.STACK)["dependencies"]}["kube-prometheus-stack"]
    built = repo / "pulse-stack" / "charts"
    built.mkdir()
    shutil.copy(tiny_chart_archive(tmp_path, "kube-prometheus-stack", version), built)
    (repo / "pulse-stack" / "Chart.lock").write_text("dependencies: []\n")
    rendered = pc.render(pc.load_values("kind"), chart=repo / "pulse-stack")
    assert not [path for path in rendered if "kube-prometheus-stack" in path]
    services = {s["metadata"]["name"] for s in kinds(pc.objects_of(rendered), "Service")}
    assert services == {"pulse", "pulse-pulse-backend", "pulse-postgresql", "pulse-redis"}
    for path in ["charts/pulse-stack/charts/kube-prometheus-stack-88.5.3.tgz", "charts/pulse-stack/Chart.lock",
                 "charts/pulse-stack/charts/pulse-0.1.0.tgz", "charts/pulse/charts/x.tgz"]:
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
        assert ignored.returncode == 0, f"{path} is not ignored by git"


def test_the_lab_stack_is_laptop_sized_and_honest():
    kps = pc.effective_values("kind")["kube-prometheus-stack"]
    assert kps["enabled"] is True
    grafana = kps["grafana"]
    assert grafana["sidecar"]["datasources"]["alertmanager"]["enabled"] is False, \
        "no Alertmanager runs: its provisioned datasource would be broken"
    assert kps["alertmanager"]["enabled"] is False
    assert grafana["testFramework"]["enabled"] is False, "helm test must not pull Grafana's test image"
    assert kps["nodeExporter"]["enabled"] is True, "the runtime dashboard's node row needs node-exporter"
    node_exporter = kps["prometheus-node-exporter"]["resources"]
    assert node_exporter["requests"] and node_exporter["limits"]["memory"]


# Where to find the upstream charts' own files (each `<dir>/<chart>/values.yaml` and `Chart.yaml`):
# fetched by hand, since `helm dependency build` needs the network. Without it the checks below skip.
UPSTREAM = os.environ.get("PULSE_UPSTREAM_CHARTS")
SUBCHARTS = {"kube-prometheus-stack": ["grafana", "prometheus-node-exporter"]}


def upstream_values(chart: str) -> dict:
    if not UPSTREAM:
        pytest.skip("set PULSE_UPSTREAM_CHARTS to a folder holding the upstream charts (docs/testing.md)")
    return yaml.safe_load((Path(UPSTREAM) / chart / "values.yaml").read_text())


def merged(base: dict, over: dict) -> dict:
    """`over` on top of `base`, map by map, as Helm merges a parent chart's values into a subchart's."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def unknown_keys(ours: dict, theirs: dict, path: str = "") -> list[str]:
    """Key paths of `ours` that `theirs` does not have. Below a key upstream leaves free-form (an empty
    map or null: resources, annotations...) anything goes; lists are values, not compared."""
    missing = []
    for key, value in ours.items():
        where = f"{path}.{key}" if path else key
        if key not in theirs:
            missing.append(where)
        elif isinstance(value, dict) and isinstance(theirs[key], dict) and theirs[key]:
            missing += unknown_keys(value, theirs[key], where)
    return missing


@pytest.mark.parametrize("value_set", ["stack", "kind"])
def test_the_stack_values_are_keys_the_upstream_charts_have(value_set):
    values = copy.deepcopy(pc.effective_values(value_set)["kube-prometheus-stack"])
    values.pop("enabled")  # the dependency's condition, read by Helm
    kps = upstream_values("kube-prometheus-stack")
    version = {d["name"]: d["version"] for d in chart_yaml(pc.STACK)["dependencies"]}["kube-prometheus-stack"]
    assert chart_yaml(Path(UPSTREAM) / "kube-prometheus-stack")["version"] == version, "fetch the pinned version"
    missing = []
    for subchart in SUBCHARTS["kube-prometheus-stack"]:
        # A subchart's keys are its own chart's with kube-prometheus-stack's on top, plus the two every
        # chart's name helper reads (the Grafana chart uses fullnameOverride without listing it).
        theirs = merged(upstream_values(subchart), kps.get(subchart, {}))
        theirs.update(dict.fromkeys(["nameOverride", "fullnameOverride"], ""))
        missing += [f"{subchart}.{k}" for k in unknown_keys(values.pop(subchart, {}), theirs)]
    missing += unknown_keys(values, kps)
    assert missing == [], "not values of the upstream charts (a typo, or renamed upstream)"


# Keys a chart passes on as configuration of the program it runs (Loki's limits, the collector's
# pipeline) or reads without listing it in its values (the collector's `service.enabled`, documented
# in a comment there): their contents are not chart values.
PASSED_ON = {
    "tempo": [],
    "loki": ["loki.limits_config"],
    "opentelemetry-collector": ["config", "service.enabled"],
}


@pytest.mark.parametrize("chart", ["tempo", "loki", "opentelemetry-collector"])
def test_the_trace_and_log_stack_values_are_keys_their_charts_have(chart):
    values = copy.deepcopy(pc.effective_values("kind")[chart])
    values.pop("enabled", None)  # the dependency's condition (the collector's is global.otelCollector)
    version = {d["name"]: d["version"] for d in chart_yaml(pc.STACK)["dependencies"]}[chart]
    theirs = upstream_values(chart)
    assert chart_yaml(Path(UPSTREAM) / chart)["version"] == version, "fetch the pinned version"
    missing = [k for k in unknown_keys(values, theirs)
               if not any(k == p or k.startswith(p + ".") for p in PASSED_ON[chart])]
    assert missing == []


def test_the_cadvisor_relabelings_are_upstreams_but_keep_the_memory_limit():
    upstream = upstream_values("kube-prometheus-stack")["kubelet"]["serviceMonitor"]["cAdvisorMetricRelabelings"]
    ours = pc.effective_values("stack")["kube-prometheus-stack"]["kubelet"]["serviceMonitor"]["cAdvisorMetricRelabelings"]
    changed = [(theirs, mine) for theirs, mine in zip(upstream, ours, strict=True) if theirs != mine]
    assert len(changed) == 1, "only the container_spec drop differs from upstream"
    (theirs, mine), = changed
    assert theirs["regex"] == "container_spec.*" and {**theirs, "regex": mine["regex"]} == mine
    assert not re.fullmatch(mine["regex"], "container_spec_memory_limit_bytes")
    assert re.fullmatch(mine["regex"], "container_spec_cpu_shares")


def host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url if "://" in url else f"//{url}")
    return parts.hostname, parts.port or default_port


def test_the_lab_signals_are_wired_to_each_other_by_name():
    """Pulse -> collector -> Tempo and Loki -> Grafana, and Grafana's links between its datasources:
    every name one side uses is the name the other side has. The subcharts name their Services after
    `fullnameOverride` (checked by rendering them, docs/testing.md)."""
    values = pc.effective_values("kind")
    tempo, loki, collector = (values[c] for c in ("tempo", "loki", "opentelemetry-collector"))
    assert tempo["enabled"] and loki["enabled"] and values["global"]["otelCollector"]["enabled"]
    # Both Pulses export to the collector's OTLP/HTTP port, as rendered.
    rendered = pc.objects_of(pc.render_set("kind"))
    for name in ("pulse", "pulse-backend"):
        env = {e["name"]: e.get("value") for e in container(pulse_deployment(rendered, name))["env"]}
        assert host_port(env["OTEL_EXPORTER_OTLP_ENDPOINT"], 80) == (collector["fullnameOverride"], 4318), name
    # The collector: spans to Tempo's OTLP gRPC port, logs to Loki's OTLP path, both pipelines on.
    exporters = collector["config"]["exporters"]
    assert host_port(exporters["otlp/tempo"]["endpoint"], 0) == (tempo["fullnameOverride"], 4317)
    loki_otlp = urllib.parse.urlsplit(exporters["otlphttp/loki"]["endpoint"])
    assert (loki_otlp.hostname, loki_otlp.port, loki_otlp.path) == (loki["fullnameOverride"], 3100, "/otlp")
    pipelines = collector["config"]["service"]["pipelines"]
    assert pipelines["traces"]["exporters"] == ["otlp/tempo"] and pipelines["traces"]["receivers"] == ["otlp"]
    assert pipelines["logs"]["exporters"] == ["otlphttp/loki"] and pipelines["logs"]["receivers"] == ["file_log"]
    assert collector["presets"]["kubernetesAttributes"]["enabled"]
    assert collector["config"]["receivers"]["file_log"]["include"] == ["/var/log/pods/*/*/*.log"]
    parsers = {op["type"]: op for op in collector["config"]["receivers"]["file_log"]["operators"]}
    assert parsers["trace_parser"]["trace_id"]["parse_from"] == "attributes.trace_id", "Pulse's field name"
    # Grafana: the datasources point at the Services, and the links at the datasources' uids.
    grafana = values["kube-prometheus-stack"]["grafana"]
    sources = {d["type"]: d for d in grafana["additionalDataSources"]}
    assert host_port(sources["tempo"]["url"], 80) == (tempo["fullnameOverride"], 3200)
    assert host_port(sources["loki"]["url"], 80) == (loki["fullnameOverride"], 3100)
    uids = {kind: d["uid"] for kind, d in sources.items()} | {"prometheus": "prometheus"}
    tempo_links = sources["tempo"]["jsonData"]
    assert tempo_links["tracesToLogsV2"]["datasourceUid"] == uids["loki"]
    assert tempo_links["tracesToMetrics"]["datasourceUid"] == uids["prometheus"]
    assert [t["value"] for t in tempo_links["tracesToMetrics"]["tags"]] == ["job"], "service.name is the job"
    (derived,) = sources["loki"]["jsonData"]["derivedFields"]
    assert derived["datasourceUid"] == uids["tempo"] and derived["matcherRegex"] == "trace_id"
    exemplars = grafana["sidecar"]["datasources"]["exemplarTraceIdDestinations"]
    assert exemplars == {"datasourceUid": uids["tempo"], "traceIdLabelName": "trace_id"}
    # The dashboards' datasource variable defaults to the same Prometheus uid.
    for dashboard in (ROOT / "dashboards").glob("*.json"):
        (variable,) = [v for v in json.loads(dashboard.read_text())["templating"]["list"] if v["name"] == "datasource"]
        assert variable["current"]["value"] == uids["prometheus"], dashboard.name


def test_the_span_service_name_is_the_job_label_trace_to_metrics_uses():
    """One name joins the three signals: the spans' service.name, the log records' (the annotation the
    collector's k8sattributes processor turns into service.name, Loki's service_name) and the metrics'
    job (the Service's name)."""
    objects = pc.objects_of(pc.render_set("kind", name="demo"))
    for name in ("pulse", "pulse-backend"):
        deployment = pulse_deployment(objects, name)
        env = {e["name"]: e.get("value") for e in container(deployment)["env"]}
        job = pulse_service(objects, name)["metadata"]["name"]
        assert env["OTEL_SERVICE_NAME"] == job, name
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["resource.opentelemetry.io/service.name"] == job, name
    collector = pc.effective_values("kind")["opentelemetry-collector"]
    assert collector["presets"]["kubernetesAttributes"]["enabled"], "the preset reads otel annotations"
    # A user's own annotations are kept, and one of the same key wins (no duplicate key).
    own = {"podAnnotations": {"team": "obs", "resource.opentelemetry.io/service.name": "checkout"}}
    annotations = pulse_deployment(pc.render_objects(own))["spec"]["template"]["metadata"]["annotations"]
    assert annotations == own["podAnnotations"]


def otlp_env(objects, name="pulse"):
    env = {e["name"]: e.get("value") for e in container(pulse_deployment(objects, name))["env"]}
    return env.get("OTEL_EXPORTER_OTLP_ENDPOINT")


def test_pulse_sends_its_spans_to_the_stacks_collector_exactly_when_it_is_on():
    stack = pc.effective_values("stack")
    endpoint = stack["global"]["otelCollector"]["endpoint"]
    assert host_port(endpoint, 80) == (stack["opentelemetry-collector"]["fullnameOverride"], 4318)
    on = {"global": {"otelCollector": {"enabled": True}}, "pulse-backend": {"enabled": True}}
    objects = pc.objects_of(pc.render(on, chart=pc.STACK))
    assert [otlp_env(objects, n) for n in ("pulse", "pulse-backend")] == [endpoint, endpoint]
    # Off (the default): no export; a collector of the user's own wins over the lab's.
    assert otlp_env(pc.objects_of(pc.render({}, chart=pc.STACK))) is None
    own = {**on, "pulse": {"otel": {"exporterOtlpEndpoint": "http://otel.observability:4318"}}}
    assert otlp_env(pc.objects_of(pc.render(own, chart=pc.STACK))) == "http://otel.observability:4318"
    # The application chart alone has no global collector: nothing unless asked.
    assert otlp_env(pc.render_objects({})) is None
    assert otlp_env(pc.render_objects({"otel": {"exporterOtlpEndpoint": "http://c:4318"}})) == "http://c:4318"
    condition = {d.get("alias", d["name"]): d.get("condition") for d in chart_yaml(pc.STACK)["dependencies"]}
    assert condition["opentelemetry-collector"] == "global.otelCollector.enabled"


def duration_seconds(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhdw])", text))


def test_retention_covers_every_range_the_rules_and_dashboards_read():
    """The SLO window is 30 days: retention must keep that much (a size cap keeps the disk safe)."""
    from dashboards import expressions, load_all
    from rules import rule_spec
    spec = pc.effective_values("stack")["kube-prometheus-stack"]["prometheus"]["prometheusSpec"]
    assert re.fullmatch(r"\d+(\.\d+)?(K|M|G|T|P|E)i?B", spec["retentionSize"])
    exprs = [r["expr"] for g in rule_spec()["groups"] for r in g["rules"]]
    exprs += [expr for dashboard in load_all().values() for _, expr in expressions(dashboard)]
    ranges = [duration_seconds(r) for e in exprs for r in re.findall(r"\[(\d+[smhdw])(?::[^\]]*)?\]", e)]
    assert max(ranges) == duration_seconds("30d")
    assert duration_seconds(spec["retention"]) >= max(ranges)


# --- Dockerfile ---------------------------------------------------------------------------------

def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    result = subprocess.run([hadolint, "--failure-threshold", "warning", str(ROOT / "Dockerfile")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_as_a_fixed_non_root_uid_with_a_probe_healthcheck():
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    final_stage = text.rsplit("\nFROM ", 1)[-1]
    user = re.search(r"^USER (\d+)(:\d+)?$", final_stage, re.M)
    assert user and int(user[1]) > 0
    uid = yaml.safe_load((pc.CHART / "values.yaml").read_text())["securityContext"]["runAsUser"]
    assert int(user[1]) == uid, "the chart's runAsUser is the image's user"
    assert re.search(r'^HEALTHCHECK .*/pulse", "probe"', final_stage, re.M)


def database_env(objects, name="pulse"):
    env = {e["name"]: e for e in container(pulse_deployment(objects, name))["env"]}
    return env.get("PULSE_DATABASE_URL")


def test_the_bundled_postgresql_is_pulses_alone_and_pulse_reads_its_url_from_the_secret():
    objects = pc.render_objects({"postgresql": {"enabled": True}})
    (secret,) = [o for o in kinds(objects, "Secret") if o["metadata"]["name"] == "pulse-postgresql"]
    (statefulset,) = kinds(objects, "StatefulSet")
    (service,) = [o for o in kinds(objects, "Service") if o["metadata"]["name"] == "pulse-postgresql"]
    ref = database_env(objects)["valueFrom"]["secretKeyRef"]
    assert ref == {"name": secret["metadata"]["name"], "key": "uri"}
    import base64
    uri = base64.b64decode(secret["data"]["uri"]).decode()
    password = base64.b64decode(secret["data"]["password"]).decode()
    assert len(password) >= 24
    assert uri == f"postgres://pulse:{password}@{service['metadata']['name']}:5432/pulse"
    # The database's pods are selected by its own Service, never by Pulse's selectors.
    pg_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert all(pg_labels.get(k) == v for k, v in service["spec"]["selector"].items())
    pulse_selector = pulse_deployment(objects)["spec"]["selector"]["matchLabels"]
    assert not all(pg_labels.get(k) == v for k, v in pulse_selector.items())
    # Only Pulse's pods may connect, on the database port.
    (policy,) = [o for o in kinds(objects, "NetworkPolicy") if o["metadata"]["name"] == "pulse-postgresql"]
    assert policy["spec"]["podSelector"]["matchLabels"] == service["spec"]["selector"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": pulse_selector}}]
    assert rule["ports"] == [{"port": "postgresql", "protocol": "TCP"}]
    # Room for every replica's pool; the Secret outlives an uninstall, as the volume does.
    hpa = pc.effective_values("default")["autoscaling"]
    pool = pc.effective_values("default")["config"]["databasePoolSize"]
    args = statefulset["spec"]["template"]["spec"]["containers"][0]["args"]
    assert int(args[1].split("=")[1]) >= hpa["maxReplicas"] * (pool + 1)
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # Data on a volume of its own; the password from the Secret, never inline.
    assert statefulset["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "1Gi"
    pg_env = {e["name"]: e for e in statefulset["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "POSTGRES_PASSWORD" not in pg_env and pg_env["POSTGRES_PASSWORD_FILE"]["value"].startswith("/etc/postgresql-secret/")


def test_pulse_uses_a_database_of_your_own_from_its_secret_or_none():
    objects = pc.render_objects({"database": {"existingSecret": "shop-db-app", "existingSecretKey": "uri"}})
    assert database_env(objects)["valueFrom"]["secretKeyRef"] == {"name": "shop-db-app", "key": "uri"}
    assert not kinds(objects, "StatefulSet")
    assert database_env(pc.render_objects({})) is None, "in memory by default"


def test_the_kind_lab_runs_two_replicas_on_the_bundled_postgresql():
    objects = pc.objects_of(pc.render_set("kind"))
    deployment = pulse_deployment(objects)
    assert deployment["spec"]["replicas"] >= 2
    assert database_env(objects)["valueFrom"]["secretKeyRef"]["key"] == "uri"
    assert [s["metadata"]["name"] for s in kinds(objects, "StatefulSet") if "postgresql" in s["metadata"]["name"]]


# --- 7. the Redis cache -------------------------------------------------------------------------

REDIS_ON = {"postgresql": {"enabled": True}, "redis": {"enabled": True}}


def redis_objects(objects) -> dict[str, dict]:
    """The bundled Redis's objects by kind (one of each)."""
    found = [o for o in objects if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "cache"]
    by_kind = {o["kind"]: o for o in found}
    assert len(by_kind) == len(found), "one object of each kind"
    return by_kind


def pulse_env(objects, name="pulse") -> dict[str, dict]:
    return {e["name"]: e for e in container(pulse_deployment(objects, name))["env"]}


def expanded(value: str, env: dict[str, str]) -> str:
    """A container env value as the kubelet expands it: `$(VAR)` of a variable defined before."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), value)


def test_the_bundled_redis_is_an_in_memory_cache_only_pulse_reaches():
    objects = pc.render_objects(REDIS_ON)
    redis = redis_objects(objects)
    assert set(redis) == {"Secret", "Service", "Deployment", "NetworkPolicy"}
    deployment, service, policy = redis["Deployment"], redis["Service"], redis["NetworkPolicy"]
    for obj in redis.values():
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    pod = deployment["spec"]["template"]
    (redis_container,) = pod["spec"]["containers"]
    assert redis_container["image"] == "redis:7.2.5-alpine"
    # No persistence: no RDB snapshot, no append-only file, no volume but an emptyDir.
    args = redis_container["args"]
    assert args[args.index("--save") + 1] == "" and args[args.index("--appendonly") + 1] == "no"
    assert args[args.index("--maxmemory-policy") + 1] == "allkeys-lru"
    assert [set(v) - {"name"} for v in pod["spec"]["volumes"]] == [{"emptyDir"}]
    assert "volumeClaimTemplates" not in deployment["spec"]
    # Requests and limits; maxmemory under the memory limit.
    resources = redis_container["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert resources["limits"]["cpu"] and resources["limits"]["memory"]
    from test_runtime_facts import quantity_bytes
    maxmemory = int(args[args.index("--maxmemory") + 1].removesuffix("mb")) * 2**20
    assert maxmemory <= 0.75 * quantity_bytes(resources["limits"]["memory"])
    # Probes on what the container has.
    assert redis_container["livenessProbe"]["tcpSocket"]["port"] == "redis"
    assert "ping" in redis_container["readinessProbe"]["exec"]["command"][-1]
    assert [p["name"] for p in redis_container["ports"]] == ["redis"]
    # Its own Service selects only it; Pulse's selector does not match it.
    labels = pod["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
    pulse_selector = pulse_deployment(objects)["spec"]["selector"]["matchLabels"]
    assert not all(labels.get(k) == v for k, v in pulse_selector.items())
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(6379, "redis")]
    # Only Pulse's pods, only on the Redis port.
    assert policy["spec"]["podSelector"]["matchLabels"] == service["spec"]["selector"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": pulse_selector}}]
    assert rule["ports"] == [{"port": "redis", "protocol": "TCP"}]
    # The restricted checks every Deployment gets, Redis's included.
    assert deployment in kinds(objects, "Deployment") and any(n == "pulse-redis" for n, _ in pods(objects))


def test_redis_and_pulse_share_a_generated_password_kept_across_upgrades():
    import base64
    objects = pc.render_objects(REDIS_ON)
    redis = redis_objects(objects)
    password = base64.b64decode(redis["Secret"]["data"]["password"]).decode()
    assert len(password) >= 24 and password.isalnum(), "URL-safe as it is"
    assert pc.render_objects(REDIS_ON) != objects, "a new one on each install (offline: no lookup)"
    # Kept on upgrade: the template reads the existing Secret, as the PostgreSQL one does.
    template = (pc.CHART / "templates" / "redis.yaml").read_text()
    assert 'lookup "v1" "Secret" .Release.Namespace $name' in template
    # Redis requires it; the probes authenticate with it; both from the Secret, never inline.
    (redis_container,) = redis["Deployment"]["spec"]["template"]["spec"]["containers"]
    redis_env = {e["name"]: e for e in redis_container["env"]}
    ref = {"name": "pulse-redis", "key": "password"}
    assert redis_env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == ref
    assert redis_env["REDISCLI_AUTH"]["value"] == "$(REDIS_PASSWORD)"
    args = redis_container["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    # Pulse: the password first, then the URL that refers to it, and the TTL.
    env = pulse_env(objects)
    names = list(env)
    assert names.index("REDIS_PASSWORD") < names.index("PULSE_REDIS_URL")
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == ref
    url = expanded(env["PULSE_REDIS_URL"]["value"], {"REDIS_PASSWORD": password})
    assert url == f"redis://:{password}@pulse-redis:6379/0"
    parsed = urllib.parse.urlsplit(url)
    assert (parsed.hostname, parsed.port, parsed.password) == (redis["Service"]["metadata"]["name"], 6379, password)
    assert env["PULSE_CACHE_TTL"]["value"] == "30s"
    assert "PULSE_CACHE_TIMEOUT" not in env, "Pulse's own default unless set"


def test_an_existing_secret_gives_the_password_and_no_secret_is_generated():
    values = {**REDIS_ON, "cache": {"existingSecret": "cache-auth", "existingSecretKey": "redis-password",
                                    "ttl": "5m", "timeout": "50ms"}}
    objects = pc.render_objects(values)
    redis = redis_objects(objects)
    assert "Secret" not in redis
    ref = {"name": "cache-auth", "key": "redis-password"}
    (redis_container,) = redis["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert {e["name"]: e for e in redis_container["env"]}["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == ref
    env = pulse_env(objects)
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == ref
    assert env["PULSE_CACHE_TTL"]["value"] == "5m" and env["PULSE_CACHE_TIMEOUT"]["value"] == "50ms"


def test_a_redis_of_your_own_with_or_without_a_password():
    db = {"database": {"existingSecret": "shop-db-app"}}
    objects = pc.render_objects({**db, "cache": {"redisUrl": "rediss://cache.shop:6380/2",
                                                 "existingSecret": "cache-auth"}})
    assert redis_objects(objects) == {}, "nothing deployed for a Redis of your own"
    env = pulse_env(objects)
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "cache-auth", "key": "password"}
    assert env["PULSE_REDIS_URL"]["value"] == "rediss://:$(REDIS_PASSWORD)@cache.shop:6380/2"
    env = pulse_env(pc.render_objects({**db, "cache": {"redisUrl": "redis://cache.shop:6379/0"}}))
    assert env["PULSE_REDIS_URL"]["value"] == "redis://cache.shop:6379/0" and "REDIS_PASSWORD" not in env
    # No cache by default, with or without a database.
    for values in [{}, db, {"postgresql": {"enabled": True}}]:
        env = pulse_env(pc.render_objects(values))
        assert not {"PULSE_REDIS_URL", "PULSE_CACHE_TTL", "REDIS_PASSWORD"} & set(env)


@pytest.mark.parametrize("values, message", [
    ({"redis": {"enabled": True}}, "the Redis cache fronts the PostgreSQL store"),
    ({"cache": {"redisUrl": "redis://cache:6379/0"}}, "the Redis cache fronts the PostgreSQL store"),
    ({"postgresql": {"enabled": True}, "cache": {"existingSecret": "cache-auth"}},
     "cache.existingSecret holds a Redis password"),
])
def test_a_cache_without_postgresql_or_without_redis_is_refused(values, message):
    with pytest.raises(helm_python.HelmError, match=message):
        pc.render(values)


@pytest.mark.parametrize("values", [
    {"cache": {"ttl": "a minute"}},
    {"cache": {"ttl": 60}},
    {"cache": {"timeout": "fast"}},
    {"cache": {"redisUrl": "http://cache:6379"}},
    {"cache": {"redisUrl": "redis://:hunter2@cache:6379/0"}},
    {"cache": {"existingSecretKey": ""}},
    {"cache": {"tll": "60s"}},
    {"redis": {"enabled": "yes"}},
    {"redis": {"maxMemory": "lots"}},
    {"redis": {"resources": {"limits": {"memory": None}}}},  # a Redis without a memory limit
    {"redis": {"persistence": {"size": "1Gi"}}},
])
def test_schema_rejects_bad_cache_values(values):
    with pytest.raises(helm_python.HelmValuesError):
        pc.render({"postgresql": {"enabled": True}, **values})


def test_the_kind_lab_caches_its_postgresql_in_the_bundled_redis():
    assert pc.effective_values("kind")["pulse"]["redis"]["enabled"] is True
    objects = pc.objects_of(pc.render_set("kind"))
    redis = redis_objects(objects)
    assert {"Secret", "Service", "Deployment", "NetworkPolicy"} <= set(redis)
    env = pulse_env(objects)
    assert env["PULSE_REDIS_URL"]["value"] == f"redis://:$(REDIS_PASSWORD)@{redis['Service']['metadata']['name']}:6379/0"
    assert database_env(objects)["valueFrom"]["secretKeyRef"]["key"] == "uri"
    # The backend Pulse keeps its data in memory: no cache there.
    assert "PULSE_REDIS_URL" not in pulse_env(objects, "pulse-backend")


def test_the_rendered_redis_arguments_run_a_redis_that_requires_the_password_and_saves_nothing(tmp_path):
    """The bundled Redis's arguments and readiness probe, as rendered, run by a real redis-server
    (Debian's, on loopback and a free port instead of the pod's 6379): it refuses clients without the
    password, the probe passes only with REDISCLI_AUTH, Pulse's URL authenticates, and nothing is saved."""
    import base64
    import signal
    server_binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    assert server_binary and cli, "redis-server missing: apt-get install redis-server (or run .ci/run)"
    objects = pc.render_objects(REDIS_ON)
    redis = redis_objects(objects)
    password = base64.b64decode(redis["Secret"]["data"]["password"]).decode()
    (spec,) = redis["Deployment"]["spec"]["template"]["spec"]["containers"]
    port = free_port()
    args = [expanded(a, {"REDIS_PASSWORD": password}) for a in spec["args"]]
    args[args.index("--port") + 1] = str(port)
    env = {**os.environ, "REDIS_PASSWORD": password}
    server = subprocess.Popen([server_binary, *args, "--bind", "127.0.0.1"], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    probe = [expanded(c, {}).replace("-p 6379", f"-p {port}") for c in spec["readinessProbe"]["exec"]["command"]]

    def run(command, auth=None):
        extra = {"REDISCLI_AUTH": auth} if auth else {}
        clean = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
        return subprocess.run(command, capture_output=True, text=True, env={**clean, **extra}, timeout=10)

    try:
        deadline = time.monotonic() + 10
        while run(probe, password).returncode != 0:
            assert time.monotonic() < deadline and server.poll() is None, "redis-server did not start"
            time.sleep(0.1)
        assert run(probe).returncode != 0, "ready without the password: the probe must check the answer"
        assert "NOAUTH" in run([cli, "-p", str(port), "get", "k"]).stdout
        ask = [cli, "-p", str(port)]
        assert run([*ask, "config", "get", "save"], password).stdout.split("\n")[1] == ""
        assert run([*ask, "config", "get", "appendonly"], password).stdout.split("\n")[1] == "no"
        assert run([*ask, "config", "get", "maxmemory-policy"], password).stdout.split("\n")[1] == "allkeys-lru"
        # Pulse's URL, the kubelet's expansion done, carries the password this server requires (read
        # from the URL as a client does; redis-cli's own -u sends an empty username for `redis://:pw@`).
        url = urllib.parse.urlsplit(expanded(pulse_env(objects)["PULSE_REDIS_URL"]["value"],
                                             {"REDIS_PASSWORD": password}))
        assert (url.username, url.hostname, url.port, url.path) == ("", "pulse-redis", 6379, "/0")
        db = url.path.lstrip("/")
        assert run([*ask, "-n", db, "set", "user:1", "cached"], url.password).stdout.strip() == "OK"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
    assert list(tmp_path.iterdir()) == [], "a cache saves nothing, not even at shutdown"


# --- native histograms (serviceMonitor.nativeHistograms) ----------------------------------------

NATIVE_PROTOCOLS = ["PrometheusProto", "OpenMetricsText1.0.0", "OpenMetricsText0.0.1", "PrometheusText0.0.4"]


def test_native_histograms_are_off_by_default_and_the_switch_asks_for_protobuf_and_keeps_classic():
    default = one(pc.render_objects({}), "ServiceMonitor")["spec"]
    assert not {"scrapeProtocols", "scrapeNativeHistograms", "scrapeClassicHistograms"} & set(default)
    spec = one(pc.render_objects({"serviceMonitor": {"nativeHistograms": True}}), "ServiceMonitor")["spec"]
    # Protobuf first (the only format with native histograms), and the text formats after it, so
    # that an older Pulse or a proxy answering text is still scraped.
    assert spec["scrapeProtocols"] == NATIVE_PROTOCOLS
    assert spec["scrapeNativeHistograms"] is True
    # Without it Prometheus drops the classic buckets of a family that has a native histogram,
    # and every `_bucket` query of the dashboards and rules goes empty.
    assert spec["scrapeClassicHistograms"] is True


def test_the_native_histogram_servicemonitor_passes_the_operator_crd_schema():
    monitor = one(pc.render_objects({"serviceMonitor": {"nativeHistograms": True}}), "ServiceMonitor")
    errors = [e.message for e in crd_validator("ServiceMonitor").iter_errors(monitor)]
    assert errors == []


def test_the_stack_scrapes_both_pulses_native_histograms_and_its_prometheus_keeps_classic_buckets():
    stack = yaml.safe_load((pc.ROOT / "charts/pulse-stack/values.yaml").read_text())
    assert stack["pulse"]["serviceMonitor"]["nativeHistograms"] is True
    assert stack["pulse-backend"]["serviceMonitor"]["nativeHistograms"] is True
    spec = stack["kube-prometheus-stack"]["prometheus"]["prometheusSpec"]
    assert spec["scrapeNativeHistograms"] is True and spec["scrapeClassicHistograms"] is True
    objects = pc.objects_of(pc.render_set("kind", name="lab", namespace="monitoring"))
    monitors = kinds(objects, "ServiceMonitor")
    assert len(monitors) >= 2
    for monitor in monitors:
        assert monitor["spec"].get("scrapeProtocols") == NATIVE_PROTOCOLS, monitor["metadata"]["name"]
        assert monitor["spec"].get("scrapeClassicHistograms") is True

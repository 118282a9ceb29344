"""What the stack's containers do at run time, and the upstream facts the stack's values rely on.

The stack's values are only right for what the upstream images and charts do: which uid the
collector image runs as, what the collector chart renames, which resource attributes Loki indexes,
what Tempo's chart passes as its ballast... Those facts are kept in ONE table, `FACTS` below, each with
where upstream says so, at the versions `charts/pulse-stack/Chart.yaml` pins (`CHECKED_AT`);
docs/runtime-facts.md shows the same table (a test keeps them equal). A version bump fails
`test_the_facts_were_checked_at_the_pinned_versions` until the facts are checked again.

Each problem the values solve has two tests:

- on the values (always): the setting the fact calls for is there;
- on the stack rendered with the real upstream subcharts (`PULSE_UPSTREAM_CHARTS`, a folder holding
  `<dir>/<chart>/`, see docs/testing.md; skipped without it): the rendered objects do what the fact says.

Regenerate the documentation's table with `python tests/python/test_runtime_facts.py`.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import helm_python
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))  # run as a script too
import pulsechart as pc  # noqa: E402

ROOT = pc.ROOT
DOC = ROOT / "docs" / "runtime-facts.md"

# The chart versions the facts were read at (and the images they install: each chart's appVersion).
CHECKED_AT = {
    "kube-prometheus-stack": "88.5.3",   # Prometheus Operator v0.93.1
    "grafana": "12.11.1",                # Grafana 13.2.0 (kube-prometheus-stack's subchart)
    "tempo": "2.2.4",                    # Tempo 2.10.8
    "loki": "18.11.0",                   # Loki 3.7.6
    "opentelemetry-collector": "0.170.0",  # otelcol-contrib 0.158.0
}
APP_VERSIONS = {"kube-prometheus-stack": "v0.93.1", "grafana": "13.2.0", "tempo": "2.10.8", "loki": "3.7.6",
                "opentelemetry-collector": "0.158.0"}

OTEL_CHART = ("https://github.com/open-telemetry/opentelemetry-helm-charts/blob/opentelemetry-collector-0.170.0"
              "/charts/opentelemetry-collector")
CONTRIB = "https://github.com/open-telemetry/opentelemetry-collector-contrib"
KPS_CHART = ("https://github.com/prometheus-community/helm-charts/blob/kube-prometheus-stack-88.5.3"
             "/charts/kube-prometheus-stack")
GRAFANA_CHARTS = "https://github.com/grafana-community/helm-charts/blob"
# The official Redis image the pulse chart's bundled cache runs (redis.image), and where its facts
# were read: docker-library/redis at commit e92049967d6b (the 7.2.5 Dockerfiles).
REDIS_IMAGE_CHECKED = "7.2.5-alpine"
REDIS_IMAGE = ("https://github.com/docker-library/redis/blob/e92049967d6baa9b4b3d6fd950553e6458e61f13"
               "/7.2/alpine")


@dataclass(frozen=True)
class Fact:
    key: str        # the name the tests use
    component: str
    fact: str       # what it does at run time (or what the chart renders)
    source: str     # where upstream says so
    value: object = None  # the fact as data, where a test computes with it


FACTS = [
    Fact("collector-image-user", "otelcol-contrib 0.158.0 image",
         "runs as uid 10001, gid 10001 unless the pod says otherwise",
         "`USER ${USER_UID}:${USER_GID}` with `ARG USER_UID=10001`, `ARG USER_GID=10001`, lines 6-8 of "
         "https://github.com/open-telemetry/opentelemetry-collector-releases/blob/v0.158.0"
         "/distributions/otelcol-contrib/Dockerfile",
         {"uid": 10001, "gid": 10001}),
    Fact("pod-log-files", "containerd (kind's runtime)",
         "writes the container logs `/var/log/pods/<ns>_<pod>_<uid>/<container>/<n>.log` as root:root 0640, "
         "in root-owned 0755 directories: uid 10001 may read none of them",
         "https://github.com/kubernetes/kubernetes/issues/124349 (the `ls` of /var/log/pods there; the files are "
         "the runtime's, not the kubelet's), https://github.com/kubernetes/kubernetes/issues/129787 (directories 755)",
         {"uid": 0, "gid": 0, "mode": 0o640}),
    Fact("owner-reads-without-dac", "Linux",
         "a process whose fsuid owns a file is checked against the owner bits only: root reads root's 0640 files "
         "with every capability dropped (CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH only matter when those bits deny)",
         "https://man7.org/linux/man-pages/man7/path_resolution.7.html (\"Permissions\", \"Capabilities\")"),
    Fact("collector-chart-root", "opentelemetry-collector chart 0.170.0",
         "renders the container's `securityContext` as given; only when it is empty does it switch to uid 0, "
         "and then only for `presets.profiling.enabled` or `presets.logsCollection.storeCheckpoints`",
         f"{OTEL_CHART}/templates/_pod.tpl (container `securityContext`, lines 30-52)",
         ["presets.profiling.enabled", "presets.logsCollection.storeCheckpoints"]),
    Fact("collector-deprecated-names", "opentelemetry-collector chart 0.170.0",
         "rewrites the deprecated component names `filelog` to `file_log` and `k8sattributes` to `k8s_attributes` "
         "in the rendered config, and prints a deprecation warning for each in the values",
         f"{OTEL_CHART}/templates/_helpers.tpl (`deprecatedComponentRenames`, `deprecations`); "
         f"{OTEL_CHART}/UPGRADING.md (0.167.0 to 0.168.0)",
         {"filelog": "file_log", "k8sattributes": "k8s_attributes"}),
    Fact("collector-preset-receiver", "opentelemetry-collector chart 0.170.0",
         "the logsCollection preset writes its receiver as `filelog` and the rename comes last, merging the "
         "preset's `filelog` over an existing `file_log` (lists replaced): a `file_log` of the values loses its "
         "operators to the preset's",
         f"{OTEL_CHART}/templates/_config.tpl (`logsCollectionConfig`, `rewriteDeprecatedComponentNames`: "
         "`mustMergeOverwrite $existing $val`)",
         "filelog"),
    Fact("collector-k8s-attributes", "opentelemetry-collector chart 0.170.0",
         "the kubernetesAttributes preset adds `k8s_attributes` to every pipeline, extracting among others "
         "k8s.deployment.name, k8s.container.name and service.name (from the otel annotations and labels)",
         f"{OTEL_CHART}/templates/_config.tpl (`kubernetesAttributesConfig`, `extract.metadata`)",
         ["k8s.namespace.name", "k8s.pod.name", "k8s.deployment.name", "k8s.container.name", "service.name"]),
    Fact("container-parser-resource", "otelcol-contrib `container` operator",
         "sets k8s.namespace.name, k8s.pod.name, k8s.pod.uid, k8s.container.name and k8s.container.restart_count "
         "from the log file's path (needs `include_file_path: true`): they cannot differ from the pod's",
         f"{CONTRIB}/blob/main/pkg/stanza/docs/operators/container.md (\"Add metadata from file path\")",
         ["k8s.namespace.name", "k8s.pod.name", "k8s.pod.uid", "k8s.container.name", "k8s.container.restart_count"]),
    Fact("service-name-regression", "otelcol-contrib k8sattributes processor",
         "from v0.146.0 the `resource.opentelemetry.io/service.name` annotation lost to the "
         "`app.kubernetes.io/name` label for service.name (a refactor swapped the order); Loki's service_name can "
         "so change with the collector version",
         f"{CONTRIB}/issues/47534, fix {CONTRIB}/pull/47536"),
    Fact("loki-otlp-index-labels", "Loki 3.7.6",
         "makes these OTLP resource attributes index labels by default (dots become underscores); the rest "
         "become structured metadata",
         "`DefaultOTLPResourceAttributesAsIndexLabels`, lines 56-75 of "
         "https://github.com/grafana/loki/blob/v3.7.6/pkg/loghttp/push/otlp_config.go; "
         "https://grafana.com/docs/loki/latest/send-data/otel/",
         ["service.name", "service.namespace", "service.instance.id", "deployment.environment",
          "deployment.environment.name", "cloud.region", "cloud.availability_zone", "k8s.cluster.name",
          "k8s.namespace.name", "k8s.pod.name", "k8s.container.name", "container.name", "k8s.replicaset.name",
          "k8s.deployment.name", "k8s.statefulset.name", "k8s.daemonset.name", "k8s.cronjob.name", "k8s.job.name"]),
    Fact("loki-retention", "Loki 3.7.6",
         "deletes past `retention_period` only when the compactor has `retention_enabled: true`, and refuses to "
         "start with retention enabled but no `delete_request_store`",
         "lines 108-109 of https://github.com/grafana/loki/blob/v3.7.6/pkg/compactor/config.go; "
         "https://grafana.com/docs/loki/latest/operations/storage/retention/",
         ["retention_enabled", "delete_request_store"]),
    Fact("loki-chart-compactor", "loki chart 18.11.0",
         "passes `loki.compactor` on as the config's `compactor` block (and renders none when it is empty)",
         f"{GRAFANA_CHARTS}/loki-18.11.0/charts/loki/values.yaml (`loki.config`: `with .Values.loki.compactor`)",
         "loki.compactor"),
    Fact("loki-rules-sidecar", "loki chart 18.11.0",
         "`sidecar.rules.enabled` is on by default; with it on and `rbac.namespaced` off the chart grants a "
         "ClusterRole get/list/watch on every ConfigMap and Secret; with it off and RBAC namespaced it renders "
         "no ClusterRole and no Role",
         f"{GRAFANA_CHARTS}/loki-18.11.0/charts/loki/templates/backend/clusterrole.yaml, templates/role.yaml"),
    Fact("tempo-ballast", "tempo chart 2.2.4",
         "passes `-mem-ballast-size-mbs={{ tempo.memBallastSizeMbs }}`, 1024 by default (Tempo's own default is 0): "
         "the Go GC then counts 1 GiB more heap and collects later",
         f"{GRAFANA_CHARTS}/tempo-2.2.4/charts/tempo/templates/statefulset.yaml (container args), values.yaml; "
         "line 49 of https://github.com/grafana/tempo/blob/v2.10.8/cmd/tempo/main.go",
         1024),
    Fact("tempo-metrics-generator", "tempo chart 2.2.4 / Tempo 2.10.8",
         "`tempo.metricsGenerator.enabled` renders `metrics_generator` remote-writing to "
         "`tempo.metricsGenerator.remoteWriteUrl` (WAL on a /tmp emptyDir); the generator runs the processors a "
         "tenant's `overrides.defaults.metrics_generator.processors` name (service-graphs, span-metrics)",
         f"{GRAFANA_CHARTS}/tempo-2.2.4/charts/tempo/values.yaml (`config`); "
         "https://grafana.com/docs/tempo/latest/configuration/#standard-overrides, "
         "https://grafana.com/docs/tempo/latest/metrics-from-traces/metrics-generator/",
         ["service-graphs", "span-metrics"]),
    Fact("kps-prometheus-service", "kube-prometheus-stack chart 88.5.3",
         "names Prometheus's Service `<fullnameOverride>-prometheus`, port 9090",
         f"{KPS_CHART}/templates/prometheus/service.yaml",
         {"suffix": "-prometheus", "port": 9090}),
    Fact("kps-remote-write", "kube-prometheus-stack chart 88.5.3",
         "Prometheus accepts remote write (`--web.enable-remote-write-receiver`, /api/v1/write) only with "
         "`prometheusSpec.enableRemoteWriteReceiver: true` (default false)",
         f"{KPS_CHART}/values.yaml (`enableRemoteWriteReceiver`)"),
    Fact("kps-config-reloader", "kube-prometheus-stack chart 88.5.3 / Prometheus Operator v0.93",
         "passes `--config-reloader-{cpu,memory}-{request,limit}` from `prometheusOperator.prometheusConfigReloader."
         "resources`, `0` when unset, and the operator reads `0` as \"none\": no requests, no limit",
         f"{KPS_CHART}/templates/prometheus-operator/deployment.yaml; lines 103-104 and 161-164 of "
         "https://github.com/prometheus-operator/prometheus-operator/blob/v0.93.0/cmd/operator/main.go "
         "(v0.93.1 is not tagged in the mirror read; the nearest)"),
    Fact("kps-storage", "kube-prometheus-stack chart 88.5.3 / Prometheus Operator",
         "without `prometheusSpec.storageSpec` Prometheus's TSDB is an emptyDir: lost with the pod",
         f"{KPS_CHART}/values.yaml (`storageSpec: {{}}`); "
         "https://prometheus-operator.dev/docs/platform/storage/ (\"By default, the operator configures Pods to "
         "store data on emptyDir volumes\")"),
    Fact("prometheus-retention-size", "Prometheus 3",
         "counts the WAL and head chunks into `retentionSize` and recommends it be at most 80-85 % of the volume "
         "(compactions need the rest)",
         "https://prometheus.io/docs/prometheus/latest/storage/ (\"Operational aspects\")",
         0.85),
    Fact("prometheus-native-histograms", "prometheus-operator v0.93.0",
         "writes `scrape_native_histograms` into a scrape configuration only for Prometheus 3.8.0 or "
         "later, and `always_scrape_classic_histograms` for Prometheus 3.x (below 3.8 the switch is "
         "dropped and the native histograms are not kept)",
         "appendScrapeNativeHistograms (`WithMinimumVersion(\"3.8.0\")`), addNativeHistogramConfig and "
         "appendConvertScrapeClassicHistograms in "
         "https://github.com/prometheus-operator/prometheus-operator/blob/v0.93.0/pkg/prometheus/promcfg.go",
         (3, 8, 0)),
    Fact("kps-prometheus-version", "kube-prometheus-stack 88.5.3",
         "runs Prometheus `v3.14.0-distroless` unless `prometheus.prometheusSpec.image` says otherwise, and "
         "passes `scrapeNativeHistograms` and `scrapeClassicHistograms` from `prometheusSpec` to the "
         "Prometheus resource",
         "`tag: v3.14.0-distroless` in values.yaml and lines 148-152 of templates/prometheus/prometheus.yaml of "
         "https://github.com/prometheus-community/helm-charts/blob/kube-prometheus-stack-88.5.3/charts/"
         "kube-prometheus-stack",
         (3, 14, 0)),
    Fact("grafana-gomemlimit", "grafana chart 12.11.1",
         "sets GOMEMLIMIT to the container's memory limit when there is one",
         f"{GRAFANA_CHARTS}/grafana-12.11.1/charts/grafana/templates/_pod.tpl (`GOMEMLIMIT`, "
         "`resourceFieldRef: limits.memory`)"),
    Fact("redis-image-user", "redis 7.2.5-alpine image",
         "has the user redis, uid 999, group redis, gid 1000 (alpine already has a gid 999); "
         "/data, its working directory and volume, is owned by it",
         f"`addgroup -S -g 1000 redis; adduser -S -G redis -u 999 redis`, lines 10-13, and "
         f"`mkdir /data && chown redis:redis /data`, `WORKDIR /data`, lines 133-135 of {REDIS_IMAGE}/Dockerfile",
         {"uid": 999, "gid": 1000, "workdir": "/data"}),
    Fact("redis-image-entrypoint", "redis 7.2.5-alpine image",
         "the entrypoint runs `redis-server` with the arguments when the first one starts with `-`; it chowns "
         "and steps down with gosu only when started as uid 0, otherwise execs redis-server as it is",
         f"lines 6-14 and 24 of {REDIS_IMAGE}/docker-entrypoint.sh; `ENTRYPOINT`, `CMD [\"redis-server\"]`, "
         f"lines 138-141 of {REDIS_IMAGE}/Dockerfile"),
    Fact("redis-image-port", "redis 7.2.5-alpine image",
         "listens on 6379 and is built with protected mode off: only `--requirepass` keeps clients out",
         f"`EXPOSE 6379`, line 140, and the `protected-mode` default patched to 0, lines 79-84 of "
         f"{REDIS_IMAGE}/Dockerfile",
         6379),
    Fact("redis-server-arguments", "Redis 7.2",
         "takes any config directive as a `--name value` argument: `--requirepass`, `--save \"\"` (no RDB "
         "snapshots, none at shutdown either), `--appendonly no`, `--maxmemory`, `--maxmemory-policy "
         "allkeys-lru`; its process title shows the address, not the arguments",
         "https://redis.io/docs/latest/operate/oss_and_stack/management/config/ (\"Passing arguments via the "
         "command line\"); measured with Debian's redis-server 7.0.15 (CONFIG GET save is empty, no dump.rdb "
         "after SIGTERM, `ps` shows `redis-server 127.0.0.1:<port>`)",
         ["--requirepass", "--save", "--appendonly", "--maxmemory", "--maxmemory-policy"]),
    Fact("redis-cli-auth", "redis-cli 7.2",
         "authenticates with the REDISCLI_AUTH environment variable (no password on the command line) and "
         "exits 0 even when the server answers an error such as NOAUTH: a probe must check for PONG",
         "`REDIS_CLI_AUTH_ENV \"REDISCLI_AUTH\"` in https://github.com/redis/redis/blob/7.2.5/src/redis-cli.c; "
         "measured with Debian's redis-tools 7.0.15 (`redis-cli ping` without it prints NOAUTH and exits 0)",
         "REDISCLI_AUTH"),
    Fact("grafana-steady-state", "Grafana 13.2.0",
         "uses 220-340 MiB once this stack's dashboards and datasources are loaded",
         "measured in the kind lab (`kubectl top pod`), not an upstream statement: measure again on a bump",
         {"low_mib": 220, "high_mib": 340}),
]
FACT = {f.key: f for f in FACTS}


def markdown_table() -> str:
    """FACTS as the table of docs/runtime-facts.md."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")
    rows = ["| key | component | fact | where upstream says so |", "|---|---|---|---|"]
    rows += [f"| `{f.key}` | {cell(f.component)} | {cell(f.fact)} | {cell(f.source)} |" for f in FACTS]
    return "\n".join(rows) + "\n"


def test_the_documented_table_is_the_facts_table():
    text = DOC.read_text()
    begin, end = "<!-- facts: begin -->\n", "<!-- facts: end -->"
    assert begin in text and end in text, "docs/runtime-facts.md marks its table"
    assert text.split(begin, 1)[1].split(end, 1)[0].strip("\n") + "\n" == markdown_table(), \
        "regenerate it: python tests/python/test_runtime_facts.py"


def test_every_fact_says_where_upstream_says_so():
    assert len(FACT) == len(FACTS), "one row per key"
    for fact in FACTS:
        assert "https://" in fact.source or fact.source.startswith("measured"), f"{fact.key}: a link"


def test_the_facts_were_checked_at_the_pinned_versions():
    """A bump of a pinned chart fails here: check each fact of that component again, then move CHECKED_AT.
    (Grafana is kube-prometheus-stack's pin: the upstream tests check it on that chart.)"""
    dependencies = yaml.safe_load((pc.STACK / "Chart.yaml").read_text())["dependencies"]
    pins = {d["name"]: d["version"] for d in dependencies if d["repository"].startswith("https://")}
    assert pins == {name: version for name, version in CHECKED_AT.items() if name != "grafana"}


def kind() -> dict:
    return pc.effective_values("kind")


def quantity_bytes(text: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30,
             "TiB": 2**40, "KB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "": 1}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", str(text))
    assert match and match[2] in units, text
    return float(match[1]) * units[match[2]]


# --- 1. the collector reads the pod logs --------------------------------------------------------

def collector_uid(collector: dict) -> int:
    """The uid the collector container runs as, as the chart decides it (FACT collector-chart-root)."""
    context = collector.get("securityContext") or {}
    presets = collector.get("presets", {})
    if context:
        return context.get("runAsUser", FACT["collector-image-user"].value["uid"])
    if presets.get("profiling", {}).get("enabled") or presets.get("logsCollection", {}).get("storeCheckpoints"):
        return 0
    return FACT["collector-image-user"].value["uid"]


def test_the_collector_runs_as_the_owner_of_the_pod_logs_and_with_nothing_more():
    collector = kind()["opentelemetry-collector"]
    files = FACT["pod-log-files"].value
    assert files["mode"] & 0o004 == 0, "not world-readable: only the owner (or group) reads them"
    assert collector_uid(collector) == files["uid"], \
        "the collector must run as the files' owner to read them (the image's uid 10001 reads nothing)"
    # Root reads them as their owner: no capability is needed (owner-reads-without-dac), none is kept.
    context = collector["securityContext"]
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["allowPrivilegeEscalation"] is False and not context.get("privileged")
    assert context["readOnlyRootFilesystem"] is True
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    # The pod logs read-only; the checkpoints (the only thing written) on the node, so a restart resumes.
    mounts = {m["mountPath"]: m for m in collector["extraVolumeMounts"]}
    volumes = {v["name"]: v for v in collector["extraVolumes"]}
    assert mounts["/var/log/pods"]["readOnly"] is True
    assert volumes[mounts["/var/log/pods"]["name"]]["hostPath"]["path"] == "/var/log/pods"
    receiver = collector["config"]["receivers"]["file_log"]
    storage = collector["config"]["extensions"][receiver["storage"]]["directory"]
    assert not mounts[storage].get("readOnly") and volumes[mounts[storage]["name"]]["hostPath"]["path"] == storage
    assert receiver["storage"] in collector["config"]["service"]["extensions"]


# --- 2. Loki deletes what is past its retention -------------------------------------------------

def test_loki_applies_its_retention_in_the_compactor():
    loki = kind()["loki"]["loki"]
    assert duration_hours(loki["limits_config"]["retention_period"]) == 72
    compactor = loki.get("compactor", {})
    required = FACT["loki-retention"].value
    assert all(compactor.get(key) for key in required), f"retention_period alone deletes nothing: {required}"
    assert compactor["delete_request_store"] == kind()["loki"]["loki"]["storage"]["type"] == "filesystem"


def duration_hours(text: str) -> float:
    units = {"m": 1 / 60, "h": 1, "d": 24, "w": 168}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([mhdw])", text))


# --- 3. the service graph has metrics behind it -------------------------------------------------

def remote_write_target(values: dict) -> tuple[str, int, str]:
    url = urllib.parse.urlsplit(values["tempo"]["tempo"]["metricsGenerator"]["remoteWriteUrl"])
    return url.hostname, url.port, url.path


def test_the_service_graph_has_a_generator_and_a_prometheus_that_takes_its_metrics():
    values = kind()
    (tempo_source,) = [d for d in values["kube-prometheus-stack"]["grafana"]["additionalDataSources"]
                       if d["type"] == "tempo"]
    assert tempo_source["jsonData"]["serviceMap"]["datasourceUid"] == "prometheus", "the lab shows the service map"
    tempo = values["tempo"]["tempo"]
    assert tempo.get("metricsGenerator", {}).get("enabled") is True, "no metrics-generator, no service graph"
    processors = tempo["overrides"]["defaults"]["metrics_generator"]["processors"]
    assert set(FACT["tempo-metrics-generator"].value) <= set(processors)
    kps = values["kube-prometheus-stack"]
    service = FACT["kps-prometheus-service"].value
    prometheus = (kps["fullnameOverride"] + service["suffix"], service["port"], "/api/v1/write")
    assert remote_write_target(values) == prometheus, "the stack's Prometheus Service"
    assert kps["prometheus"]["prometheusSpec"]["enableRemoteWriteReceiver"] is True


# --- 4. the config reloader is sized ------------------------------------------------------------

def test_the_config_reloader_has_requests_and_a_memory_limit():
    operator = kind()["kube-prometheus-stack"]["prometheusOperator"]
    resources = operator.get("prometheusConfigReloader", {}).get("resources", {})
    requests, limits = resources.get("requests", {}), resources.get("limits", {})
    # The chart passes "0" for what is unset, and the operator reads "0" as none (kps-config-reloader).
    assert requests.get("cpu") and requests.get("memory") and limits.get("memory")
    assert quantity_bytes(limits["memory"]) >= quantity_bytes(requests["memory"])


# --- 5. Grafana has room ------------------------------------------------------------------------

def test_grafanas_memory_limit_leaves_room_over_its_steady_state():
    resources = kind()["kube-prometheus-stack"]["grafana"]["resources"]
    steady = FACT["grafana-steady-state"].value
    # GOMEMLIMIT is the limit (grafana-gomemlimit): the GC must not run flat out at the steady state.
    assert quantity_bytes(resources["limits"]["memory"]) >= 1.5 * steady["high_mib"] * 2**20
    assert quantity_bytes(resources["requests"]["memory"]) >= steady["low_mib"] * 2**20


# --- 6. Tempo's ballast -------------------------------------------------------------------------

def test_tempos_ballast_is_off_under_its_memory_limit():
    tempo = kind()["tempo"]["tempo"]
    ballast_mib = tempo.get("memBallastSizeMbs", FACT["tempo-ballast"].value)
    assert ballast_mib == 0, "a ballast only delays the GC; under a memory limit it delays it into the OOM killer"
    assert quantity_bytes(tempo["resources"]["limits"]["memory"]) > ballast_mib * 2**20


# --- 7. Prometheus on a volume ------------------------------------------------------------------

def test_prometheus_keeps_its_data_on_a_volume_retention_size_fits():
    spec = kind()["kube-prometheus-stack"]["prometheus"]["prometheusSpec"]
    claim = spec.get("storageSpec", {}).get("volumeClaimTemplate", {}).get("spec")
    assert claim, "without a volume the 30-day SLO history is an emptyDir (kps-storage)"
    assert "storageClassName" not in claim, "the cluster's default class (kind: standard)"
    assert claim["accessModes"] == ["ReadWriteOnce"]
    size = quantity_bytes(claim["resources"]["requests"]["storage"])
    assert quantity_bytes(spec["retentionSize"]) <= FACT["prometheus-retention-size"].value * size


# --- 8. no deprecated collector component names -------------------------------------------------

def component_names(config: dict) -> list[str]:
    names = [name for section in ("receivers", "processors", "exporters", "extensions", "connectors")
             for name in (config.get(section) or {})]
    for pipeline in config.get("service", {}).get("pipelines", {}).values():
        for section in ("receivers", "processors", "exporters"):
            names += pipeline.get(section, [])
    return names + config.get("service", {}).get("extensions", [])


def test_the_collector_config_uses_no_deprecated_component_name():
    collector = kind()["opentelemetry-collector"]
    deprecated = FACT["collector-deprecated-names"].value
    old = [n for n in component_names(collector["config"]) if n.split("/")[0] in deprecated]
    assert old == [], f"deprecated names (the chart rewrites them with a warning): {old}"
    # With the preset on, its `filelog` is merged over a `file_log` of ours (collector-preset-receiver).
    receivers = set(collector["config"]["receivers"])
    assert not (collector["presets"]["logsCollection"]["enabled"] and receivers & {"file_log", "filelog"}), \
        "the preset's receiver would replace this one's operators"
    assert collector["config"]["service"]["pipelines"]["logs"]["receivers"] == ["file_log"]


# --- 9. the logs panel selects by labels that cannot drift --------------------------------------

def stable_log_labels() -> set[str]:
    """The Loki index labels of a Pulse log record that follow from the pod itself: the container
    parser's (from the file path) and the k8s_attributes deployment name (from the ReplicaSet), not
    service_name (service-name-regression)."""
    attributes = set(FACT["container-parser-resource"].value) | {"k8s.deployment.name"}
    assert "k8s.deployment.name" in FACT["collector-k8s-attributes"].value
    return {a.replace(".", "_") for a in attributes & set(FACT["loki-otlp-index-labels"].value)}


def logs_selectors() -> list[tuple[str, dict[str, tuple[str, str]]]]:
    """(dashboard panel, {label: (operator, value)}) of every Loki query's stream selector."""
    from dashboards import load_all, queries
    matcher = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|`([^`]*)`)')
    found = []
    for name, dashboard in load_all().items():
        for where, query in queries(dashboard, "loki"):
            query = re.sub(r"\$\{(\w+)(?::\w+)?\}", r"$\1", query)  # ${job:regex} -> $job: no braces
            selector = query[query.index("{") + 1:query.index("}")]
            found.append((f"{name}: {where}", {label: (op, quoted or raw)
                                                for label, op, quoted, raw in matcher.findall(selector)}))
    return found


def test_the_logs_panel_selects_pulse_by_labels_that_cannot_drift():
    stable = stable_log_labels()
    objects = pc.objects_of(pc.render_set("kind"))
    from test_chart import container, instances, pulse_deployment, pulse_service
    container_names = set()
    for name in instances(objects):
        deployment = pulse_deployment(objects, name)
        # The job variable is the Service's name (the ServiceMonitor's job), which is the Deployment's.
        assert pulse_service(objects, name)["metadata"]["name"] == deployment["metadata"]["name"], name
        container_names.add(container(deployment)["name"])
    (pulse_container,) = container_names
    selectors = logs_selectors()
    assert selectors, "the overview dashboard has a logs panel"
    for where, selector in selectors:
        assert set(selector) <= stable, f"{where}: {set(selector) - stable}"
        assert selector["k8s_deployment_name"] == ("=~", "$job"), where
        assert selector["k8s_container_name"] == ("=", pulse_container), where
    # A span's logs: Tempo's trace-to-logs tags are labels the records have too.
    (tempo_source,) = [d for d in kind()["kube-prometheus-stack"]["grafana"]["additionalDataSources"]
                       if d["type"] == "tempo"]
    tags = tempo_source["jsonData"]["tracesToLogsV2"]["tags"]
    assert {t["value"] for t in tags} <= stable
    assert all(t["value"] == t["key"].replace(".", "_") for t in tags)


# --- 10. no Secret access for a sidecar that has nothing to do ----------------------------------

def test_loki_runs_no_rules_sidecar_and_may_read_no_secret():
    loki = kind()["loki"]
    # Upstream's defaults: the sidecar on, the RBAC cluster-wide (loki-rules-sidecar).
    assert loki.get("sidecar", {}).get("rules", {}).get("enabled", True) is False, \
        "no Loki rules here: the sidecar would only read ConfigMaps and Secrets"
    assert loki.get("rbac", {}).get("namespaced", False) is True, "no ClusterRole"


# --- 11. the pulse chart's Redis runs as the image expects ---------------------------------------

def bundled_redis() -> dict:
    """The pod spec of the pulse chart's Redis (redis.enabled, on the bundled PostgreSQL)."""
    objects = pc.render_objects({"postgresql": {"enabled": True}, "redis": {"enabled": True}})
    (deployment,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "pulse-redis"]
    return deployment["spec"]["template"]["spec"]


def test_the_redis_facts_were_checked_at_the_pinned_image():
    """A bump of redis.image.tag fails here: check the redis-* facts again at the new version."""
    image = yaml.safe_load((pc.CHART / "values.yaml").read_text())["redis"]["image"]
    assert (image["repository"], image["tag"]) == ("redis", REDIS_IMAGE_CHECKED)


def test_redis_runs_as_the_images_user_without_root_and_writes_only_its_emptydir():
    spec = bundled_redis()
    user = FACT["redis-image-user"].value
    context = spec["securityContext"]
    # As the image's own user (not root): the entrypoint then needs no chown and no gosu, which a
    # container without capabilities could not do (redis-image-entrypoint).
    assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (user["uid"], user["gid"], user["gid"])
    assert context["runAsNonRoot"] is True
    (redis,) = spec["containers"]
    assert "command" not in redis, "the image's entrypoint, which passes `--` arguments to redis-server"
    assert redis["args"][0].startswith("--")
    assert redis["securityContext"]["readOnlyRootFilesystem"] is True
    assert redis["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    # The working directory writable (an emptyDir over the image's volume), nothing else.
    (mount,) = redis["volumeMounts"]
    assert mount["mountPath"] == user["workdir"]
    assert {v["name"]: v for v in spec["volumes"]}[mount["name"]].get("emptyDir") is not None


def test_redis_requires_its_password_and_saves_nothing():
    (redis,) = bundled_redis()["containers"]
    args = redis["args"]
    assert set(FACT["redis-server-arguments"].value) <= set(args)
    # protected mode is off in the image (redis-image-port): the password is what keeps clients out.
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert args[args.index("--port") + 1] == str(FACT["redis-image-port"].value)
    assert [p["containerPort"] for p in redis["ports"]] == [FACT["redis-image-port"].value]
    assert args[args.index("--save") + 1] == "" and args[args.index("--appendonly") + 1] == "no"


def test_the_redis_probe_authenticates_and_checks_the_answer():
    (redis,) = bundled_redis()["containers"]
    env = {e["name"]: e for e in redis["env"]}
    assert env[FACT["redis-cli-auth"].value]["value"] == "$(REDIS_PASSWORD)"
    names = [e["name"] for e in redis["env"]]
    assert names.index("REDIS_PASSWORD") < names.index("REDISCLI_AUTH"), "expanded from a variable set before"
    command = redis["readinessProbe"]["exec"]["command"]
    # redis-cli exits 0 on NOAUTH: the exit code alone would call an unauthenticated Redis ready.
    assert "redis-cli" in command[-1] and "grep -q PONG" in command[-1]
    assert "-a" not in command[-1].split(), "no password on the command line"


# --- the stack rendered with the upstream subcharts ---------------------------------------------

UPSTREAM = os.environ.get("PULSE_UPSTREAM_CHARTS")


def assemble_upstream(work: Path, stack_values: Path | None = None) -> Path:
    """charts/pulse-stack as `helm dependency build` makes it, from the upstream charts' folders in
    PULSE_UPSTREAM_CHARTS: this repository's Pulse chart and the upstream subcharts in its charts/,
    kube-prometheus-stack with its grafana and prometheus-node-exporter in its own charts/."""
    upstream = Path(UPSTREAM)
    stack = work / "pulse-stack"
    shutil.copytree(pc.assembled(pc.STACK), stack)
    if stack_values:
        shutil.copy(stack_values, stack / "values.yaml")
    for chart in ("kube-prometheus-stack", "tempo", "loki", "opentelemetry-collector"):
        chart_file = yaml.safe_load((upstream / chart / "Chart.yaml").read_text())
        assert chart_file["version"] == CHECKED_AT[chart], f"fetch {chart} {CHECKED_AT[chart]}"
        assert str(chart_file["appVersion"]) == APP_VERSIONS[chart], chart
        shutil.copytree(upstream / chart, stack / "charts" / chart)
    for sub in ("grafana", "prometheus-node-exporter"):
        target = stack / "charts" / "kube-prometheus-stack" / "charts" / sub
        if not target.exists():
            shutil.copytree(upstream / sub, target)
    grafana = yaml.safe_load((stack / "charts/kube-prometheus-stack/charts/grafana/Chart.yaml").read_text())
    assert (grafana["version"], grafana["appVersion"]) == (CHECKED_AT["grafana"], APP_VERSIONS["grafana"])
    return stack


def render_upstream(stack: Path, values: dict) -> dict[str, list[dict]]:
    rendered = helm_python.Chart.load(str(stack)).render(values, name="pulse", namespace="monitoring",
                                                          is_install=True)
    out = {}
    for path, text in rendered.items():
        out[path] = [text] if path.endswith("NOTES.txt") else [d for d in yaml.safe_load_all(text) if d]
    return out


@pytest.fixture(scope="module")
def upstream(tmp_path_factory) -> dict[str, list]:
    """Template path -> rendered objects (NOTES.txt -> [its text]) of the stack with the kind values and
    the real subcharts."""
    if not UPSTREAM:
        pytest.skip("set PULSE_UPSTREAM_CHARTS to a folder holding the upstream charts (docs/testing.md)")
    stack = assemble_upstream(tmp_path_factory.mktemp("upstream"))
    return render_upstream(stack, pc.load_values("kind"))


def rendered(upstream: dict, chart: str, kind: str | None = None) -> list[dict]:
    prefix = f"pulse-stack/charts/{chart}/"
    return [o for path, objs in upstream.items() if path.startswith(prefix) and not path.endswith("NOTES.txt")
            for o in objs if kind is None or o["kind"] == kind]


def collector_config(upstream) -> dict:
    (config_map,) = [o for o in rendered(upstream, "opentelemetry-collector", "ConfigMap")
                     if "relay" in o.get("data", {})]
    return yaml.safe_load(config_map["data"]["relay"])


def test_upstream_the_collector_container_reads_the_pod_logs_as_their_owner(upstream):
    (daemonset,) = rendered(upstream, "opentelemetry-collector", "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    (collector,) = pod["containers"]
    context = {**pod.get("securityContext", {}), **collector.get("securityContext", {})}
    assert context.get("runAsUser", FACT["collector-image-user"].value["uid"]) == FACT["pod-log-files"].value["uid"]
    assert context["capabilities"] == {"drop": ["ALL"]} and context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False and not context.get("privileged")
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in collector["volumeMounts"]}
    assert volumes[mounts["/var/log/pods"]["name"]]["hostPath"]["path"] == "/var/log/pods"
    assert mounts["/var/log/pods"]["readOnly"] is True
    config = collector_config(upstream)
    receiver = config["receivers"]["file_log"]
    assert receiver["include"] == ["/var/log/pods/*/*/*.log"]
    directory = config["extensions"][receiver["storage"]]["directory"]
    assert volumes[mounts[directory]["name"]]["hostPath"]["path"] == directory


def loki_config(upstream) -> dict:
    (config_map,) = [o for o in rendered(upstream, "loki", "ConfigMap") if "config.yaml" in o.get("data", {})]
    return yaml.safe_load(config_map["data"]["config.yaml"])


def test_upstream_loki_config_enables_retention_in_the_compactor(upstream):
    config = loki_config(upstream)
    assert config["limits_config"]["retention_period"] == "72h"
    compactor = config.get("compactor", {})
    assert compactor.get("retention_enabled") is True
    assert compactor.get("delete_request_store") == "filesystem" and "filesystem" in config["common"]["storage"]


def tempo_config(upstream) -> dict:
    (config_map,) = [o for o in rendered(upstream, "tempo", "ConfigMap") if "tempo.yaml" in o.get("data", {})]
    return yaml.safe_load(config_map["data"]["tempo.yaml"])


def test_upstream_tempo_remote_writes_its_service_graph_to_the_stacks_prometheus(upstream):
    config = tempo_config(upstream)
    generator = config.get("metrics_generator")
    assert generator, "no metrics_generator: the service map has nothing behind it"
    processors = config["overrides"]["defaults"]["metrics_generator"]["processors"]
    assert set(FACT["tempo-metrics-generator"].value) <= set(processors)
    (write,) = generator["storage"]["remote_write"]
    url = urllib.parse.urlsplit(write["url"])
    services = {s["metadata"]["name"]: s for s in rendered(upstream, "kube-prometheus-stack", "Service")}
    assert url.hostname in services, f"{url.hostname}: no such Service"
    assert url.port in [p["port"] for p in services[url.hostname]["spec"]["ports"]] and url.path == "/api/v1/write"
    (prometheus,) = rendered(upstream, "kube-prometheus-stack", "Prometheus")
    assert prometheus["spec"].get("enableRemoteWriteReceiver") is True
    assert services[url.hostname]["spec"]["selector"]["operator.prometheus.io/name"] == prometheus["metadata"]["name"]


def test_upstream_the_operator_gives_the_config_reloader_requests_and_a_limit(upstream):
    (operator,) = [d for d in rendered(upstream, "kube-prometheus-stack", "Deployment")
                   if d["metadata"]["name"].endswith("-operator")]
    (container,) = operator["spec"]["template"]["spec"]["containers"]
    args = dict(a.removeprefix("--").split("=", 1) for a in container["args"] if a.startswith("--config-reloader-"))
    for flag in ("cpu-request", "memory-request", "memory-limit"):
        assert args[f"config-reloader-{flag}"] not in ("", "0"), f"--config-reloader-{flag}=0 means none"


def test_upstream_grafana_gomemlimit_is_its_limit_and_the_limit_has_room(upstream):
    (deployment,) = [d for d in rendered(upstream, "kube-prometheus-stack", "Deployment")
                     if d["metadata"]["name"] == "pulse-grafana"]
    (grafana,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "grafana"]
    env = {e["name"]: e for e in grafana["env"]}
    assert env["GOMEMLIMIT"]["valueFrom"]["resourceFieldRef"]["resource"] == "limits.memory"
    steady = FACT["grafana-steady-state"].value
    assert quantity_bytes(grafana["resources"]["limits"]["memory"]) >= 1.5 * steady["high_mib"] * 2**20
    assert grafana["image"].endswith(":" + APP_VERSIONS["grafana"])


def test_upstream_tempo_allocates_no_ballast(upstream):
    (statefulset,) = rendered(upstream, "tempo", "StatefulSet")
    (tempo,) = [c for c in statefulset["spec"]["template"]["spec"]["containers"] if c["name"] == "tempo"]
    ballast = [a for a in tempo["args"] if a.startswith("-mem-ballast-size-mbs=")]
    assert ballast == ["-mem-ballast-size-mbs=0"]


def test_upstream_prometheus_has_a_volume_claim(upstream):
    (prometheus,) = rendered(upstream, "kube-prometheus-stack", "Prometheus")
    claim = prometheus["spec"].get("storage", {}).get("volumeClaimTemplate", {}).get("spec")
    assert claim, "the TSDB is an emptyDir"
    assert quantity_bytes(prometheus["spec"]["retentionSize"]) <= \
        FACT["prometheus-retention-size"].value * quantity_bytes(claim["resources"]["requests"]["storage"])


def test_upstream_the_collector_renders_one_log_receiver_with_our_operators_and_no_warning(upstream):
    config = collector_config(upstream)
    deprecated = FACT["collector-deprecated-names"].value
    assert [n for n in component_names(config) if n.split("/")[0] in deprecated] == []
    logs = config["service"]["pipelines"]["logs"]
    assert logs["receivers"] == ["file_log"]
    values = pc.effective_values("kind")["opentelemetry-collector"]["config"]
    (receiver,) = values["service"]["pipelines"]["logs"]["receivers"]
    ours = values["receivers"][receiver]["operators"]
    assert config["receivers"]["file_log"]["operators"] == ours, "the operators are ours, not a preset's"
    (notes,) = upstream["pulse-stack/charts/opentelemetry-collector/templates/NOTES.txt"]
    assert "[DEPRECATION]" not in notes


def test_upstream_the_collector_gives_log_records_the_labels_the_logs_panel_selects(upstream):
    config = collector_config(upstream)
    logs = config["service"]["pipelines"]["logs"]
    (processor,) = [p for p in logs["processors"] if p.split("/")[0] == "k8s_attributes"]
    assert "k8s.deployment.name" in config["processors"][processor]["extract"]["metadata"]
    receiver = config["receivers"][logs["receivers"][0]]
    assert receiver["include_file_path"] is True
    assert [op for op in receiver["operators"] if op["type"] == "container"], "the path's pod metadata"
    assert config["exporters"][logs["exporters"][0]]["endpoint"].endswith("/otlp"), "Loki's OTLP endpoint"


def test_upstream_loki_grants_no_secret_access_and_runs_no_sidecar(upstream):
    for obj in rendered(upstream, "loki"):
        if obj["kind"] in ("ClusterRole", "Role"):
            secrets = [r for r in obj.get("rules") or [] if "secrets" in r.get("resources", [])]
            assert not secrets, obj["metadata"]["name"]
        if obj["kind"] in ("StatefulSet", "Deployment", "DaemonSet"):
            names = [c["name"] for c in obj["spec"]["template"]["spec"]["containers"]]
            assert not [n for n in names if "sidecar" in n], (obj["metadata"]["name"], names)
    assert not rendered(upstream, "loki", "ClusterRole")


# --- native histograms: the stack's Prometheus keeps what the ServiceMonitor asks for -----------

def test_the_stacks_prometheus_is_new_enough_for_the_native_histogram_switch():
    spec = pc.effective_values("kind")["kube-prometheus-stack"]["prometheus"]["prometheusSpec"]
    # Our values leave the image to the chart, whose Prometheus is past the operator's minimum;
    # pinning an older image would silently drop scrape_native_histograms.
    assert "image" not in spec, "an image pinned here must be checked against the 3.8.0 minimum"
    assert FACT["kps-prometheus-version"].value >= FACT["prometheus-native-histograms"].value
    assert spec["scrapeNativeHistograms"] is True and spec["scrapeClassicHistograms"] is True
    for pulse in ("pulse", "pulse-backend"):
        assert pc.effective_values("kind")[pulse]["serviceMonitor"]["nativeHistograms"] is True


if __name__ == "__main__":
    sys.stdout.write(markdown_table())

"""`/metrics` in the Prometheus protobuf exposition, decoded by an independent decoder: Python types
generated at test time (`grpcio-tools`) from upstream's `metrics.proto` (vendored in tests/proto/,
pinned by its SHA-256), not Pulse's own prost messages. The body, taken at the same moment as the text
answer on an idle server, holds the same series with the same values (classic buckets, counts, sums,
counters, gauges), and the latency histograms carry valid native histograms beside them.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import importlib.util
import math
from types import ModuleType

import pytest
from conftest import ROOT, PulseProcess
from grpc_tools import protoc
from prometheus_client.parser import text_string_to_metric_families as parse_text

PROTO_ROOT = ROOT / "tests" / "proto"
METRICS_PROTO = PROTO_ROOT / "io" / "prometheus" / "client" / "metrics.proto"
# prometheus/client_model v0.6.2 (tests/proto/README.md).
METRICS_PROTO_SHA256 = "5d0c331fb3ec69ec36138a3b3968c042b96e0023774bb06b97a7a17cf1c5266e"
PROTOBUF = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
# What Prometheus 2.42 sends with `--enable-feature=native-histograms`.
PROMETHEUS_NATIVE = (f"{PROTOBUF},application/openmetrics-text;version=1.0.0;q=0.8,"
                     "application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
NATIVE_FAMILIES = ("http_request_duration_seconds", "http_client_request_duration_seconds")
# Series the scrapes themselves move (as in test_exemplars.py).
MOVING = ("process_", "http_requests_in_progress", "pulse_connections_open")


@pytest.fixture(scope="module")
def metrics_pb2(tmp_path_factory) -> ModuleType:
    """The `io.prometheus.client` messages, generated from the vendored file into a temporary directory."""
    assert hashlib.sha256(METRICS_PROTO.read_bytes()).hexdigest() == METRICS_PROTO_SHA256, \
        "tests/proto/io/prometheus/client/metrics.proto is not client_model v0.6.2's"
    out = tmp_path_factory.mktemp("generated")
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    status = protoc.main(["protoc", f"-I{PROTO_ROOT}", f"-I{well_known}", f"--python_out={out}",
                          str(METRICS_PROTO.relative_to(PROTO_ROOT))])
    assert status == 0, "protoc failed"
    # Loaded from its file: the package's first name, `io`, is also the standard library's.
    spec = importlib.util.spec_from_file_location("metrics_pb2", out / "io/prometheus/client/metrics_pb2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def decode_delimited(body: bytes, message_type) -> list:
    """Messages each preceded by its length as a varint."""
    messages, at = [], 0
    while at < len(body):
        length, shift = 0, 0
        while True:
            byte = body[at]
            at += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        message = message_type()
        message.ParseFromString(body[at:at + length])
        messages.append(message)
        at += length
    assert at == len(body), "a message runs past the end of the body"
    return messages


def key(name: str, labels: dict[str, str]) -> tuple:
    """A series' identity; `le` compared as a number (`1` and `1.0` are the same bound)."""
    labels = {k: (repr(float(v)) if k == "le" else v) for k, v in labels.items()}
    return name, tuple(sorted(labels.items()))


def text_series(text: str) -> dict[tuple, float]:
    return {key(s.name, s.labels): s.value for f in parse_text(text) for s in f.samples}


def native_counts(histogram) -> list[int]:
    """The absolute count of each positive bucket, from the deltas."""
    counts, count = [], 0
    for delta in histogram.positive_delta:
        count += delta
        counts.append(count)
    return counts


def protobuf_series(families, pb) -> dict[tuple, float]:
    """The series a scraper makes of the protobuf families, classic histograms as the text has them."""
    series: dict[tuple, float] = {}
    for family in families:
        for metric in family.metric:
            labels = {pair.name: pair.value for pair in metric.label}
            name = family.name
            if family.type == pb.COUNTER:
                series[key(name, labels)] = metric.counter.value
            elif family.type == pb.GAUGE:
                series[key(name, labels)] = metric.gauge.value
            elif family.type == pb.UNTYPED:
                series[key(name, labels)] = metric.untyped.value
            elif family.type == pb.SUMMARY:
                for q in metric.summary.quantile:
                    series[key(name, {**labels, "quantile": str(q.quantile)})] = q.value
                series[key(f"{name}_sum", labels)] = metric.summary.sample_sum
                series[key(f"{name}_count", labels)] = metric.summary.sample_count
            elif family.type == pb.HISTOGRAM:
                h = metric.histogram
                for bucket in h.bucket:
                    series[key(f"{name}_bucket", {**labels, "le": str(bucket.upper_bound)})] = bucket.cumulative_count
                # The +Inf bucket is implicit (the count) unless written.
                series.setdefault(key(f"{name}_bucket", {**labels, "le": "inf"}), h.sample_count)
                series[key(f"{name}_sum", labels)] = h.sample_sum
                series[key(f"{name}_count", labels)] = h.sample_count
    return series


def test_the_vendored_proto_is_upstreams():
    assert hashlib.sha256(METRICS_PROTO.read_bytes()).hexdigest() == METRICS_PROTO_SHA256
    readme = (PROTO_ROOT / "README.md").read_text()
    assert METRICS_PROTO_SHA256 in readme and "v0.6.2" in readme


def test_the_protobuf_answer_has_the_text_answers_series_and_values(metrics_pb2):
    backend = PulseProcess()
    pulse = PulseProcess(env={"PULSE_BACKEND_URL": backend.base})
    try:
        for path in ("/api/users", "/api/users/999", "/status/503", "/delay/0.3", "/api/backend", "/api/backend"):
            pulse.request("GET", path)
        # The same moment: nothing but the scrapes between them (idle server).
        _, text_headers, text = pulse.request("GET", "/metrics")
        status, headers, body = pulse.request("GET", "/metrics", headers={"Accept": PROMETHEUS_NATIVE})
    finally:
        pulse.stop()
        backend.stop()
    assert status == 200
    assert headers["content-type"] == ("application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; "
                                       "encoding=delimited")
    assert text_headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = decode_delimited(body, metrics_pb2.MetricFamily)

    from_text, from_protobuf = text_series(text.decode()), protobuf_series(families, metrics_pb2)
    assert set(from_protobuf) == set(from_text)
    for series, value in from_protobuf.items():
        if not series[0].startswith(MOVING):
            assert math.isclose(value, from_text[series]), (series, value, from_text[series])

    by_name = {family.name: family for family in families}
    for name in NATIVE_FAMILIES:
        assert by_name[name].metric, f"no series of {name}"
        for metric in by_name[name].metric:
            h = metric.histogram
            counts = native_counts(h)
            assert 0 <= h.schema <= 8 and h.zero_threshold > 0, name
            assert sum(span.length for span in h.positive_span) == len(counts) > 0, name
            assert all(count >= 0 for count in counts), (name, counts)
            # What Prometheus checks before it stores a native histogram.
            assert h.zero_count + sum(counts) == h.sample_count, name
            assert not h.negative_span and not h.negative_delta, name
    # The 0.3 s request: in the native bucket (2^(-14/8), 2^(-13/8)] = (0.297, 0.324].
    delayed = next(m.histogram for m in by_name["http_request_duration_seconds"].metric
                   if dict((p.name, p.value) for p in m.label)["route"] == "/delay/{seconds}")
    assert [span.offset for span in delayed.positive_span] == [-13] and native_counts(delayed) == [1]

//! `/metrics` in the Prometheus protobuf exposition, from a real `pulse` process:
//! answered only when asked for first, every family of the text answer in it, and
//! native histograms (schema 3, zero threshold, spans, deltas, exemplars) beside
//! the classic buckets of the three latency histograms. Decoded with Pulse's own
//! prost messages; tests/python/test_protobuf_exposition.py decodes the same body
//! with types generated from upstream's metrics.proto.

use crate::common;

use std::collections::BTreeSet;

use common::{Need, Pulse, client};
use prost::Message as _;
use pulse::telemetry::proto::{Histogram, MetricFamily, MetricType};

const SUITE: &str = "tests/integration/protobuf.rs";

/// What Prometheus 2.42 sends with `--enable-feature=native-histograms`.
const PROMETHEUS_NATIVE: &str = "application/vnd.google.protobuf;\
    proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;\
    version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;\
    version=0.0.4;q=0.5,*/*;q=0.1";

const CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// The body and `Content-Type` of `/metrics` asked for with `accept`.
fn scrape(pulse: &Pulse, accept: &str) -> (String, Vec<u8>) {
    let reply = client()
        .get(pulse.url("/metrics"))
        .header("accept", accept)
        .send()
        .expect("scrape");
    assert_eq!(reply.status(), 200);
    let content_type = reply.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    (content_type, reply.bytes().expect("body").to_vec())
}

/// The delimited messages of a protobuf body.
fn decode(mut body: &[u8]) -> Vec<MetricFamily> {
    let mut families = Vec::new();
    while !body.is_empty() {
        families.push(MetricFamily::decode_length_delimited(&mut body).expect("a MetricFamily"));
    }
    families
}

fn family<'a>(families: &'a [MetricFamily], name: &str) -> &'a MetricFamily {
    families
        .iter()
        .find(|f| f.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no family {name}"))
}

/// Asserts `histogram` is a valid native histogram of schema 3 beside its classic
/// buckets, and returns its (count, positive bucket counts).
fn assert_native(histogram: &Histogram, what: &str) -> (u64, Vec<i64>) {
    assert_eq!(histogram.schema, Some(3), "{what}");
    assert_eq!(histogram.zero_threshold, Some(2f64.powi(-20)), "{what}");
    assert!(!histogram.positive_span.is_empty(), "{what}: no spans");
    let spanned: u32 = histogram
        .positive_span
        .iter()
        .map(|s| s.length.unwrap_or(0))
        .sum();
    assert_eq!(spanned as usize, histogram.positive_delta.len(), "{what}");
    let counts: Vec<i64> = histogram
        .positive_delta
        .iter()
        .scan(0_i64, |count, delta| {
            *count += delta;
            Some(*count)
        })
        .collect();
    assert!(counts.iter().all(|&c| c > 0), "{what}: {counts:?}");
    let total = histogram.zero_count.unwrap_or(0) + counts.iter().sum::<i64>() as u64;
    // Prometheus rejects a native histogram whose count is not its buckets' sum.
    assert_eq!(histogram.sample_count, Some(total), "{what}");
    // The classic buckets are there too, the same count at their top (idle).
    let classic: Vec<f64> = histogram
        .bucket
        .iter()
        .filter_map(|b| b.upper_bound)
        .collect();
    assert_eq!(classic.first(), Some(&0.005), "{what}");
    assert!(classic.contains(&10.0), "{what}: {classic:?}");
    let top = histogram
        .bucket
        .iter()
        .rfind(|b| b.upper_bound == Some(10.0));
    assert!(
        top.and_then(|b| b.cumulative_count)
            .is_some_and(|c| c <= total)
    );
    (total, counts)
}

#[test]
fn prometheus_with_native_histograms_gets_every_family_with_native_latencies() {
    let backend = Pulse::start(&["--kube", "off", "--shutdown-delay", "0s"]);
    let backend_url = backend.url("");
    let caller = Pulse::start(&[
        "--kube",
        "off",
        "--shutdown-delay",
        "0s",
        "--backend-url",
        &backend_url,
    ]);
    for path in ["/api/users", "/api/users", "/api/backend", "/status/503"] {
        client().get(caller.url(path)).send().expect("request");
    }
    let traced = "4bf92f3577b34da6a3ce929d0e0e4736";
    client()
        .get(caller.url("/api/users"))
        .header("traceparent", format!("00-{traced}-00f067aa0ba902b7-01"))
        .send()
        .expect("request");

    // Asked for first: protobuf; anyone else keeps the text formats.
    let (content_type, body) = scrape(&caller, PROMETHEUS_NATIVE);
    assert_eq!(content_type, CONTENT_TYPE);
    let (text_type, text) = scrape(&caller, "text/plain");
    assert_eq!(text_type, "text/plain; version=0.0.4; charset=utf-8");
    let families = decode(&body);

    // Every family of the text answer, and nothing else.
    let text = String::from_utf8(text).expect("utf-8");
    let in_text: BTreeSet<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split(' ').next())
        .collect();
    let in_protobuf: BTreeSet<&str> = families.iter().filter_map(|f| f.name.as_deref()).collect();
    assert_eq!(in_protobuf, in_text);
    let counter = family(&families, "http_requests_total");
    assert_eq!(counter.r#type, Some(MetricType::Counter as i32));
    assert!(counter.metric.iter().all(|m| m.counter.is_some()));

    let duration = family(&families, "http_request_duration_seconds");
    assert_eq!(duration.r#type, Some(MetricType::Histogram as i32));
    let users = duration
        .metric
        .iter()
        .find(|m| {
            m.label
                .iter()
                .any(|l| l.value.as_deref() == Some("/api/users"))
        })
        .and_then(|m| m.histogram.as_ref())
        .expect("GET /api/users");
    let (count, _) = assert_native(users, "GET /api/users");
    assert_eq!(count, 3);
    // The sampled request's exemplar, on its classic bucket and on the native histogram.
    let trace_of = |e: &pulse::telemetry::proto::Exemplar| {
        e.label
            .iter()
            .find(|l| l.name.as_deref() == Some("trace_id"))
            .and_then(|l| l.value.clone())
    };
    assert!(
        users
            .exemplars
            .iter()
            .any(|e| trace_of(e).as_deref() == Some(traced))
    );
    assert!(users.bucket.iter().any(|b| {
        b.exemplar
            .as_ref()
            .is_some_and(|e| trace_of(e).as_deref() == Some(traced))
    }));
    for series in &duration.metric {
        assert_native(series.histogram.as_ref().expect("histogram"), "duration");
    }

    let calls = family(&families, "http_client_request_duration_seconds");
    assert_eq!(calls.metric.len(), 1);
    let (count, _) = assert_native(calls.metric[0].histogram.as_ref().expect("h"), "client");
    assert_eq!(count, 1);
    // Histograms without a native store keep their classic form only.
    let sizes = family(&families, "http_request_size_bytes");
    assert!(sizes.metric.iter().all(|m| {
        m.histogram
            .as_ref()
            .is_some_and(|h| h.schema.is_none() && !h.bucket.is_empty())
    }));
}

#[test]
fn database_operations_carry_a_native_histogram() {
    if !common::runs_here(Need::Postgres, SUITE) {
        return;
    }
    let database = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(common::fresh_database());
    let pulse = Pulse::start_with_env(
        &["--kube", "off", "--shutdown-delay", "0s"],
        &[("PULSE_DATABASE_URL", &database)],
    );
    for _ in 0..3 {
        client()
            .get(pulse.url("/api/users"))
            .send()
            .expect("request");
    }
    let (_, body) = scrape(&pulse, PROMETHEUS_NATIVE);
    let families = decode(&body);
    let operations = family(&families, "db_client_operation_duration_seconds");
    assert!(!operations.metric.is_empty());
    for series in &operations.metric {
        assert_native(series.histogram.as_ref().expect("histogram"), "db");
    }
}

//! The server span of each request as it leaves Pulse over OTLP: decoded with the
//! OTLP protobuf messages and checked against the stable OpenTelemetry HTTP
//! server span conventions, attribute types included.

use crate::common;

use std::time::Duration;

use common::otlp::{self, attribute, hex, string};
use common::{Pulse, client};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT: &str = "b7ad6b7169203331";

/// Sends the requests with a sampled `traceparent`, stops Pulse (exit flushes the
/// exporter), returns the spans.
fn exported(requests: &[(&str, &str)]) -> Vec<Span> {
    exported_with(requests, &[], Some("01")).0
}

/// The same with extra environment and the parent's trace flags (`None`: no
/// `traceparent`); also returns the `traceparent` answers and the log lines.
fn exported_with(
    requests: &[(&str, &str)],
    env: &[(&str, &str)],
    parent_flags: Option<&str>,
) -> (Vec<Span>, Vec<String>, Vec<String>) {
    let (port, received) = otlp::receiver();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut all_env = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())];
    all_env.extend_from_slice(env);
    let mut pulse = Pulse::start_with_env(&["--shutdown-delay", "0s"], &all_env);
    let http = client();
    let mut answered = Vec::new();
    for (method, path) in requests {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = http
            .request(method, pulse.url(path))
            .header("user-agent", "otlp-test/1");
        if let Some(flags) = parent_flags {
            request = request.header("traceparent", format!("00-{TRACE_ID}-{PARENT}-{flags}"));
        }
        let reply = request.send().unwrap();
        answered.push(reply.headers()["traceparent"].to_str().unwrap().to_owned());
    }
    // Exit flushes the batch exporter.
    pulse.terminate();
    std::thread::sleep(Duration::from_millis(200));
    (otlp::spans(&received), answered, pulse.lines())
}
fn named<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
        panic!(
            "no span {name:?} in {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        )
    })
}

fn int(span: &Span, key: &str) -> Option<i64> {
    match attribute(span, key) {
        Some(Value::IntValue(v)) => Some(*v),
        _ => None,
    }
}

#[test]
fn server_spans_follow_the_http_semantic_conventions() {
    let spans = exported(&[
        ("GET", "/api/users?limit=5&sort=name"),
        ("GET", "/api/error"),
        ("GET", "/no/such/route"),
        ("BREW", "/api/users"),
    ]);

    let ok = named(&spans, "GET /api/users");
    assert_eq!(ok.kind, SpanKind::Server as i32);
    assert_eq!(hex(&ok.trace_id), TRACE_ID, "the caller's trace");
    assert_eq!(
        hex(&ok.parent_span_id),
        PARENT,
        "the caller's span is the parent"
    );
    assert_eq!(string(ok, "http.request.method"), Some("GET"));
    assert_eq!(string(ok, "http.route"), Some("/api/users"));
    assert_eq!(
        int(ok, "http.response.status_code"),
        Some(200),
        "an integer"
    );
    assert_eq!(string(ok, "url.path"), Some("/api/users"));
    assert_eq!(string(ok, "url.query"), Some("limit=5&sort=name"));
    assert_eq!(string(ok, "url.scheme"), Some("http"));
    assert_eq!(string(ok, "network.protocol.version"), Some("1.1"));
    assert_eq!(string(ok, "user_agent.original"), Some("otlp-test/1"));
    for absent in ["error.type", "http.request.method_original", "target"] {
        assert!(attribute(ok, absent).is_none(), "{absent} on a 200");
    }
    assert_ne!(
        ok.status.as_ref().map_or(0, |s| s.code),
        StatusCode::Error as i32
    );

    let failed = named(&spans, "GET /api/error");
    assert_eq!(int(failed, "http.response.status_code"), Some(500));
    assert_eq!(string(failed, "error.type"), Some("500"));
    assert_eq!(
        failed.status.as_ref().map(|s| s.code),
        Some(StatusCode::Error as i32)
    );
    assert!(
        attribute(failed, "url.query").is_none(),
        "no query, no url.query"
    );

    let unmatched = named(&spans, "GET");
    assert!(
        attribute(unmatched, "http.route").is_none(),
        "no route matched"
    );
    assert_eq!(int(unmatched, "http.response.status_code"), Some(404));
    assert_eq!(string(unmatched, "url.path"), Some("/no/such/route"));

    let other = spans
        .iter()
        .find(|s| string(s, "http.request.method_original") == Some("BREW"))
        .expect("the BREW request's span");
    assert_eq!(string(other, "http.request.method"), Some("_OTHER"));
    assert!(other.name.starts_with("HTTP"), "{}", other.name);
}

#[test]
fn the_standard_sampler_variables_decide_what_is_exported() {
    let requests = [("GET", "/api/users"), ("GET", "/api/users")];
    // always_off: nothing exported, but every request still has ids, answered and logged.
    let (spans, answered, lines) =
        exported_with(&requests, &[("OTEL_TRACES_SAMPLER", "always_off")], None);
    assert!(spans.is_empty(), "{} spans exported", spans.len());
    for traceparent in &answered {
        assert!(traceparent.ends_with("-00"), "not sampled: {traceparent}");
    }
    let logged: Vec<String> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"] == "request")
        .filter_map(|l| l["trace_id"].as_str().map(str::to_owned))
        .collect();
    let answered_ids: Vec<String> = answered.iter().map(|t| t[3..35].to_owned()).collect();
    assert_eq!(
        logged, answered_ids,
        "unsampled requests still log their trace id"
    );

    // parentbased_traceidratio at 0: new traces are dropped, a sampled caller's kept.
    let env = [
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0"),
    ];
    let (spans, _, _) = exported_with(&requests, &env, None);
    assert!(spans.is_empty(), "ratio 0 samples no new trace");
    let (spans, _, _) = exported_with(&requests, &env, Some("01"));
    assert_eq!(spans.len(), 2, "the sampled parent's decision is followed");

    // The default (parent-based always-on) exports everything.
    let (spans, _, _) = exported_with(&requests, &[], None);
    assert_eq!(spans.len(), 2);
}

/// A collector that fails the way collectors fail: not listening, accepting and
/// never answering, or answering 503 to every export.
enum BrokenCollector {
    Down,
    Silent,
    Unavailable,
}

impl BrokenCollector {
    /// Its endpoint; the listener (if any) lives as long as the returned guard.
    fn start(&self) -> (String, Option<std::net::TcpListener>) {
        use std::io::{Read as _, Write as _};
        match self {
            Self::Down => (format!("http://127.0.0.1:{}", common::free_port()), None),
            Self::Silent => {
                let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let endpoint = format!("http://{}", listener.local_addr().unwrap());
                let held = listener.try_clone().unwrap();
                std::thread::spawn(move || {
                    // Accept and hold every connection, reading nothing back.
                    let mut open = Vec::new();
                    for stream in held.incoming().flatten() {
                        open.push(stream);
                    }
                });
                (endpoint, Some(listener))
            }
            Self::Unavailable => {
                let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let endpoint = format!("http://{}", listener.local_addr().unwrap());
                let served = listener.try_clone().unwrap();
                std::thread::spawn(move || {
                    for mut stream in served.incoming().flatten() {
                        std::thread::spawn(move || {
                            let mut buffer = [0u8; 65536];
                            while let Ok(n) = stream.read(&mut buffer) {
                                if n == 0 {
                                    return;
                                }
                                let reply =
                                    "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
                                if stream.write_all(reply.as_bytes()).is_err() {
                                    return;
                                }
                            }
                        });
                    }
                });
                (endpoint, Some(listener))
            }
        }
    }
}

/// `pulse_spans_exported_total` and `pulse_spans_dropped_total{reason}` from a scrape.
fn span_counts(pulse: &Pulse) -> (f64, f64, f64) {
    let scrape = pulse.scrape();
    (
        scrape.value("pulse_spans_exported_total", &[]),
        scrape.value("pulse_spans_dropped_total", &[("reason", "queue_full")]),
        scrape.value("pulse_spans_dropped_total", &[("reason", "export_failed")]),
    )
}

/// Waits until every one of `spans` finished spans is accounted for, and returns
/// the counts (exported, queue_full, export_failed).
fn settled(pulse: &Pulse, spans: f64) -> (f64, f64, f64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let counts = span_counts(pulse);
        if counts.0 + counts.1 + counts.2 >= spans || std::time::Instant::now() > deadline {
            return counts;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn exported_spans_are_counted_and_reach_the_collector() {
    let (port, received) = otlp::receiver();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut pulse = Pulse::start_with_env(
        &["--shutdown-delay", "0s"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    );
    assert_eq!(span_counts(&pulse), (0.0, 0.0, 0.0));
    let http = client();
    for _ in 0..20 {
        assert_eq!(
            http.get(pulse.url("/api/users")).send().unwrap().status(),
            200
        );
    }
    assert_eq!(settled(&pulse, 20.0), (20.0, 0.0, 0.0));
    pulse.terminate();
    assert_eq!(otlp::spans(&received).len(), 20);
}

#[test]
fn a_failing_collector_never_slows_requests_or_the_exit() {
    for collector in [
        BrokenCollector::Down,
        BrokenCollector::Silent,
        BrokenCollector::Unavailable,
    ] {
        let (endpoint, _listener) = collector.start();
        let mut pulse = Pulse::start_with_env(
            &["--shutdown-delay", "0s", "--shutdown-timeout", "2s"],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
                // Export often, so the requests below overlap many failing exports.
                ("OTEL_BSP_SCHEDULE_DELAY", "50"),
                // A silent collector fails an export after this long (default 10 s).
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2000"),
            ],
        );
        let http = client();
        let mut slowest = Duration::ZERO;
        for _ in 0..300 {
            let started = std::time::Instant::now();
            let reply = http.get(pulse.url("/api/users")).send().unwrap();
            assert_eq!(reply.status(), 200, "{endpoint}");
            slowest = slowest.max(started.elapsed());
        }
        // A request that waited on an export would take the exporter's timeout (2 s).
        assert!(
            slowest < Duration::from_secs(1),
            "{endpoint}: slowest request {slowest:?}"
        );
        // Nothing is lost uncounted: every span is a counted failure.
        let (exported, queue_full, failed) = settled(&pulse, 300.0);
        assert_eq!(
            (exported, queue_full + failed),
            (0.0, 300.0),
            "{endpoint}: exported, dropped"
        );
        let stopping = std::time::Instant::now();
        pulse.terminate();
        assert!(
            stopping.elapsed() < Duration::from_secs(15),
            "{endpoint}: exit took {:?}",
            stopping.elapsed()
        );
    }
}

#[test]
fn a_full_export_queue_drops_spans_and_counts_them() {
    let (endpoint, _listener) = BrokenCollector::Silent.start();
    let pulse = Pulse::start_with_env(
        &["--shutdown-delay", "0s", "--shutdown-timeout", "2s"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "16"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000"),
        ],
    );
    let http = client();
    for _ in 0..100 {
        assert_eq!(
            http.get(pulse.url("/api/users")).send().unwrap().status(),
            200
        );
    }
    // 16 wait on the silent collector (3 s each try); most of the rest found the
    // queue full. Either way each one is counted once.
    let (exported, queue_full, failed) = settled(&pulse, 100.0);
    assert_eq!(exported, 0.0);
    assert!(
        queue_full >= 50.0,
        "queue_full {queue_full}, failed {failed}"
    );
    assert_eq!(queue_full + failed, 100.0);
}

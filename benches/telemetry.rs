//! Micro-benchmarks: what the telemetry layer costs per request, and how long
//! `/metrics` takes to encode at 1,000 and 10,000 series (text format and
//! OpenMetrics with exemplars).
//!
//! The per-request cost is the difference between the same router (same handlers)
//! with and without the layer, each driven in process with `oneshot`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry::trace::{SpanId, TraceId};
use pulse::app::{App, Identity};
use pulse::config::ServeArgs;
use pulse::telemetry::labels::HttpMethod;
use pulse::telemetry::routes::RouteTable;
use pulse::telemetry::{Handles, Metrics};
use tower::ServiceExt as _;

/// The app `pulse serve` runs at its defaults, with or without the telemetry layer.
fn app(telemetry: bool) -> App {
    let args = ServeArgs {
        disable_http_telemetry: !telemetry,
        ..ServeArgs::default()
    };
    let app = App::new(&args, Identity::current(Instant::now()), Handles::default()).expect("app");
    app.state.readiness.set_ready();
    app
}

fn per_request(c: &mut Criterion) {
    // The server's own subscriber (log filter at warn, as in the macro benchmark):
    // without it, spans would be disabled and the measured cost too low.
    let config = pulse::telemetry::TracingConfig {
        log_level: "warn".into(),
        log_format: pulse::config::LogFormat::Json,
    };
    let _guard =
        pulse::telemetry::init_tracing(&config, Identity::current(Instant::now()).resource)
            .expect("tracing");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("request");
    for (name, telemetry) in [("without_telemetry", false), ("with_telemetry", true)] {
        let app = app(telemetry).main;
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let request = Request::get("/api/users")
                        .header("host", "pulse.bench")
                        .body(Body::empty())
                        .expect("request");
                    app.clone().oneshot(request).await.expect("infallible")
                })
            })
        });
    }
    group.finish();
}

/// A registry holding about `series` exposition lines: label sets of the latency
/// histogram (14 lines each: 12 buckets, sum, count) plus counters.
fn populated(series: usize) -> Arc<Metrics> {
    let m = Arc::clone(&app(true).state.metrics);
    let routes = RouteTable::new(m.clone(), BTreeSet::new());
    // Each route adds about 40 lines: three histograms and a counter.
    for i in 0..series / 40 {
        routes
            .get(HttpMethod::Get, &format!("/bench/{i}"))
            .finished(
                200,
                (Instant::now(), Duration::from_millis(3)),
                // Sampled: each series then carries an exemplar, as under traced traffic.
                Some((TraceId::from(u128::MAX), SpanId::from(i as u64 + 1))),
                0,
                100,
            );
    }
    m
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("metrics_encode");
    for series in [1_000, 10_000] {
        let m = populated(series);
        let lines = String::from_utf8(m.encode().expect("encode"))
            .expect("utf-8")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .count();
        eprintln!("metrics_encode/{series}: {lines} series in the exposition");
        group.bench_function(series.to_string(), |b| {
            b.iter(|| m.encode().expect("encode"))
        });
        group.bench_function(format!("openmetrics/{series}"), |b| {
            b.iter(|| m.encode_openmetrics())
        });
        // With the native histograms of the duration series (telemetry/protobuf.rs).
        group.bench_function(format!("protobuf/{series}"), |b| {
            b.iter(|| m.encode_protobuf())
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = per_request, encode
}
criterion_main!(benches);

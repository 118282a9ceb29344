//! Micro-benchmarks: what the telemetry layer costs per request, and how long
//! `/metrics` takes to encode at 1,000 and 10,000 series.
//!
//! The per-request cost is the difference between the same router (same handlers)
//! with and without the layer, each driven in process with `oneshot`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry::KeyValue;
use pulse::BuildInfo;
use pulse::readiness::Readiness;
use pulse::routes::{self, HttpConfig};
use pulse::settings::{LiveSettings, RuntimeSettings};
use pulse::state::{AppState, ServiceInfo};
use pulse::store::MemoryStore;
use pulse::telemetry::Metrics;
use tower::ServiceExt as _;

fn metrics() -> Arc<Metrics> {
    let build = BuildInfo::current();
    Metrics::new(pulse::telemetry::resource(&build), &build, Instant::now()).expect("metrics")
}

fn router(telemetry: bool) -> axum::Router {
    let metrics = metrics();
    let readiness = Arc::new(Readiness::default());
    readiness.set_ready();
    let settings = RuntimeSettings::default();
    let state = AppState {
        store: Arc::new(MemoryStore::new()),
        metrics: metrics.clone(),
        readiness,
        info: Arc::new(ServiceInfo::from_env(
            "pulse".into(),
            BuildInfo::current(),
            Instant::now(),
        )),
        settings: Arc::new(LiveSettings::new(settings, metrics, None)),
    };
    routes::router(
        state,
        &HttpConfig {
            telemetry,
            ..HttpConfig::default()
        },
    )
}

fn per_request(c: &mut Criterion) {
    // The server's own subscriber (log filter at warn, as in the macro benchmark):
    // without it, spans would be disabled and the measured cost too low.
    let build = BuildInfo::current();
    let config = pulse::telemetry::TracingConfig {
        log_level: "warn".into(),
        log_format: pulse::config::LogFormat::Json,
    };
    let _guard = pulse::telemetry::init_tracing(&config, pulse::telemetry::resource(&build))
        .expect("tracing");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("request");
    for (name, telemetry) in [("without_telemetry", false), ("with_telemetry", true)] {
        let app = router(telemetry);
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let request = Request::get("/api/users")
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
    let m = metrics();
    let histograms = series / 15;
    for i in 0..histograms {
        let labels = [
            KeyValue::new("method", "GET"),
            KeyValue::new("route", format!("/bench/{i}")),
        ];
        m.http_duration.record(0.003, &labels);
        let with_status = [
            labels[0].clone(),
            labels[1].clone(),
            KeyValue::new("status", 200),
        ];
        m.http_requests.add(1, &with_status);
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
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = per_request, encode
}
criterion_main!(benches);

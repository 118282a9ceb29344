//! `/metrics` honours the README's metrics table: exact names, label names,
//! buckets and types; values that match the requests made; bounded series; and
//! an exposition `promtool check metrics` accepts.

use crate::common;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Command, Stdio};

use common::{Exposition, TestApp};
use pulse::config::ServeArgs;

/// Label names per metric family (without `le`), as the README lists them.
const CONTRACT: &[(&str, &str, &[&str])] = &[
    (
        "http_requests_total",
        "counter",
        &["method", "route", "status"],
    ),
    (
        "http_request_duration_seconds",
        "histogram",
        &["method", "route"],
    ),
    ("http_requests_in_progress", "gauge", &["method", "route"]),
    ("http_request_size_bytes", "histogram", &["method", "route"]),
    (
        "http_response_size_bytes",
        "histogram",
        &["method", "route", "status"],
    ),
    ("api_errors_total", "counter", &["error_type"]),
    ("app_requests_total", "counter", &[]),
    ("app_active_users", "gauge", &[]),
    ("app_cpu_usage_percent", "gauge", &[]),
    ("pulse_users", "gauge", &[]),
    ("pulse_data_items", "gauge", &[]),
    ("pulse_build_info", "gauge", &["version", "revision"]),
    ("pulse_config_reloads_total", "counter", &["result"]),
    ("pulse_runtime_settings", "gauge", &["setting"]),
    ("process_cpu_seconds_total", "counter", &[]),
    ("process_resident_memory_bytes", "gauge", &[]),
    ("process_virtual_memory_bytes", "gauge", &[]),
    ("process_start_time_seconds", "gauge", &[]),
    ("process_open_fds", "gauge", &[]),
    ("process_max_fds", "gauge", &[]),
    ("process_threads", "gauge", &[]),
    ("process_uptime_seconds", "gauge", &[]),
    ("target_info", "gauge", &["service_name"]),
];

/// Probe and scrape routes, excluded from `http_*` and `app_requests_total`.
const PROBES: [&str; 6] = [
    "/healthz",
    "/readyz",
    "/health",
    "/health/live",
    "/health/ready",
    "/metrics",
];

const DURATION_BUCKETS: &[&str] = &[
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];

/// A fixed script of requests; returns how many count as API requests.
async fn scripted_traffic(app: &TestApp) -> f64 {
    for _ in 0..3 {
        app.get("/api/users").await;
    }
    app.send("POST", "/api/users?name=A&email=a@example.com", None)
        .await;
    app.send("POST", "/api/users?name=B&email=b@example.com", None)
        .await;
    app.get("/api/users/99").await; // 404
    app.get("/api/error").await; // 500
    app.get("/update?users=-1").await; // 400
    app.get("/update?users=7").await;
    app.get("/cpu?value=33.3").await;
    app.send("POST", "/data", Some(r#"{"key":"a","value":"0123456789"}"#))
        .await;
    // Probes and scrapes: excluded from http_* and app_requests_total.
    for path in PROBES {
        app.get(path).await;
    }
    11.0
}

#[tokio::test]
async fn every_contract_metric_with_exact_labels_types_and_values() {
    let app = TestApp::new();
    let api_requests = scripted_traffic(&app).await;
    let m = app.scrape().await;

    for (name, kind, labels) in CONTRACT {
        assert_eq!(
            m.types.get(*name).map(String::as_str),
            Some(*kind),
            "TYPE of {name}"
        );
        let samples: Vec<_> = m
            .samples
            .iter()
            .filter(|s| {
                s.name == *name
                    || s.name
                        .strip_prefix(*name)
                        .is_some_and(|r| ["_bucket", "_sum", "_count"].contains(&r))
            })
            .collect();
        assert!(!samples.is_empty(), "{name} missing");
        let expected: BTreeSet<&str> = labels.iter().copied().collect();
        for s in samples {
            let mut names: BTreeSet<&str> = s.labels.keys().map(String::as_str).collect();
            names.remove("le");
            if *name == "target_info" {
                assert!(names.is_superset(&expected), "{name}: {names:?}");
            } else {
                assert_eq!(names, expected, "labels of {}", s.name);
            }
        }
    }
    assert!(
        !m.text.contains("otel_scope"),
        "scope labels must be disabled"
    );

    let req = |method, route, status| {
        m.value(
            "http_requests_total",
            &[("method", method), ("route", route), ("status", status)],
        )
    };
    assert_eq!(req("GET", "/api/users", "200"), 3.0);
    assert_eq!(req("POST", "/api/users", "201"), 2.0);
    assert_eq!(req("GET", "/api/users/{id}", "404"), 1.0);
    assert_eq!(req("GET", "/api/error", "500"), 1.0);
    assert_eq!(req("GET", "/update", "400"), 1.0);
    assert_eq!(req("POST", "/data", "201"), 1.0);
    let total: f64 = m
        .find("http_requests_total", &[])
        .iter()
        .map(|s| s.value)
        .sum();
    assert_eq!(total, api_requests, "probes and /metrics are not counted");
    for probe in PROBES {
        assert!(
            m.samples
                .iter()
                .all(|s| s.labels.get("route").map(String::as_str) != Some(probe)),
            "{probe}"
        );
    }
    assert_eq!(m.value("app_requests_total", &[]), api_requests);

    assert_eq!(
        m.value("api_errors_total", &[("error_type", "not_found")]),
        1.0
    );
    assert_eq!(
        m.value("api_errors_total", &[("error_type", "simulated")]),
        1.0
    );
    assert_eq!(
        m.value("api_errors_total", &[("error_type", "validation")]),
        1.0
    );

    // Histogram: exact boundaries, cumulative counts, count matches requests.
    let users = [("method", "GET"), ("route", "/api/users")];
    let buckets: Vec<&str> = m
        .find("http_request_duration_seconds_bucket", &users)
        .iter()
        .map(|s| s.labels["le"].as_str())
        .collect();
    assert_eq!(buckets, DURATION_BUCKETS);
    assert_eq!(m.value("http_request_duration_seconds_count", &users), 3.0);
    assert_eq!(
        m.value(
            "http_request_duration_seconds_bucket",
            &[users[0], users[1], ("le", "+Inf")]
        ),
        3.0
    );
    assert!(m.value("http_request_duration_seconds_sum", &users) > 0.0);

    // Sizes: the POST /data body is 32 bytes; its response echoes the item.
    let data = [("method", "POST"), ("route", "/data")];
    assert_eq!(m.value("http_request_size_bytes_sum", &data), 32.0);
    assert_eq!(
        m.value(
            "http_response_size_bytes_sum",
            &[data[0], data[1], ("status", "201")]
        ),
        r#"{"key":"a","value":"0123456789"}"#.len() as f64
    );
    assert_eq!(m.value("http_requests_in_progress", &users), 0.0);

    assert_eq!(m.value("app_active_users", &[]), 7.0);
    assert_eq!(m.value("app_cpu_usage_percent", &[]), 33.3);
    assert_eq!(m.value("pulse_users", &[]), 2.0);
    assert_eq!(m.value("pulse_data_items", &[]), 1.0);
    let build = pulse::BuildInfo::current();
    assert_eq!(
        m.value(
            "pulse_build_info",
            &[("version", build.version), ("revision", build.revision)]
        ),
        1.0
    );
    assert!(m.value("process_resident_memory_bytes", &[]) > 0.0);
    assert!(m.value("process_uptime_seconds", &[]) > 0.0);
}

#[tokio::test]
async fn in_progress_counts_requests_being_served() {
    let app = TestApp::new();
    let router = app.router.clone();
    let slow = tokio::spawn(async move {
        use tower::ServiceExt as _;
        let request = axum::http::Request::get("/delay/0.5")
            .header("host", "pulse.test")
            .body(axum::body::Body::empty())
            .unwrap();
        router.oneshot(request).await.unwrap().status()
    });
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let during = [("method", "GET"), ("route", "/delay/{seconds}")];
    assert_eq!(
        app.scrape()
            .await
            .value("http_requests_in_progress", &during),
        1.0
    );
    assert!(slow.await.unwrap().is_success());
    assert_eq!(
        app.scrape()
            .await
            .value("http_requests_in_progress", &during),
        0.0
    );
}

#[tokio::test]
async fn unknown_paths_and_methods_create_no_series() {
    let app = TestApp::new();
    app.get("/first/unknown").await;
    app.send("BREW", "/another", None).await;
    let before = app.scrape().await;
    for i in 0..10_000 {
        let method = if i % 2 == 0 { "GET" } else { "BREW" };
        app.send(method, &format!("/unknown/{i}/{}", i * 7919), None)
            .await;
    }
    let after = app.scrape().await;
    let series = |m: &Exposition| -> BTreeSet<String> {
        m.samples
            .iter()
            .filter(|s| !s.name.starts_with("process_"))
            .map(common::Sample::key)
            .collect()
    };
    assert_eq!(series(&before), series(&after), "no new series");
    assert_eq!(
        after.value(
            "http_requests_total",
            &[("method", "GET"), ("route", "unmatched"), ("status", "404")]
        ),
        5001.0
    );
    assert_eq!(
        after.value(
            "http_requests_total",
            &[
                ("method", "_OTHER"),
                ("route", "unmatched"),
                ("status", "404")
            ]
        ),
        5001.0
    );
}

#[tokio::test]
async fn the_probe_flag_puts_probes_back() {
    let app = TestApp::with(&ServeArgs {
        instrument_probes: true,
        ..ServeArgs::default()
    });
    app.get("/healthz").await;
    let m = app.scrape().await;
    let healthz = [("method", "GET"), ("route", "/healthz"), ("status", "200")];
    assert_eq!(m.value("http_requests_total", &healthz), 1.0);
    assert_eq!(m.value("app_requests_total", &[]), 1.0);
}

#[tokio::test]
async fn content_type_is_the_versioned_text_format() {
    let app = TestApp::new();
    let reply = app.get("/metrics").await;
    assert_eq!(
        reply.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
}

#[tokio::test]
async fn promtool_check_metrics_reports_nothing() {
    if !common::runs_here(
        common::Need::Promtool,
        "promtool_check_metrics_reports_nothing",
    ) {
        return;
    }
    let app = TestApp::new();
    scripted_traffic(&app).await;
    let exposition = app.get("/metrics").await.body;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found: install Debian's `prometheus` package (make deps)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool: {report}"
    );
}

//! The HTTP API through the real router: every README example, and every kind of
//! bad input answered with a 4xx JSON error that changes nothing. The tests of the
//! store's behaviour run on the in-memory store, and again on PostgreSQL with
//! `PULSE_TEST_STORE=postgres` (`make test` runs both).

use crate::common;

use axum::http::StatusCode;
use common::TestApp;
use pulse::config::ServeArgs;
use serde_json::json;

#[tokio::test]
async fn users_crud_with_query_params() {
    let app = TestApp::fresh().await;
    let john = app
        .send("POST", "/api/users?name=John&email=john@example.com", None)
        .await;
    assert_eq!(john.status, StatusCode::CREATED);
    assert_eq!(
        john.json(),
        json!({"id": 1, "name": "John", "email": "john@example.com"})
    );
    app.send("POST", "/api/users?name=Jane&email=jane@example.com", None)
        .await;

    let list = app.get("/api/users").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(
        list.json(),
        json!({"users": [
            {"id": 1, "name": "John", "email": "john@example.com"},
            {"id": 2, "name": "Jane", "email": "jane@example.com"}
        ], "count": 2})
    );

    assert_eq!(app.get("/api/users/1").await.json()["name"], "John");
    let updated = app.send("PUT", "/api/users/1?name=John%20Doe", None).await;
    assert_eq!(updated.status, StatusCode::OK);
    assert_eq!(
        updated.json(),
        json!({"id": 1, "name": "John Doe", "email": "john@example.com"})
    );

    let deleted = app.send("DELETE", "/api/users/1", None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(deleted.body.is_empty());
    let gone = app.get("/api/users/1").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.json(), json!({"error": "user 1 not found"}));
    assert_eq!(app.get("/api/users").await.json()["count"], 1);
}

#[tokio::test]
async fn users_accept_json_bodies_too() {
    let app = TestApp::fresh().await;
    let created = app
        .send(
            "POST",
            "/api/users",
            Some(r#"{"name":"Ann","email":"ann@example.com"}"#),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let patched = app
        .send(
            "PUT",
            "/api/users/1",
            Some(r#"{"email":"ann@example.org"}"#),
        )
        .await;
    assert_eq!(
        patched.json(),
        json!({"id": 1, "name": "Ann", "email": "ann@example.org"})
    );
}

#[tokio::test(start_paused = true)]
async fn slow_and_error_endpoints() {
    let app = TestApp::new();
    let started = tokio::time::Instant::now();
    let slow = app.get("/api/slow").await;
    let waited = started.elapsed().as_secs_f64();
    assert_eq!(slow.status, StatusCode::OK);
    assert!((2.0..3.0).contains(&waited), "waited {waited}s");
    let reported = slow.json()["delay_seconds"].as_f64().unwrap();
    assert!((2.0..3.0).contains(&reported));

    let error = app.get("/api/error").await;
    assert_eq!(error.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(error.json(), json!({"error": "simulated error"}));
    let metrics = app.scrape().await;
    assert_eq!(
        metrics.value("api_errors_total", &[("error_type", "simulated")]),
        1.0
    );
}

#[tokio::test]
async fn legacy_gauges() {
    let app = TestApp::fresh().await;
    let users = app.get("/update?users=42").await;
    assert_eq!(
        (users.status, users.json()),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let cpu = app.get("/cpu?value=65.5").await;
    assert_eq!(
        (cpu.status, cpu.json()),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let metrics = app.scrape().await;
    assert_eq!(metrics.value("app_active_users", &[]), 42.0);
    assert_eq!(metrics.value("app_cpu_usage_percent", &[]), 65.5);
    assert_eq!(metrics.value("app_requests_total", &[]), 2.0);
}

#[tokio::test]
async fn health_and_data() {
    let app = TestApp::fresh().await;
    let health = app.get("/health").await;
    assert_eq!(health.status, StatusCode::OK);
    let body = health.json();
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["checks"]["readiness"], "ready");
    for field in ["pid", "rss_bytes", "cpu_seconds", "threads", "open_fds"] {
        assert!(
            body["process"][field].is_number(),
            "process.{field}: {body}"
        );
    }
    assert!(body["uptime_seconds"].is_number());
    assert_eq!(
        app.get("/health/live").await.json(),
        json!({"status": "ok"})
    );
    assert_eq!(
        app.get("/health/ready").await.json(),
        json!({"status": "ready"})
    );

    let created = app
        .send("POST", "/data", Some(r#"{"key": "test", "value": "data"}"#))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.json(), json!({"key": "test", "value": "data"}));
    let replaced = app
        .send(
            "POST",
            "/data",
            Some(r#"{"key": "test", "value": {"n": 2}}"#),
        )
        .await;
    assert_eq!(replaced.status, StatusCode::OK);
    assert_eq!(app.get("/data/test").await.json()["value"], json!({"n": 2}));
    assert_eq!(
        app.get("/data").await.json(),
        json!({"items": [{"key": "test", "value": {"n": 2}}], "count": 1})
    );
    assert_eq!(app.scrape().await.value("pulse_data_items", &[]), 1.0);
    assert_eq!(
        app.send("DELETE", "/data/test", None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.get("/data/test").await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.scrape().await.value("pulse_data_items", &[]), 0.0);
}

#[tokio::test]
async fn items_echo_the_id_and_query() {
    let app = TestApp::fresh().await;
    let item = app.get("/items/42?q=test").await;
    assert_eq!(item.json(), json!({"item_id": 42, "q": "test"}));
    assert_eq!(
        app.get("/items/7").await.json(),
        json!({"item_id": 7, "q": null})
    );
}

#[tokio::test]
async fn info_version_status_delay_echo() {
    let app = TestApp::new();
    let info = app.get("/").await.json();
    for field in [
        "name",
        "version",
        "hostname",
        "started_at",
        "uptime_seconds",
    ] {
        assert!(!info[field].is_null(), "{field}: {info}");
    }
    assert_eq!(info["name"], "pulse");
    let version = app.get("/version").await.json();
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    assert!(version["revision"].is_string());

    let teapot = app.send("POST", "/status/418", None).await;
    assert_eq!(
        (teapot.status.as_u16(), teapot.json()),
        (418, json!({"status": 418, "error": "I'm a teapot"}))
    );
    let ok = app.get("/status/201").await;
    assert_eq!(
        (ok.status.as_u16(), ok.json()),
        (201, json!({"status": 201}))
    );
    let no_content = app.get("/status/204").await;
    assert_eq!(
        (no_content.status.as_u16(), no_content.body.as_str()),
        (204, "")
    );

    let delayed = app.get("/delay/0.05").await;
    assert_eq!(delayed.json(), json!({"delay_seconds": 0.05}));

    let echo = app
        .send_with("POST", "/echo", Some("text/csv"), b"a,b\n1,2\n")
        .await;
    assert_eq!(echo.status, StatusCode::OK);
    assert_eq!(echo.headers["content-type"], "text/csv");
    assert_eq!(echo.body, "a,b\n1,2\n");
}

#[tokio::test]
async fn readiness_toggles_at_run_time() {
    let app = TestApp::fresh().await;
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
    let disabled = app.send("POST", "/readyz/disable", None).await;
    assert_eq!(disabled.status, StatusCode::ACCEPTED);
    let probe = app.get("/readyz").await;
    assert_eq!(probe.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        probe.json(),
        json!({"status": "not ready", "reason": "disabled"})
    );
    assert_eq!(
        app.get("/healthz").await.status,
        StatusCode::OK,
        "liveness unaffected"
    );
    app.send("POST", "/readyz/enable", None).await;
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
}

/// (method, uri, content type, body, expected status, expected `field`)
type BadRequest<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    &'a [u8],
    u16,
    Option<&'a str>,
);

/// Everything a client can see change: stored users and items, the gauges.
async fn observable_state(app: &TestApp) -> (String, String, f64, f64, f64, f64) {
    let metrics = app.scrape().await;
    (
        app.get("/api/users").await.body,
        app.get("/data").await.body,
        metrics.value("app_active_users", &[]),
        metrics.value("app_cpu_usage_percent", &[]),
        metrics.value("pulse_users", &[]),
        metrics.value("pulse_data_items", &[]),
    )
}

#[tokio::test]
async fn bad_input_is_a_counted_4xx_json_error_and_changes_nothing() {
    let app = TestApp::fresh().await;
    app.send("POST", "/api/users?name=John&email=john@example.com", None)
        .await;
    app.send("POST", "/data", Some(r#"{"key":"k","value":1}"#))
        .await;
    app.get("/update?users=3").await;
    app.get("/cpu?value=12").await;
    let before = observable_state(&app).await;

    let json = Some("application/json");
    let oversized = format!(r#"{{"key":"big","value":"{}"}}"#, "x".repeat(2 << 20));
    let cases: Vec<BadRequest> = vec![
        ("POST", "/api/users", json, b"{bad", 400, None),
        (
            "POST",
            "/api/users",
            Some("text/plain"),
            br#"{"name":"a","email":"a@b"}"#,
            415,
            None,
        ),
        // A field missing from a JSON body is JSON of the wrong shape (422); from
        // a query string, a missing parameter (400).
        (
            "POST",
            "/api/users",
            json,
            br#"{"name":"a"}"#,
            422,
            Some("email"),
        ),
        ("POST", "/api/users", json, b"{}", 422, Some("name")),
        ("POST", "/api/users?name=Bob", None, b"", 400, Some("email")),
        ("PUT", "/api/users/1", json, b"{}", 422, None),
        // A struct's fields as an array: serde would take it; the API does not.
        (
            "POST",
            "/api/users",
            json,
            br#"["Arr","arr@x.y"]"#,
            422,
            None,
        ),
        ("PUT", "/api/users/1", json, br#"["Renamed"]"#, 422, None),
        ("POST", "/data", json, br#"["k2",5]"#, 422, None),
        ("POST", "/data", json, br#"["k",,]"#, 400, None),
        ("POST", "/data", json, b"7", 422, None),
        (
            "POST",
            "/api/users",
            json,
            br#"{"name":7,"email":"a@b"}"#,
            422,
            Some("name"),
        ),
        (
            "POST",
            "/api/users",
            json,
            br#"{"name":"a","email":"a@b","admin":true}"#,
            422,
            Some("admin"),
        ),
        (
            "POST",
            "/api/users?name=&email=x@y",
            None,
            b"",
            400,
            Some("name"),
        ),
        (
            "POST",
            "/api/users?name=Bob&email=not-an-email",
            None,
            b"",
            400,
            Some("email"),
        ),
        (
            "PUT",
            "/api/users/1?email=broken",
            None,
            b"",
            400,
            Some("email"),
        ),
        (
            "PUT",
            "/api/users/1?name=Ok&email=broken",
            None,
            b"",
            400,
            Some("email"),
        ),
        ("PUT", "/api/users/1", None, b"", 400, None),
        ("PUT", "/api/users/99?name=Ghost", None, b"", 404, None),
        ("GET", "/api/users/abc", None, b"", 400, Some("id")),
        ("GET", "/api/users/-1", None, b"", 400, Some("id")),
        ("DELETE", "/api/users/99", None, b"", 404, None),
        ("POST", "/data", json, oversized.as_bytes(), 413, None),
        (
            "POST",
            "/data",
            None,
            br#"{"key":"k","value":2}"#,
            415,
            None,
        ),
        (
            "POST",
            "/data",
            json,
            br#"{"key":"","value":2}"#,
            400,
            Some("key"),
        ),
        ("POST", "/data", json, br#"{"value":2}"#, 422, Some("key")),
        ("DELETE", "/data/missing", None, b"", 404, None),
        ("GET", "/update?users=-5", None, b"", 400, Some("users")),
        ("GET", "/update?users=many", None, b"", 400, Some("users")),
        ("GET", "/update", None, b"", 400, Some("users")),
        ("GET", "/cpu?value=101", None, b"", 400, Some("value")),
        ("GET", "/cpu?value=-0.5", None, b"", 400, Some("value")),
        ("GET", "/cpu?value=NaN", None, b"", 400, Some("value")),
        ("GET", "/cpu?value=inf", None, b"", 400, Some("value")),
        ("GET", "/status/600", None, b"", 400, Some("code")),
        ("GET", "/status/99", None, b"", 400, Some("code")),
        ("GET", "/status/100", None, b"", 400, Some("code")),
        ("POST", "/status/abc", None, b"", 400, Some("code")),
        ("GET", "/delay/11", None, b"", 400, Some("seconds")),
        ("GET", "/delay/-1", None, b"", 400, Some("seconds")),
        ("GET", "/delay/NaN", None, b"", 400, Some("seconds")),
        ("GET", "/items/4.2", None, b"", 400, Some("item_id")),
        (
            "GET",
            "/items/99999999999999999999",
            None,
            b"",
            400,
            Some("item_id"),
        ),
        ("PATCH", "/api/users", None, b"", 405, None),
        ("BREW", "/data", None, b"", 405, None),
        ("GET", "/no/such/route", None, b"", 404, None),
    ];
    let errors_before = error_total(&app).await;
    for (method, uri, content_type, body, status, field) in &cases {
        let reply = app.send_with(method, uri, *content_type, body).await;
        assert_eq!(
            reply.status.as_u16(),
            *status,
            "{method} {uri}: {}",
            reply.body
        );
        let error = reply.json();
        assert!(
            error["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{method} {uri}: {error}"
        );
        assert_eq!(error["field"].as_str(), *field, "{method} {uri}: {error}");
        assert_eq!(reply.headers["content-type"], "application/json");
    }
    assert_eq!(
        error_total(&app).await - errors_before,
        cases.len() as f64,
        "every rejected request is counted in api_errors_total"
    );
    assert_eq!(observable_state(&app).await, before, "no state changed");
}

async fn error_total(app: &TestApp) -> f64 {
    let metrics = app.scrape().await;
    metrics
        .find("api_errors_total", &[])
        .iter()
        .map(|s| s.value)
        .sum()
}

#[tokio::test]
async fn injected_faults_hit_api_routes_only() {
    let app = TestApp::with(&ServeArgs {
        fault_error_rate: 1.0,
        ..ServeArgs::default()
    });
    let created = app
        .send("POST", "/api/users?name=John&email=john@example.com", None)
        .await;
    assert_eq!(created.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(created.json(), json!({"error": "injected fault"}));
    for path in [
        "/healthz",
        "/readyz",
        "/health",
        "/metrics",
        "/",
        "/version",
        "/openapi.json",
    ] {
        assert!(
            app.get(path).await.status.is_success(),
            "{path} must not be faulted"
        );
    }
    let metrics = app.scrape().await;
    assert_eq!(
        metrics.value("api_errors_total", &[("error_type", "injected")]),
        1.0
    );
    assert_eq!(
        metrics.value("pulse_users", &[]),
        0.0,
        "the injected failure stored nothing"
    );
}

/// Injected delays hold API requests back by up to `--fault-delay-max`, then let
/// them through to the handler (or fail them, with the error rate on top).
#[tokio::test(start_paused = true)]
async fn injected_delays_hold_requests_back_then_serve_them() {
    let max = std::time::Duration::from_secs(2);
    let app = TestApp::with(&ServeArgs {
        fault_delay_max: max,
        ..ServeArgs::default()
    });
    let mut waited = std::time::Duration::ZERO;
    for i in 1..=5 {
        let started = tokio::time::Instant::now();
        let created = app
            .send(
                "POST",
                &format!("/api/users?name=U{i}&email=u{i}@example.com"),
                None,
            )
            .await;
        let elapsed = started.elapsed();
        assert_eq!(created.status, StatusCode::CREATED, "delayed request {i}");
        assert_eq!(created.json()["id"], i, "the handler ran once per request");
        assert!(elapsed <= max, "delay {elapsed:?} beyond the cap {max:?}");
        waited += elapsed;
    }
    assert!(
        waited >= std::time::Duration::from_millis(100),
        "5 requests with delays uniform in 0..2 s waited only {waited:?}"
    );

    let failing = TestApp::with(&ServeArgs {
        fault_delay_max: max,
        fault_error_rate: 1.0,
        ..ServeArgs::default()
    });
    let refused = failing
        .send("POST", "/api/users?name=John&email=john@example.com", None)
        .await;
    assert_eq!(refused.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        failing.scrape().await.value("pulse_users", &[]),
        0.0,
        "a delayed injected failure stores nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn slow_requests_time_out_with_503() {
    let app = TestApp::with(&ServeArgs {
        request_timeout: std::time::Duration::from_secs(1),
        ..ServeArgs::default()
    });
    let reply = app.get("/delay/5").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.headers["retry-after"], "1");
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("did not complete")
    );
    let metrics = app.scrape().await;
    assert_eq!(
        metrics.value("api_errors_total", &[("error_type", "timeout")]),
        1.0
    );
}

#[tokio::test]
async fn openapi_lists_every_contract_route() {
    let app = TestApp::new();
    let doc = app.get("/openapi.json").await.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    // The README's endpoint table, written out independently of the router.
    let contract = [
        ("get", "/"),
        ("get", "/version"),
        ("get", "/healthz"),
        ("get", "/health/live"),
        ("get", "/readyz"),
        ("get", "/health/ready"),
        ("get", "/health"),
        ("post", "/readyz/enable"),
        ("post", "/readyz/disable"),
        ("get", "/metrics"),
        ("get", "/openapi.json"),
        ("get", "/stats"),
        ("get", "/api/users"),
        ("post", "/api/users"),
        ("get", "/api/users/{id}"),
        ("put", "/api/users/{id}"),
        ("delete", "/api/users/{id}"),
        ("get", "/api/slow"),
        ("get", "/api/error"),
        ("get", "/api/backend"),
        ("get", "/delay/{seconds}"),
        ("get", "/admin/runtime"),
        ("put", "/admin/runtime"),
        ("get", "/status/{code}"),
        ("post", "/status/{code}"),
        ("get", "/update"),
        ("get", "/cpu"),
        ("post", "/data"),
        ("get", "/data"),
        ("get", "/data/{key}"),
        ("delete", "/data/{key}"),
        ("get", "/items/{item_id}"),
        ("post", "/echo"),
    ];
    let paths = doc["paths"].as_object().unwrap();
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    for (method, path) in contract {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} undocumented"
        );
    }
    assert_eq!(
        documented,
        contract.len(),
        "routes beyond the contract: {:?}",
        paths.keys()
    );
}

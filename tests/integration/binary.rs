//! The real `pulse` binary over real TCP: serving, the shutdown sequence of
//! (README "Graceful shutdown"), trace propagation, configuration errors and `pulse probe`.

use crate::common;

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{Exposition, Pulse, client};
use nix::sys::signal::Signal;

#[test]
fn serves_the_api_over_tcp() {
    let pulse = Pulse::start(&[]);
    let http = client();
    let users = http.get(pulse.url("/api/users")).send().unwrap();
    assert_eq!(users.status(), 200);
    assert_eq!(users.text().unwrap(), r#"{"users":[],"count":0}"#);
    let created = http
        .post(pulse.url("/api/users?name=John&email=john@example.com"))
        .send()
        .unwrap();
    assert_eq!(created.status(), 201);
    let metrics = http
        .get(pulse.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let m = Exposition::parse(&metrics);
    assert_eq!(m.value("pulse_users", &[]), 1.0);
    assert!(m.value("process_open_fds", &[]) > 0.0);
}

/// Polls until `check` holds or `limit` passes; returns how long it took.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return Some(start.elapsed());
        }
        thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn sigterm_flips_readiness_keeps_serving_then_drains_and_exits_zero() {
    let delay = Duration::from_secs(1);
    let timeout = Duration::from_secs(5);
    let mut pulse = Pulse::start(&["--shutdown-delay", "1s", "--shutdown-timeout", "5s"]);
    let http = client();

    let in_flight = {
        let url = pulse.url("/delay/2");
        let http = http.clone();
        thread::spawn(move || http.get(url).send().map(|r| r.status().as_u16()))
    };
    thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    pulse.signal(Signal::SIGTERM);

    let flipped = eventually(Duration::from_millis(500), || {
        http.get(pulse.url("/readyz"))
            .send()
            .is_ok_and(|r| r.status() == 503)
    });
    assert!(flipped.is_some(), "readiness must turn 503 at once");
    let reason = http
        .get(pulse.url("/readyz"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(reason.contains("shutting down"), "{reason}");

    // During the delay, new requests are still served.
    let during = http.get(pulse.url("/api/users")).send().unwrap();
    assert_eq!(during.status(), 200);
    assert_eq!(
        during.headers()["connection"],
        "close",
        "keep-alive clients are told to reconnect elsewhere"
    );
    assert!(signalled.elapsed() < delay, "checked within the delay");

    assert_eq!(
        in_flight.join().unwrap().unwrap(),
        200,
        "in-flight request completes"
    );
    let status = pulse
        .wait_exit(delay + timeout + Duration::from_secs(2))
        .expect("exits within delay + timeout");
    assert_eq!(status.code(), Some(0));
    assert!(signalled.elapsed() >= delay, "kept serving for the delay");
    // The output readers finish the pipe just after the exit.
    thread::sleep(Duration::from_millis(200));
    let lines = pulse.lines().join("\n");
    assert!(lines.contains("shutdown: drained"), "{lines}");
}

#[test]
fn a_second_signal_exits_at_once() {
    let mut pulse = Pulse::start(&["--shutdown-delay", "30s"]);
    pulse.signal(Signal::SIGTERM);
    let http = client();
    eventually(Duration::from_secs(2), || {
        http.get(pulse.url("/readyz"))
            .send()
            .is_ok_and(|r| r.status() == 503)
    })
    .expect("first signal handled");
    let second = Instant::now();
    pulse.signal(Signal::SIGTERM);
    let status = pulse
        .wait_exit(Duration::from_secs(2))
        .expect("exits at once");
    assert!(second.elapsed() < Duration::from_secs(1));
    assert_eq!(status.code(), Some(143), "128 + SIGTERM");
}

#[test]
fn draining_is_bounded_by_the_shutdown_timeout() {
    let mut pulse = Pulse::start(&["--shutdown-delay", "0s", "--shutdown-timeout", "1s"]);
    let url = pulse.url("/delay/8");
    let http = client();
    let _stuck = thread::spawn(move || http.get(url).send().map(|r| r.status()));
    thread::sleep(Duration::from_millis(200));
    let signalled = Instant::now();
    pulse.signal(Signal::SIGTERM);
    let status = pulse
        .wait_exit(Duration::from_secs(4))
        .expect("gives up draining");
    assert_eq!(status.code(), Some(0));
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "{took:?}"
    );
    thread::sleep(Duration::from_millis(200));
    assert!(pulse.lines().join("\n").contains("drain timeout"));
}

#[test]
fn traceparent_is_continued_logged_and_returned() {
    let pulse = Pulse::start(&["--log-format", "json"]);
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let reply = client()
        .get(pulse.url("/api/users"))
        .header("traceparent", &parent)
        .send()
        .unwrap();
    let returned = reply.headers()["traceparent"].to_str().unwrap().to_owned();
    assert!(
        returned.starts_with(&format!("00-{trace_id}-")),
        "{returned}"
    );
    assert_ne!(
        returned, parent,
        "the server span is a child, with its own id"
    );
    let span_id = returned.split('-').nth(2).unwrap().to_owned();

    let logged = eventually(Duration::from_secs(2), || {
        pulse.lines().iter().any(|line| {
            serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| {
                v["message"] == "request"
                    && v["route"] == "/api/users"
                    && v["trace_id"] == trace_id
                    && v["span_id"] == span_id.as_str()
            })
        })
    });
    assert!(
        logged.is_some(),
        "no request log with the trace id: {:?}",
        pulse.lines()
    );
}

#[test]
fn requests_without_traceparent_start_a_new_trace() {
    let pulse = Pulse::start(&[]);
    let reply = client().get(pulse.url("/version")).send().unwrap();
    let traceparent = reply.headers()["traceparent"].to_str().unwrap();
    let trace_id = traceparent.split('-').nth(1).unwrap();
    assert_eq!(trace_id.len(), 32);
    assert_ne!(trace_id, "0".repeat(32));
}

#[test]
fn invalid_configuration_fails_with_one_clear_line() {
    for (args, env, needle) in [
        (
            vec!["--fault-error-rate", "2"],
            vec![],
            "--fault-error-rate",
        ),
        (
            vec![],
            vec![("PULSE_SHUTDOWN_TIMEOUT", "soon")],
            "--shutdown-timeout",
        ),
        (vec!["--max-body-bytes", "-1"], vec![], "between 1 and"),
        (vec!["--log-format", "xml"], vec![], "--log-format"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_pulse"))
            .args(&args)
            .envs(env)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.contains(needle), "{first}");
    }
}

#[test]
fn an_address_in_use_is_a_clear_error() {
    let pulse = Pulse::start(&[]);
    let addr = format!("127.0.0.1:{}", pulse.port);
    let out = Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args(["--addr", &addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(
        lines[0].starts_with(&format!("pulse: cannot listen on {addr} (--addr): ")),
        "{stderr}"
    );
    // The OS's reason ("Address already in use (os error 98)"), once: the message already
    // holds it, and printing the error's chain must not repeat it.
    let line = lines[0].to_lowercase();
    assert_eq!(
        line.matches("address already in use").count(),
        1,
        "{stderr}"
    );
    assert_eq!(line.matches("os error").count(), 1, "{stderr}");
}

#[test]
fn probe_exits_zero_only_on_2xx() {
    let pulse = Pulse::start(&[]);
    let probe = |url: String| {
        Command::new(env!("CARGO_BIN_EXE_pulse"))
            .args(["probe", &url])
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(probe(pulse.url("/healthz")), Some(0));
    assert_eq!(probe(pulse.url("/status/503")), Some(1));
    assert_eq!(probe(pulse.url("/nope")), Some(1));
    let closed = format!("http://127.0.0.1:{}/healthz", common::free_port());
    assert_eq!(probe(closed), Some(1));
}

#[test]
fn otel_and_downward_api_variables_become_resource_attributes() {
    let pulse = Pulse::start_with_env(
        &[],
        &[
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=checkout,deployment.environment=test",
            ),
            ("POD_NAME", "pulse-abc"),
            ("POD_NAMESPACE", "monitoring"),
            ("NODE_NAME", "kind-worker"),
        ],
    );
    let http = client();
    let m = pulse.scrape();
    let info = m.find("target_info", &[]);
    assert_eq!(info.len(), 1);
    let labels = &info[0].labels;
    assert_eq!(labels["service_name"], "checkout");
    assert_eq!(labels["deployment_environment"], "test");
    assert_eq!(labels["k8s_pod_name"], "pulse-abc");
    assert_eq!(labels["k8s_namespace_name"], "monitoring");
    assert_eq!(labels["k8s_node_name"], "kind-worker");
    let root: serde_json::Value = http.get(pulse.url("/")).send().unwrap().json().unwrap();
    assert_eq!(root["name"], "checkout");
    assert_eq!(root["pod"], "pulse-abc");
    assert_eq!(root["namespace"], "monitoring");
    assert_eq!(root["node"], "kind-worker");
}

#[test]
fn put_admin_runtime_changes_the_running_process() {
    let pulse = Pulse::start(&["--log-format", "json"]);
    let http = client();
    let put = |body: &str| {
        http.put(pulse.url("/admin/runtime"))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .unwrap()
    };

    assert_eq!(
        http.get(pulse.url("/api/users")).send().unwrap().status(),
        200
    );
    let applied = put(r#"{"fault_error_rate": 1}"#);
    assert_eq!(applied.status(), 200);
    let settings: serde_json::Value = applied.json().unwrap();
    assert_eq!(settings["fault_error_rate"], 1.0);
    for _ in 0..3 {
        assert_eq!(
            http.get(pulse.url("/api/users")).send().unwrap().status(),
            500
        );
    }
    let m = pulse.scrape();
    assert_eq!(
        m.value("api_errors_total", &[("error_type", "injected")]),
        3.0
    );
    assert_eq!(
        m.value("pulse_runtime_settings", &[("setting", "fault_error_rate")]),
        1.0
    );
    assert_eq!(
        m.value("pulse_config_reloads_total", &[("result", "applied")]),
        1.0
    );

    // All or nothing: a bad field rejects the whole change.
    let rejected = put(r#"{"fault_error_rate": 0, "fault_delay_max": "forever"}"#);
    assert_eq!(rejected.status(), 400);
    assert!(rejected.text().unwrap().contains("previous settings kept"));
    assert_eq!(
        http.get(pulse.url("/api/users")).send().unwrap().status(),
        500
    );
    assert_eq!(
        pulse
            .scrape()
            .value("pulse_config_reloads_total", &[("result", "rejected")]),
        1.0
    );

    // Forced unreadiness, shown in / as well.
    put(r#"{"fault_error_rate": 0, "force_unready": true}"#);
    let ready = http.get(pulse.url("/readyz")).send().unwrap();
    assert_eq!(ready.status(), 503);
    assert!(ready.text().unwrap().contains("forced unready"));
    let root: serde_json::Value = http.get(pulse.url("/")).send().unwrap().json().unwrap();
    assert_eq!(root["runtime"]["force_unready"], true);
    assert_eq!(
        http.get(pulse.url("/api/users")).send().unwrap().status(),
        200
    );

    // The log filter: at warn, request lines (info) stop. Lines are written in the
    // background, so look for the request made after the change, not at line counts.
    put(r#"{"log_level": "warn", "force_unready": false}"#);
    http.get(pulse.url("/version")).send().unwrap();
    thread::sleep(Duration::from_millis(300));
    let lines = pulse.lines().join("\n");
    assert!(
        lines.contains(r#""route":"/admin/runtime""#),
        "info lines before the change"
    );
    assert!(!lines.contains(r#""route":"/version""#), "{lines}");

    // And back up past the start-up level: probes are logged at debug, so a callsite
    // the earlier filters turned off must be asked again (telemetry/swap_filter.rs).
    put(r#"{"log_level": "debug"}"#);
    http.get(pulse.url("/healthz")).send().unwrap();
    thread::sleep(Duration::from_millis(300));
    let lines = pulse.lines().join("\n");
    assert!(
        lines.contains(r#""route":"/healthz""#) && lines.contains(r#""level":"DEBUG""#),
        "{lines}"
    );
}

#[test]
fn kube_on_without_a_reachable_api_serves_stays_ready_and_counts_errors() {
    let dir = tempfile::tempdir().unwrap();
    let closed = common::free_port();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: lab\n\
             clusters: [{{name: lab, cluster: {{server: 'https://127.0.0.1:{closed}', insecure-skip-tls-verify: true}}}}]\n\
             users: [{{name: lab, user: {{token: t}}}}]\n\
             contexts: [{{name: lab, context: {{cluster: lab, user: lab, namespace: default}}}}]\n"
        ),
    )
    .unwrap();
    let pulse = Pulse::start_with_env(
        &["--kube", "on"],
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("POD_NAME", "pulse-test"),
            ("POD_NAMESPACE", "default"),
        ],
    );
    let http = client();
    // Give the watcher and the publisher time to fail and retry.
    let counted = eventually(Duration::from_secs(10), || {
        let m = pulse.scrape();
        m.value("pulse_kube_errors_total", &[("operation", "watch")]) >= 2.0
            && m.value("pulse_kube_errors_total", &[("operation", "event")]) >= 1.0
    });
    assert!(counted.is_some(), "errors not counted: {:?}", pulse.lines());
    assert_eq!(
        http.get(pulse.url("/readyz")).send().unwrap().status(),
        200,
        "stays ready"
    );
    assert_eq!(
        http.get(pulse.url("/api/users")).send().unwrap().status(),
        200,
        "keeps serving"
    );
    let warnings = pulse
        .lines()
        .iter()
        .filter(|l| {
            l.contains("Kubernetes API call failed; serving on")
                && l.contains(r#""operation":"watch""#)
        })
        .count();
    assert_eq!(warnings, 1, "logged once, however often it is retried");
}

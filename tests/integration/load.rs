//! `pulse load` against a real `pulse serve`: rate accuracy, status accounting
//! (cross-checked with the server's own counters), exit codes, JSON schema.

use crate::common;

use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::thread;
use std::time::Duration;

use common::Pulse;
use serde_json::Value;

fn load(pulse: &Pulse, args: &[&str]) -> (Option<i32>, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args(["load", "--target", &pulse.url(""), "--output", "json"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), summary)
}

#[test]
fn holds_200_requests_per_second_within_5_percent() {
    let pulse = Pulse::start(&["--log-level", "warn"]);
    let (code, s) = load(&pulse, &["--rate", "200", "--duration", "5s"]);
    assert_eq!(code, Some(0));
    let requests = s["requests"].as_f64().unwrap();
    let rate = s["achieved_rate"].as_f64().unwrap();
    assert!((950.0..=1050.0).contains(&requests), "{requests} requests");
    assert!((190.0..=210.0).contains(&rate), "{rate}/s");
    assert_eq!(s["missed_slots"], 0);
    // The server saw the same number of requests.
    let served: f64 = pulse
        .scrape()
        .find("http_requests_total", &[])
        .iter()
        .map(|x| x.value)
        .sum();
    assert_eq!(served, requests);
}

#[test]
fn status_classes_match_what_the_server_answered() {
    let pulse = Pulse::start(&["--log-level", "warn"]);
    let (_, s) = load(
        &pulse,
        &["--rate", "300", "--duration", "2s", "--mix", "default"],
    );
    let m = pulse.scrape();
    let served = |class: char| -> f64 {
        m.find("http_requests_total", &[])
            .iter()
            .filter(|x| x.labels["status"].starts_with(class))
            .map(|x| x.value)
            .sum()
    };
    assert_eq!(s["status"]["2xx"].as_f64().unwrap(), served('2'));
    assert_eq!(s["status"]["4xx"].as_f64().unwrap(), served('4'));
    assert_eq!(s["status"]["5xx"].as_f64().unwrap(), served('5'));
    assert!(
        s["status"]["4xx"].as_u64().unwrap() > 0,
        "the default mix sends some bad requests"
    );
    assert_eq!(s["status"]["failed"], 0);
}

#[test]
fn exits_1_when_the_error_rate_exceeds_the_maximum() {
    let failing = Pulse::start(&["--log-level", "warn", "--fault-error-rate", "1"]);
    let (code, s) = load(
        &failing,
        &[
            "--rate",
            "100",
            "--duration",
            "1s",
            "--mix",
            "users",
            "--max-error-rate",
            "0.5",
        ],
    );
    assert_eq!(code, Some(1));
    assert_eq!(s["error_rate"], 1.0);
    assert_eq!(s["passed"], false);
    assert_eq!(s["status"]["5xx"], s["requests"]);

    let healthy = Pulse::start(&["--log-level", "warn"]);
    let (code, s) = load(
        &healthy,
        &[
            "--rate",
            "100",
            "--duration",
            "1s",
            "--mix",
            "users",
            "--max-error-rate",
            "0",
        ],
    );
    assert_eq!((code, s["passed"].clone()), (Some(0), Value::Bool(true)));
    assert_eq!(s["status"]["2xx"], s["requests"]);
}

/// `pulse load` against `target` with these arguments: (exit code, stdout).
fn load_at(target: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args(["load", "--target", target])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A loopback port nothing listens on, held for as long as the socket lives: bound
/// but not listening, so connecting is refused and no other test's server takes it
/// (a port merely found free may be taken by a server started meanwhile).
fn refused_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

#[test]
fn a_dead_target_exits_3_and_says_the_connections_were_refused() {
    let (_held, port) = refused_port();
    let closed = format!("http://127.0.0.1:{port}");
    // With or without --max-error-rate: nothing answered is a failed run either way.
    for max in [None, Some("0.1")] {
        let mut args = vec!["--rate", "50", "--duration", "1s", "--output", "json"];
        args.extend(max.iter().flat_map(|m| ["--max-error-rate", m]));
        let (code, stdout) = load_at(&closed, &args);
        let s: Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(code, Some(3), "{s}");
        assert_eq!(s["status"]["failed"], s["requests"]);
        assert!(s["requests"].as_u64().unwrap() >= 45);
        assert_eq!(s["failures"]["connection_refused"], s["requests"], "{s}");
        assert_eq!(
            (s["outcome"].as_str(), s["passed"].as_bool()),
            (Some("no_answer"), Some(false))
        );
        let first = s["first_failure"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        assert!(first.contains("connection refused"), "{first}");
    }
    let (code, text) = load_at(&closed, &["--rate", "20", "--duration", "500ms"]);
    assert_eq!(code, Some(3));
    let failures = text
        .lines()
        .find(|l| l.starts_with("failures"))
        .unwrap_or_default();
    assert!(
        failures.starts_with("failures  connection refused "),
        "the summary names the cause: {text}"
    );
    assert!(text.contains("no request was answered"), "{text}");
}

/// A TCP server on a free port that treats each connection with `handle`, in a
/// thread per connection, for as long as the test process lives.
fn misbehaving(handle: fn(TcpStream)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || handle(stream));
        }
    });
    format!("http://{addr}")
}

#[test]
fn failures_are_counted_by_cause() {
    // Accepted, never answered.
    let silent = misbehaving(|stream| {
        thread::sleep(Duration::from_secs(5));
        drop(stream);
    });
    // Closed with the request unread: the kernel answers with a reset.
    let reset = misbehaving(|stream| {
        let _ = stream.peek(&mut [0u8; 1]);
        drop(stream);
    });
    // The request read whole, then closed without an answer.
    let closed = misbehaving(|mut stream| {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        drop(stream);
    });
    for (target, cause) in [
        (silent, "timeout"),
        (reset, "connection_reset"),
        (closed, "connection_closed"),
    ] {
        let (code, stdout) = load_at(
            &target,
            &[
                "--rate",
                "20",
                "--duration",
                "500ms",
                "--mix",
                "users",
                "--timeout",
                "300ms",
                "--output",
                "json",
            ],
        );
        let s: Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(code, Some(3), "{cause}: {s}");
        assert!(s["requests"].as_u64().unwrap() >= 5, "{s}");
        assert_eq!(
            s["failures"][cause], s["requests"],
            "every failure a {cause}: {s}"
        );
    }
}

#[test]
fn json_output_has_the_documented_schema() {
    let pulse = Pulse::start(&["--log-level", "warn"]);
    let (_, s) = load(
        &pulse,
        &[
            "--rate",
            "50",
            "--duration",
            "1s",
            "--max-error-rate",
            "0.2",
        ],
    );
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&s),
        [
            "achieved_rate",
            "duration_seconds",
            "error_rate",
            "failures",
            "first_failure",
            "latency_ms",
            "max_error_rate",
            "missed_slots",
            "outcome",
            "passed",
            "requests",
            "status",
            "target_rate"
        ]
    );
    assert_eq!(
        keys(&s["status"]),
        ["1xx", "2xx", "3xx", "4xx", "5xx", "failed"]
    );
    assert_eq!(keys(&s["latency_ms"]), ["max", "p50", "p90", "p99"]);
    assert_eq!(
        keys(&s["failures"]),
        [
            "connect",
            "connection_closed",
            "connection_refused",
            "connection_reset",
            "other",
            "timeout"
        ]
    );
    assert_eq!(s["first_failure"], Value::Null, "nothing failed");
    assert_eq!(s["outcome"], "passed");
    for number in [
        "achieved_rate",
        "duration_seconds",
        "error_rate",
        "max_error_rate",
        "target_rate",
    ] {
        assert!(s[number].is_f64(), "{number}");
    }
    for count in ["requests", "missed_slots"] {
        assert!(s[count].is_u64(), "{count}");
    }
    assert!(s["passed"].is_boolean());
    let l = &s["latency_ms"];
    assert!(l["p50"].as_f64() <= l["p90"].as_f64() && l["p90"].as_f64() <= l["p99"].as_f64());
}

#[test]
fn bad_arguments_exit_2_naming_the_flag() {
    for (args, flag) in [
        (vec!["--target", "nope"], "--target"),
        (vec!["--target", "http://x", "--rate", "-5"], "--rate"),
        (
            vec!["--target", "http://x", "--duration", "soon"],
            "--duration",
        ),
        (
            vec!["--target", "http://x", "--max-error-rate", "2"],
            "--max-error-rate",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_pulse"))
            .arg("load")
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .unwrap_or("")
                .contains(flag)
        );
    }
}

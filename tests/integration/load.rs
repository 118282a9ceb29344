//! `pulse load` against a real `pulse serve`: rate accuracy, status accounting
//! (cross-checked with the server's own counters), exit codes, JSON schema.

use crate::common;

use std::process::Command;

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

#[test]
fn an_unreachable_target_counts_failures() {
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    let out = Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args([
            "load",
            "--target",
            &closed,
            "--rate",
            "50",
            "--duration",
            "1s",
            "--output",
            "json",
            "--max-error-rate",
            "0.1",
        ])
        .output()
        .unwrap();
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(s["status"]["failed"], s["requests"]);
    assert!(s["requests"].as_u64().unwrap() >= 45);
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
            "latency_ms",
            "max_error_rate",
            "missed_slots",
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

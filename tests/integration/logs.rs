//! The JSON log as shipped: written off the request path, one whole line per
//! event, none lost at a graceful shutdown, and a stalled stdout never stalls a
//! request. Plus the standard sampler variables.

use crate::common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Exposition, Pulse, client, free_port};

fn access_lines(pulse: &Pulse, route: &str) -> usize {
    pulse
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"] == "request" && l["route"] == route)
        .count()
}

#[test]
fn every_request_leaves_exactly_one_access_line_even_right_before_sigterm() {
    let mut pulse = Pulse::start(&["--shutdown-delay", "0s"]);
    let http = client();
    const N: usize = 500;
    for _ in 0..N {
        assert!(
            http.get(pulse.url("/api/users"))
                .send()
                .unwrap()
                .status()
                .is_success()
        );
    }
    // No pause: the queue may still hold lines when the signal arrives.
    pulse.terminate();
    // The reader threads drain the pipe after exit.
    thread::sleep(Duration::from_millis(300));
    assert_eq!(access_lines(&pulse, "/api/users"), N);
}

#[test]
fn every_line_is_one_json_object_under_64_concurrent_clients() {
    let pulse = Arc::new(Pulse::start(&[]));
    let workers: Vec<_> = (0..64)
        .map(|i| {
            let pulse = pulse.clone();
            thread::spawn(move || {
                let http = client();
                for j in 0..20 {
                    // Names with quotes, backslashes and non-ASCII land in the log escaped.
                    let name = format!("n\"{i}\\{j} é");
                    let body =
                        serde_json::json!({"name": name, "email": format!("u{i}.{j}@example.com")});
                    http.post(pulse.url("/api/users"))
                        .json(&body)
                        .send()
                        .unwrap();
                    http.get(pulse.url(&format!("/no/such/{i}?q=\"{j}\"")))
                        .send()
                        .unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    thread::sleep(Duration::from_millis(300));
    let lines = pulse.lines();
    let mut requests = 0;
    for line in &lines {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"));
        if value["message"] == "request" {
            requests += 1;
            assert_eq!(value["trace_id"].as_str().map(str::len), Some(32), "{line}");
            assert_eq!(value["span_id"].as_str().map(str::len), Some(16), "{line}");
        }
    }
    assert_eq!(requests, 64 * 20 * 2, "one access line per request");
    // A line written by a handler carries the request's ids at the top level too.
    let created = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "user created")
        .expect("a handler's line");
    assert_eq!(created["trace_id"].as_str().map(str::len), Some(32));
}

#[test]
fn a_stalled_stdout_does_not_stall_requests_and_dropped_lines_are_counted() {
    let port = free_port();
    // stdout is a pipe nobody reads: once its buffer and the queue are full, the
    // writer thread blocks for good.
    let mut child = Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args(["--addr", &format!("127.0.0.1:{port}"), "--kube", "off"])
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let warnings = thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !http
        .get(format!("{base}/readyz"))
        .send()
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "not ready");
        thread::sleep(Duration::from_millis(20));
    }
    let slowest = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (base, slowest) = (base.clone(), slowest.clone());
            thread::spawn(move || {
                let http = client();
                for _ in 0..2_000 {
                    let started = Instant::now();
                    assert!(
                        http.get(format!("{base}/api/users"))
                            .send()
                            .unwrap()
                            .status()
                            .is_success()
                    );
                    slowest.fetch_max(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let slowest = Duration::from_micros(slowest.load(Ordering::Relaxed));
    assert!(
        slowest < Duration::from_secs(1),
        "a request took {slowest:?}"
    );
    thread::sleep(Duration::from_millis(1_500));
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let dropped = Exposition::parse(&text).value("pulse_log_lines_dropped_total", &[]);
    assert!(
        dropped > 0.0,
        "16,000 lines cannot all fit: {dropped} dropped"
    );
    let _ = child.kill();
    let _ = child.wait();
    let stderr = warnings.join().unwrap();
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("log lines are being dropped")),
        "reported once on stderr: {stderr:?}"
    );
}

/// The `duration_ms` values of the access lines, as written (text or JSON).
fn written_durations(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.contains("request"))
        .filter_map(|l| {
            let at = l.find("duration_ms")? + "duration_ms".len();
            // `duration_ms=1.065` in text, `"duration_ms":1.065` in JSON.
            let value = l[at..].trim_start_matches(['"', '=', ':']);
            let end = value
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(value.len());
            Some(value[..end].to_owned())
        })
        .collect()
}

#[test]
fn durations_are_written_to_the_microsecond_in_text_and_json_logs() {
    for format in ["text", "json"] {
        let pulse = Pulse::start_with_env(&[], &[("PULSE_LOG_FORMAT", format)]);
        let http = client();
        for path in ["/api/users", "/status/201", "/delay/0.01"] {
            assert!(
                http.get(pulse.url(path))
                    .send()
                    .unwrap()
                    .status()
                    .is_success()
            );
        }
        thread::sleep(Duration::from_millis(300));
        let durations = written_durations(&pulse.lines());
        assert!(durations.len() >= 3, "{format}: {:?}", pulse.lines());
        for written in &durations {
            let decimals = written.split_once('.').map_or(0, |(_, d)| d.len());
            assert!(
                decimals <= 3 && written.parse::<f64>().is_ok(),
                "{format}: duration_ms={written}, expected milliseconds with at most 3 decimals"
            );
        }
        assert!(
            durations
                .iter()
                .any(|d| d.parse::<f64>().unwrap_or(0.0) >= 10.0),
            "{format}: /delay/0.01 took 10 ms or more: {durations:?}"
        );
    }
}

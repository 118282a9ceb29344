//! `GET /api/backend` across two real Pulse processes: one trace spanning both
//! (decoded from OTLP as a collector reads it), the HTTP client metrics, and the
//! answers when the backend is down, slow or points back at its caller.

use crate::common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::otlp::{self, attribute, hex, string};
use common::{Pulse, client, free_port};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::{Value as Json, json};

fn int(span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str) -> Option<i64> {
    match attribute(span, key) {
        Some(Value::IntValue(v)) => Some(*v),
        _ => None,
    }
}

fn trace_id(traceparent: &str) -> String {
    traceparent.split('-').nth(1).unwrap_or_default().to_owned()
}

#[test]
fn one_trace_spans_the_caller_and_its_backend() {
    let (port, received) = otlp::receiver();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut backend = Pulse::start_with_env(
        &["--shutdown-delay", "0s"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SERVICE_NAME", "pulse-backend"),
            ("POD_NAME", "backend-0"),
        ],
    );
    let backend_url = backend.url("");
    let mut caller = Pulse::start_with_env(
        &["--shutdown-delay", "0s", "--backend-url", &backend_url],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("POD_NAME", "caller-0"),
        ],
    );

    let reply = client().get(caller.url("/api/backend")).send().unwrap();
    assert_eq!(reply.status(), 200);
    let trace = trace_id(reply.headers()["traceparent"].to_str().unwrap());
    let body: Json = reply.json().unwrap();
    assert_eq!(
        body,
        json!({"service": "pulse", "pod": "caller-0", "hop": 0, "backend":
            {"service": "pulse-backend", "pod": "backend-0", "hop": 1, "backend": null}})
    );

    let backend_port = backend.port.to_string();
    let calls = caller.scrape();
    let call = [
        ("http_request_method", "GET"),
        ("server_address", "127.0.0.1"),
        ("server_port", backend_port.as_str()),
        ("http_response_status_code", "200"),
    ];
    assert_eq!(
        calls.value("http_client_request_duration_seconds_count", &call),
        1.0
    );

    caller.terminate();
    backend.terminate();
    std::thread::sleep(Duration::from_millis(200));
    let spans: Vec<_> = otlp::spans(&received)
        .into_iter()
        .filter(|s| hex(&s.trace_id) == trace)
        .collect();
    let kind = |s: &opentelemetry_proto::tonic::trace::v1::Span| s.kind;
    let servers: Vec<_> = spans
        .iter()
        .filter(|s| kind(s) == SpanKind::Server as i32)
        .collect();
    let clients: Vec<_> = spans
        .iter()
        .filter(|s| kind(s) == SpanKind::Client as i32)
        .collect();
    assert_eq!(
        (servers.len(), clients.len(), spans.len()),
        (2, 1, 3),
        "{spans:?}"
    );
    let root = *servers
        .iter()
        .find(|s| s.parent_span_id.is_empty())
        .expect("a root span");
    let downstream = *servers
        .iter()
        .find(|s| !s.parent_span_id.is_empty())
        .expect("the backend's span");
    let call = clients[0];
    assert_eq!(root.name, "GET /api/backend");
    assert_eq!(
        call.parent_span_id, root.span_id,
        "the call is a child of the caller's server span"
    );
    assert_eq!(
        downstream.parent_span_id, call.span_id,
        "the backend's server span is a child of the call"
    );
    assert_eq!(downstream.name, "GET /api/backend");
    assert_eq!(call.name, "GET");
    assert_eq!(string(call, "http.request.method"), Some("GET"));
    assert_eq!(string(call, "server.address"), Some("127.0.0.1"));
    assert_eq!(int(call, "server.port"), Some(i64::from(backend.port)));
    assert_eq!(
        string(call, "url.full"),
        Some(format!("{backend_url}/api/backend").as_str())
    );
    assert_eq!(int(call, "http.response.status_code"), Some(200));
    assert!(call.start_time_unix_nano >= root.start_time_unix_nano);
    assert!(call.end_time_unix_nano <= root.end_time_unix_nano);

    // The backend's log line for that request carries the caller's trace id.
    let lines: Vec<Json> = backend
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["route"] == "/api/backend" && l["trace_id"] == trace.as_str()),
        "no access line of the backend with trace_id {trace}"
    );
}

/// One failed call: its status, body, `Retry-After`, the counted error type and
/// the client metric's `error.type`, and how long it took.
fn failed_call(caller: &Pulse) -> (u16, Json, Option<String>, Duration) {
    let started = Instant::now();
    let reply = client().get(caller.url("/api/backend")).send().unwrap();
    let took = started.elapsed();
    let status = reply.status().as_u16();
    let retry = reply
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, reply.json().unwrap(), retry, took)
}

#[test]
fn an_unreachable_backend_is_a_502_and_a_silent_one_a_504_within_the_timeout() {
    let closed = free_port(); // nothing listens there
    let caller = Pulse::start(&["--backend-url", &format!("http://127.0.0.1:{closed}")]);
    let (status, body, retry, _) = failed_call(&caller);
    assert_eq!(status, 502);
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("could not be reached"), "{body}");
    // The client learns what failed, not where the backend is or what the OS said.
    for internal in ["127.0.0.1", &closed.to_string(), "os error", "refused"] {
        assert!(!error.contains(internal), "{internal:?} in {body}");
    }
    assert_eq!(retry.as_deref(), Some("1"));
    // The operator does: the log line of the failure has both.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        caller
            .lines()
            .iter()
            .any(|l| l.contains("backend call failed")
                && l.contains(&format!("127.0.0.1:{closed}"))
                && l.contains("refused")),
        "{:?}",
        caller.lines()
    );
    let metrics = caller.scrape();
    assert_eq!(
        metrics.value("api_errors_total", &[("error_type", "backend")]),
        1.0
    );
    assert_eq!(
        metrics.value(
            "http_client_request_duration_seconds_count",
            &[("error_type", "connect")]
        ),
        1.0
    );

    // Accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let caller = Pulse::start(&["--backend-url", &silent_url, "--backend-timeout", "300ms"]);
    let (status, body, retry, took) = failed_call(&caller);
    assert_eq!(status, 504);
    assert!(body["error"].as_str().unwrap().contains("300ms"), "{body}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let metrics = caller.scrape();
    assert_eq!(
        metrics.value("api_errors_total", &[("error_type", "backend_timeout")]),
        1.0
    );
    assert_eq!(
        metrics.value(
            "http_client_request_duration_seconds_count",
            &[("error_type", "timeout")]
        ),
        1.0
    );
    drop(silent);
}

#[test]
fn a_backend_url_pointing_back_at_the_caller_ends_in_508_not_recursion() {
    let port = free_port();
    let own_url = format!("http://127.0.0.1:{port}");
    let pulse = Pulse::start_on(
        port,
        &["--backend-url", &own_url, "--backend-max-hops", "3"],
        &[],
    );
    let (status, body, _, _) = failed_call(&pulse);
    assert_eq!(status, 508);
    assert!(body["error"].as_str().unwrap().contains("3 hops"), "{body}");
    // Hops 0, 1 and 2 call on and hop 3 is refused: four requests in this one
    // process, each answered 508 (the refusal travels back up) and counted.
    let metrics = pulse.scrape();
    assert_eq!(
        metrics.value("api_errors_total", &[("error_type", "hop_limit")]),
        4.0
    );
    assert_eq!(
        metrics.value(
            "http_client_request_duration_seconds_count",
            &[("http_response_status_code", "508")]
        ),
        3.0
    );

    // The hop header's range, as the OpenAPI document states it.
    let doc: Json = client()
        .get(pulse.url("/openapi.json"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let hop = &doc["paths"]["/api/backend"]["get"]["parameters"][0]["schema"];
    assert_eq!(hop["maximum"], pulse::config::rules::MAX_HOPS);
    for bad in ["many", "-1", "33"] {
        let reply = client()
            .get(pulse.url("/api/backend"))
            .header("x-pulse-hop", bad)
            .send()
            .unwrap();
        assert_eq!(reply.status(), 400, "x-pulse-hop: {bad}");
        let body: Json = reply.json().unwrap();
        assert_eq!(body["field"], "x-pulse-hop");
    }
}

#[test]
fn without_a_backend_the_route_answers_as_the_end_of_the_chain() {
    let pulse = Pulse::start_with_env(&[], &[("POD_NAME", "solo-0")]);
    let body: Json = client()
        .get(pulse.url("/api/backend"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        body,
        json!({"service": "pulse", "pod": "solo-0", "hop": 0, "backend": null})
    );
    assert_eq!(
        pulse
            .scrape()
            .find("http_client_request_duration_seconds_count", &[])
            .len(),
        0
    );
}

#[test]
fn backend_urls_that_are_not_plain_http_are_refused_at_start() {
    for (url, says) in [
        ("https://backend:8443", "https is not supported"),
        ("backend:8080", "must be http://"),
        ("http://", "not a URL"),
        ("http://backend:8080/?x=1", "must be http://"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pulse"))
            .args(["serve", "--backend-url", url])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{url}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--backend-url") && stderr.contains(says),
            "{url}: {stderr}"
        );
    }
}

/// A backend that answers every request 200 with `body`.
fn answering(body: Vec<u8>) -> String {
    use std::io::{BufRead as _, BufReader, Write as _};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let body = body.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                let stream = reader.get_mut();
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            });
        }
    });
    url
}

#[test]
fn a_backend_answer_that_is_not_json_or_too_large_is_a_502() {
    for (body, says) in [
        (b"<html>not pulse</html>".to_vec(), "unusable"),
        (vec![b' '; 2 * 1024 * 1024], "larger than"),
    ] {
        let caller = Pulse::start(&["--backend-url", &answering(body)]);
        let (status, answer, _, _) = failed_call(&caller);
        assert_eq!(status, 502);
        assert!(answer["error"].as_str().unwrap().contains(says), "{answer}");
    }
}

/// A fake backend on a loopback port: for each connection, reads the request
/// head and lets `answer` write whatever it wants; returns its URL.
fn fake_backend(answer: impl Fn(&mut std::net::TcpStream) + Send + Sync + 'static) -> String {
    use std::io::Read as _;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let answer = std::sync::Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                answer(&mut stream);
            });
        }
    });
    url
}

#[test]
fn a_redirecting_backend_is_a_502_that_says_so_and_is_not_followed() {
    use std::io::{Read as _, Write as _};
    // Where the redirect points: it must never be called (nor get a traceparent).
    let elsewhere = TcpListener::bind("127.0.0.1:0").unwrap();
    let location = format!("http://{}/api/backend", elsewhere.local_addr().unwrap());
    elsewhere.set_nonblocking(true).unwrap();
    let backend = fake_backend(move |stream| {
        let answer =
            format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n");
        let _ = stream.write_all(answer.as_bytes());
    });
    let caller = Pulse::start(&["--backend-url", &backend]);
    let (status, body, retry, _) = failed_call(&caller);
    assert_eq!(status, 502, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("302") && error.contains("redirect"),
        "{body}"
    );
    assert_eq!(retry.as_deref(), Some("1"));
    std::thread::sleep(Duration::from_millis(300));
    match elsewhere.accept() {
        Ok((mut followed, _)) => {
            let mut request = vec![0u8; 4096];
            let n = followed.read(&mut request).unwrap_or(0);
            panic!(
                "the redirect was followed: {}",
                String::from_utf8_lossy(&request[..n])
            );
        }
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
    }
    let metrics = caller.scrape();
    assert_eq!(
        metrics.value(
            "http_client_request_duration_seconds_count",
            &[("http_response_status_code", "302")]
        ),
        1.0
    );
}

/// A process's resident memory and its peak since the last reset, in bytes (Linux).
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
fn a_backend_streaming_an_endless_answer_costs_at_most_a_mebibyte_per_call() {
    use std::io::Write as _;
    // Valid JSON for as long as it goes: only the bound can stop the read.
    let backend = fake_backend(|stream| {
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n[1,1,\r\n",
        );
        let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "1,".repeat(32 * 1024));
        while stream.write_all(chunk.as_bytes()).is_ok() {}
    });
    let caller = Pulse::start(&["--backend-url", &backend, "--log-level", "error"]);
    let pid = caller.pid();
    let calls = 24;
    // Let the process reach its working size (threads, connection pool) first.
    assert_eq!(failed_call(&caller).0, 502);
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset the peak (clear_refs)");
    let (before, _) = memory(pid);
    let threads: Vec<_> = (0..calls)
        .map(|_| {
            let url = caller.url("/api/backend");
            std::thread::spawn(move || {
                let reply = client().get(url).send().unwrap();
                (reply.status().as_u16(), reply.text().unwrap())
            })
        })
        .collect();
    for thread in threads {
        let (status, body) = thread.join().unwrap();
        assert_eq!(status, 502, "{body}");
        assert!(body.contains("unusable"), "{body}");
    }
    let (_, peak) = memory(pid);
    let per_call = peak.saturating_sub(before) / calls;
    eprintln!("peak {peak} B, before {before} B: {per_call} B per concurrent call");
    assert!(
        per_call <= pulse::backend::MAX_CALL_BYTES as u64,
        "{per_call} bytes per call, bound {}",
        pulse::backend::MAX_CALL_BYTES
    );
}

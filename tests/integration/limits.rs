//! The protections against overload and hostile clients, on the real binary over
//! real TCP: the concurrency limit, the header read timeout (slowloris), the
//! request timeout on a trickled body, and malformed requests. Each is visible
//! to the client (a status or a closed connection) and counted in
//! `api_errors_total{error_type}`. And `--admin-addr`, which moves the routes
//! that change the process off the port API clients reach.

use crate::common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::{Pulse, client};

fn api_errors(pulse: &Pulse, error_type: &str) -> f64 {
    pulse
        .scrape()
        .value("api_errors_total", &[("error_type", error_type)])
}

fn connect(pulse: &Pulse) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", pulse.port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream
}

/// Reads until the server closes the connection; returns what it sent and when
/// the close came. A reset counts as a close.
fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, Instant) {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (received, Instant::now()),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (received, Instant::now()),
            Err(e) => panic!("connection still open after the read timeout: {e}"),
        }
    }
}

#[test]
fn requests_beyond_max_concurrency_get_503_at_once_and_probes_still_answer() {
    let pulse = Pulse::start(&["--max-concurrency", "2"]);
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let url = pulse.url("/delay/2");
            thread::spawn(move || client().get(url).send().map(|r| r.status().as_u16()))
        })
        .collect();
    thread::sleep(Duration::from_millis(500));

    let http = client();
    let started = Instant::now();
    let shed = http.get(pulse.url("/api/users")).send().unwrap();
    assert_eq!(shed.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered at once, not queued behind the busy requests"
    );
    assert_eq!(shed.headers()["retry-after"], "1");
    let body: serde_json::Value = shed.json().unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("concurrency limit")
    );
    for probe in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            http.get(pulse.url(probe)).send().unwrap().status(),
            200,
            "{probe} is not subject to the limit"
        );
    }

    for request in busy {
        assert_eq!(
            request.join().unwrap().unwrap(),
            200,
            "admitted requests finish"
        );
    }
    assert_eq!(
        http.get(pulse.url("/api/users")).send().unwrap().status(),
        200
    );
    assert_eq!(api_errors(&pulse, "overloaded"), 1.0);
}

#[test]
fn a_slowloris_head_is_cut_off_after_the_header_read_timeout() {
    let pulse = Pulse::start(&["--header-read-timeout", "1s"]);
    let mut stream = connect(&pulse);
    let opened = Instant::now();
    // A byte every 200 ms: never idle long, never finished.
    let head = b"GET /api/users HTTP/1.1\r\nHost: pulse\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa";
    for byte in head {
        if stream.write_all(&[*byte]).is_err() {
            break;
        }
        thread::sleep(Duration::from_millis(200));
        if opened.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let (answer, closed) = read_until_closed(&mut stream);
    assert!(answer.is_empty(), "no response to an unfinished head");
    assert!(
        closed - opened < Duration::from_secs(3),
        "closed after about 1s, took {:?}",
        closed - opened
    );
    assert_eq!(api_errors(&pulse, "header_timeout"), 1.0);
}

#[test]
fn a_silent_connection_is_closed_and_counted_an_idle_keep_alive_one_is_not() {
    let pulse = Pulse::start(&["--header-read-timeout", "1s"]);
    // Opens and says nothing: an attack shape, counted.
    let mut silent = connect(&pulse);
    // One complete request, then idle on keep-alive: normal, not counted.
    let mut idle = connect(&pulse);
    idle.write_all(b"GET /api/users HTTP/1.1\r\nHost: pulse\r\n\r\n")
        .unwrap();
    let (silent_answer, _) = read_until_closed(&mut silent);
    let (idle_answer, _) = read_until_closed(&mut idle);
    assert!(silent_answer.is_empty());
    assert!(
        String::from_utf8_lossy(&idle_answer).starts_with("HTTP/1.1 200"),
        "the complete request was answered before the idle close"
    );
    assert_eq!(api_errors(&pulse, "header_timeout"), 1.0);
}

#[test]
fn a_trickled_body_gets_503_after_the_request_timeout() {
    let pulse = Pulse::start(&["--request-timeout", "1s"]);
    let mut stream = connect(&pulse);
    stream
        .write_all(
            b"POST /data HTTP/1.1\r\nHost: pulse\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"key\":",
        )
        .unwrap();
    let started = Instant::now();
    let (answer, _) = read_until_closed(&mut stream);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(api_errors(&pulse, "timeout"), 1.0);
    let items = client().get(pulse.url("/data")).send().unwrap();
    assert_eq!(
        items.text().unwrap(),
        r#"{"items":[],"count":0}"#,
        "nothing stored"
    );
}

#[test]
fn malformed_requests_get_400_from_the_parser_and_are_counted() {
    let pulse = Pulse::start(&[]);
    for garbage in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS to a plain port\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nBad Header Without Colon\r\n\r\n",
    ] {
        let mut stream = connect(&pulse);
        stream.write_all(garbage).unwrap();
        let (answer, _) = read_until_closed(&mut stream);
        assert!(
            String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 400"),
            "{answer:?}"
        );
    }
    assert_eq!(api_errors(&pulse, "malformed_request"), 2.0);
    assert_eq!(
        client().get(pulse.url("/healthz")).send().unwrap().status(),
        200
    );
}

#[test]
fn with_admin_addr_the_admin_routes_leave_the_main_port() {
    let admin_port = common::free_port();
    let admin_addr = format!("127.0.0.1:{admin_port}");
    let pulse = Pulse::start(&["--admin-addr", &admin_addr]);
    let admin = |path: &str| format!("http://{admin_addr}{path}");
    let http = client();

    // The main port, where the API clients are, cannot change the process.
    let put = http
        .put(pulse.url("/admin/runtime"))
        .json(&serde_json::json!({"force_unready": true}))
        .send()
        .unwrap();
    assert_eq!(put.status(), 404);
    assert_eq!(
        http.post(pulse.url("/readyz/disable"))
            .send()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(http.get(pulse.url("/readyz")).send().unwrap().status(), 200);

    // The admin port can, and serves nothing else.
    assert_eq!(
        http.get(admin("/admin/runtime")).send().unwrap().status(),
        200
    );
    assert_eq!(
        http.post(admin("/readyz/disable")).send().unwrap().status(),
        202
    );
    assert_eq!(http.get(pulse.url("/readyz")).send().unwrap().status(), 503);
    assert_eq!(http.get(admin("/api/users")).send().unwrap().status(), 404);
}

#[test]
fn a_full_store_refuses_writes_with_507_and_keeps_serving_reads() {
    let pulse = Pulse::start(&["--max-store-bytes", "20000"]);
    let http = client();
    let put = |key: &str| {
        let body = serde_json::json!({"key": key, "value": "x".repeat(1000)});
        http.post(pulse.url("/data")).json(&body).send().unwrap()
    };
    let mut stored = 0;
    let refused = loop {
        let response = put(&format!("k{stored}"));
        if response.status() != 201 {
            break response;
        }
        stored += 1;
        assert!(stored < 100, "the limit holds");
    };
    assert_eq!(refused.status(), 507);
    let body: serde_json::Value = refused.json().unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("--max-store-bytes")
    );
    assert!(
        (15..=20).contains(&stored),
        "about 20 kB of items fit ({stored})"
    );
    assert_eq!(
        http.get(pulse.url("/data/k0")).send().unwrap().status(),
        200
    );
    // Users share the budget: the room left (less than one item) takes a few.
    let mut users = 0;
    let user = serde_json::json!({"name": "Ann", "email": "ann@example.com"});
    while http
        .post(pulse.url("/api/users"))
        .json(&user)
        .send()
        .unwrap()
        .status()
        == 201
    {
        users += 1;
        assert!(users < 20, "one budget for users and items");
    }
    // Deleting frees room.
    assert_eq!(
        http.delete(pulse.url("/data/k0")).send().unwrap().status(),
        204
    );
    assert_eq!(put("again").status(), 201);
    let metrics = pulse.scrape();
    assert_eq!(
        metrics.value("api_errors_total", &[("error_type", "store_full")]),
        2.0,
        "the refused item and the refused user"
    );
    assert_eq!(metrics.value("pulse_data_items", &[]), stored as f64);
}

#[test]
fn connections_past_max_connections_are_closed_at_once_and_counted() {
    let pulse = Pulse::start(&["--max-connections", "3"]);
    // Three keep-alive connections, each having had an answer, held open.
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut stream = connect(&pulse);
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: pulse\r\n\r\n")
                .unwrap();
            let mut buf = [0u8; 1024];
            let n = stream.read(&mut buf).unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            stream
        })
        .collect();
    // The fourth is accepted by the kernel, then closed by Pulse without an answer.
    for _ in 0..2 {
        let mut refused = connect(&pulse);
        let started = Instant::now();
        let _ = refused.write_all(b"GET /healthz HTTP/1.1\r\nHost: pulse\r\n\r\n");
        let (answer, closed) = read_until_closed(&mut refused);
        assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
        assert!(closed - started < Duration::from_secs(1), "closed at once");
    }
    // One closes: there is room again, and the count shows.
    drop(held.pop());
    thread::sleep(Duration::from_millis(300));
    let metrics = pulse.scrape();
    assert_eq!(metrics.value("pulse_connections_rejected_total", &[]), 2.0);
    assert_eq!(
        metrics.value("pulse_connections_open", &[]),
        3.0,
        "two held and the scrape's own"
    );
}

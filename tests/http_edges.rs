//! HTTP edge cases outside tools probe, on the real router and the real binary:
//! every rejection is a JSON error and counted, no request creates series beyond a
//! stated bound, and HTTP/1.1's rules (Host, 100-continue) and a slow reader are
//! handled as RFC 9112 and the limits table say.

mod common;

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{Pulse, TestApp};
use pulse::config::ServeArgs;
use pulse::routes::demo::served_statuses;

fn raw(pulse: &Pulse, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", pulse.port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream.write_all(request).expect("send");
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                // One response is enough: stop at the end of a JSON body.
                if reply.ends_with(b"}") {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&reply).into_owned()
}

fn errors(pulse: &Pulse, error_type: &str) -> f64 {
    pulse
        .scrape()
        .value("api_errors_total", &[("error_type", error_type)])
}

#[tokio::test]
async fn an_echo_body_over_the_limit_is_a_counted_json_413() {
    let app = TestApp::with(&ServeArgs {
        max_body_bytes: 16,
        ..ServeArgs::default()
    });
    let reply = app
        .send_with("POST", "/echo", Some("text/plain"), &[b'x'; 17])
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.headers["content-type"], "application/json");
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("--max-body-bytes")
    );
    let m = app.scrape().await;
    assert_eq!(
        m.value("api_errors_total", &[("error_type", "payload_too_large")]),
        1.0
    );
}

#[test]
fn a_broken_chunked_body_is_a_counted_json_400() {
    let pulse = Pulse::start(&[]);
    let reply = raw(
        &pulse,
        b"POST /echo HTTP/1.1\r\nHost: pulse\r\nContent-Type: text/plain\r\n\
          Transfer-Encoding: chunked\r\n\r\nzz\r\nnot a chunk\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(
        reply
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{reply}"
    );
    assert!(reply.contains(r#""error":"#), "{reply}");
    assert_eq!(errors(&pulse, "validation"), 1.0);
}

#[test]
fn http_1_1_requests_need_exactly_one_host_header() {
    let pulse = Pulse::start(&[]);
    let none = raw(&pulse, b"GET /api/users HTTP/1.1\r\n\r\n");
    assert!(none.starts_with("HTTP/1.1 400"), "no Host: {none}");
    assert!(none.contains(r#""field":"host""#), "{none}");
    let two = raw(
        &pulse,
        b"GET /api/users HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    );
    assert!(two.starts_with("HTTP/1.1 400"), "two Hosts: {two}");
    let one = raw(&pulse, b"GET /api/users HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(one.starts_with("HTTP/1.1 200"), "{one}");
    // HTTP/1.0 predates Host: none is fine.
    let old = raw(&pulse, b"GET /api/users HTTP/1.0\r\n\r\n");
    assert!(
        old.starts_with("HTTP/1.1 200") || old.starts_with("HTTP/1.0 200"),
        "{old}"
    );
    assert_eq!(errors(&pulse, "validation"), 2.0);
}

#[test]
fn an_announced_body_over_the_limit_gets_413_without_100_continue() {
    let pulse = Pulse::start(&["--max-body-bytes", "1024"]);
    let reply = raw(
        &pulse,
        b"POST /echo HTTP/1.1\r\nHost: pulse\r\nContent-Type: text/plain\r\n\
          Content-Length: 4096\r\nExpect: 100-continue\r\n\r\n",
    );
    assert!(
        !reply.contains("100 Continue"),
        "the upload was invited: {reply}"
    );
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains(r#""error":"#), "{reply}");
    // Within the limit, the client is invited to send.
    let small = raw(
        &pulse,
        b"POST /echo HTTP/1.1\r\nHost: pulse\r\nContent-Type: text/plain\r\n\
          Content-Length: 10\r\nExpect: 100-continue\r\n\r\n",
    );
    assert!(small.starts_with("HTTP/1.1 100 Continue"), "{small}");
}

#[test]
fn a_client_that_stops_reading_is_disconnected_after_the_write_timeout() {
    let pulse = Pulse::start(&["--write-timeout", "1s", "--max-body-bytes", "33554432"]);
    let port = pulse.port;
    let body_len = 16 << 20;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let received = runtime.block_on(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        // A tiny receive window, so the server's writes block soon.
        socket.set_recv_buffer_size(4096).expect("rcvbuf");
        let addr = format!("127.0.0.1:{port}").parse().expect("addr");
        let mut stream = socket.connect(addr).await.expect("connect");
        let head = format!(
            "POST /echo HTTP/1.1\r\nHost: pulse\r\nContent-Type: text/plain\r\nContent-Length: {body_len}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("head");
        stream.write_all(&vec![b'x'; body_len]).await.expect("body");
        // Read nothing for a while: the response stalls in the socket buffers.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let started = Instant::now();
        let mut received = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return received,
                Ok(Ok(n)) => received += n,
                Err(_) => panic!("the connection is still open after {:?}", started.elapsed()),
            }
        }
    });
    assert!(
        received < body_len,
        "the server gave up before the whole response ({received} of {body_len} bytes)"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(errors(&pulse, "write_timeout"), 1.0);
}

#[tokio::test]
async fn status_codes_cannot_create_series_beyond_the_stated_bound() {
    let app = TestApp::new();
    let methods = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH", "BREW", "CONNECT",
    ];
    for method in methods {
        for code in 100..=599 {
            app.send(method, &format!("/status/{code}"), None).await;
        }
    }
    let m = app.scrape().await;
    let route = [("route", "/status/{code}")];
    let series: BTreeSet<(String, String)> = m
        .find("http_requests_total", &route)
        .iter()
        .map(|s| (s.labels["method"].clone(), s.labels["status"].clone()))
        .collect();
    // GET (with HEAD) and POST answer each served status or 400; every other
    // method gets 405: (served + 1) x 3 + one per other method label.
    let served = served_statuses().count();
    let bound = (served + 1) * 3 + (methods.len() - 3);
    assert!(series.len() <= bound, "{} series > {bound}", series.len());
    assert_eq!(served, 58, "the docs state 58 served statuses");
    let statuses: BTreeSet<&str> = series.iter().map(|(_, s)| s.as_str()).collect();
    assert!(
        !statuses.contains("299") && !statuses.contains("100"),
        "{statuses:?}"
    );
    assert!(statuses.contains("418") && statuses.contains("503"));
}

#[test]
fn http_2_prior_knowledge_is_refused_and_counted_as_the_docs_say() {
    let pulse = Pulse::start(&[]);
    let reply = raw(&pulse, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 4"),
        "Pulse speaks HTTP/1.1 only: {reply:?}"
    );
    assert_eq!(errors(&pulse, "malformed_request"), 1.0);
}

#[test]
fn an_upload_refused_with_413_is_always_answered_not_reset() {
    // The server answers before reading the body; closing at once would make the
    // kernel reset the connection under the client's feet (lingering close).
    let pulse = Pulse::start(&["--max-body-bytes", "65536"]);
    let http = common::client();
    let mut refused = 0;
    for i in 0..200 {
        let reply = http
            .post(pulse.url("/data"))
            .header("content-type", "application/json")
            .body(vec![b' '; 65_536 + 1 + i * 1024])
            .send();
        match reply {
            Ok(r) if r.status() == 413 => refused += 1,
            other => panic!("upload {i}: {other:?}"),
        }
    }
    assert_eq!(refused, 200);
}

//! HTTP edge cases outside tools probe, on the real router and the real binary:
//! every rejection is a JSON error and counted, no request creates series beyond a
//! stated bound, and HTTP/1.1's rules (Host, 100-continue) and a slow reader are
//! handled as RFC 9112 and the limits table say.

use crate::common;

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

/// Sends one raw request on `stream` and reads one answer (with a
/// Content-Length, or none: no body). Returns (status, head in lower case, body).
fn exchange(stream: &mut TcpStream, request: &[u8]) -> std::io::Result<(u16, String, Vec<u8>)> {
    stream.write_all(request)?;
    let mut data = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut buf)? {
            0 => {
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "closed before an answer",
                ));
            }
            n => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = data[head_end..].to_vec();
    while body.len() < length {
        match stream.read(&mut buf)? {
            0 => {
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "closed in an answer",
                ));
            }
            n => body.extend_from_slice(&buf[..n]),
        }
    }
    body.truncate(length);
    Ok((status, head, body))
}

fn connect(pulse: &Pulse) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", pulse.port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream
}

#[test]
fn a_body_that_arrives_after_an_early_answer_keeps_the_connection() {
    // The answer (404, 405, a GET route that ignores bodies) is written before
    // the body arrives; the connection must still carry the next request.
    let pulse = Pulse::start(&[]);
    for (method, path, status) in [
        ("POST", "/no/such/route", 404),
        ("POST", "/healthz", 405),
        ("GET", "/api/users", 200),
        ("GET", "/update?users=2", 200),
    ] {
        let mut answered = 0;
        for _ in 0..30 {
            let mut stream = connect(&pulse);
            let head = format!(
                "{method} {path} HTTP/1.1\r\nHost: pulse\r\nContent-Type: text/plain\r\nContent-Length: 300\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            let (first, head, _) = exchange(&mut stream, &[b'x'; 300]).unwrap();
            assert_eq!(first, status, "{method} {path}");
            assert!(!head.contains("connection: close"), "{head}");
            if let Ok((200, _, body)) =
                exchange(&mut stream, b"GET /healthz HTTP/1.1\r\nHost: pulse\r\n\r\n")
                && body == br#"{"status":"ok"}"#
            {
                answered += 1;
            }
        }
        assert_eq!(answered, 30, "{method} {path}: next requests answered");
    }
}

#[test]
fn an_early_answer_says_connection_close_when_the_rest_is_not_read() {
    // Bodies up to 8 MiB accepted: a 5 MB one is in bounds, and left unread by a 404.
    let pulse = Pulse::start(&["--max-body-bytes", "8388608"]);
    // Larger than what is read to keep a connection, or of unknown length, or a
    // body the client may never send (it waits for a 100 Continue): the answer
    // says the connection ends, and the client is not reset under its upload.
    let cases: [&[u8]; 3] = [
        b"POST /no/such/route HTTP/1.1\r\nHost: pulse\r\nContent-Length: 5000000\r\n\r\n",
        b"POST /no/such/route HTTP/1.1\r\nHost: pulse\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST /no/such/route HTTP/1.1\r\nHost: pulse\r\nContent-Length: 300\r\nExpect: 100-continue\r\n\r\n",
    ];
    for request in cases {
        let mut stream = connect(&pulse);
        let (status, head, _) = exchange(&mut stream, request).unwrap();
        assert_eq!(status, 404);
        assert!(
            head.contains("connection: close"),
            "{}: {head}",
            String::from_utf8_lossy(request)
        );
        assert!(!head.contains("100 continue"), "{head}");
    }
}

#[test]
fn a_hyper_client_gets_the_413_of_every_oversized_upload() {
    use http_body_util::{BodyExt as _, Full};
    let pulse = Pulse::start(&["--log-level", "warn"]);
    let port = pulse.port;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let failed = runtime.block_on(async move {
        let mut failed = Vec::new();
        for size in [(1 << 20) + 1, 2 << 20, 8 << 20] {
            let body = axum::body::Bytes::from(vec![b'x'; size]);
            for i in 0..50 {
                let outcome = async {
                    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                    let (mut sender, connection) =
                        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                            .await
                            .map_err(std::io::Error::other)?;
                    tokio::spawn(connection);
                    let request = http::Request::post("/echo")
                        .header("host", "pulse")
                        .header("content-type", "text/plain")
                        .body(Full::new(body.clone()))
                        .map_err(std::io::Error::other)?;
                    let reply = sender
                        .send_request(request)
                        .await
                        .map_err(std::io::Error::other)?;
                    let status = reply.status().as_u16();
                    let text = reply
                        .into_body()
                        .collect()
                        .await
                        .map_err(std::io::Error::other)?
                        .to_bytes();
                    Ok::<_, std::io::Error>((status, text))
                }
                .await;
                match outcome {
                    Ok((413, text))
                        if String::from_utf8_lossy(&text).contains("--max-body-bytes") => {}
                    other => failed.push(format!("{size} #{i}: {other:?}")),
                }
            }
        }
        failed
    });
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
}

#[test]
fn a_json_array_is_refused_on_every_json_route_and_changes_nothing() {
    let pulse = Pulse::start(&[]);
    let http = common::client();
    let created = http
        .post(pulse.url("/api/users"))
        .json(&serde_json::json!({"name": "Ann", "email": "ann@example.com"}))
        .send()
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<serde_json::Value>().unwrap()["id"].clone();
    let state = || {
        ["/api/users", "/data", "/admin/runtime"].map(|path| {
            http.get(pulse.url(path))
                .send()
                .and_then(|r| r.text())
                .unwrap()
        })
    };
    let before = state();
    // Every route that takes a JSON object, given the object's fields as an array
    // (serde's derive would take it), then other non-objects.
    let routes = [
        ("POST", "/api/users".to_owned(), r#"["Arr","arr@x.y"]"#, 422),
        ("PUT", format!("/api/users/{id}"), r#"["Renamed"]"#, 422),
        ("POST", "/data".to_owned(), r#"["k2",5]"#, 422),
        (
            "PUT",
            "/admin/runtime".to_owned(),
            r#"["debug",0.5,"1s",true]"#,
            400,
        ),
    ];
    for (method, path, body, status) in &routes {
        for body in [*body, "[]", "7", r#""text""#, "null", "true"] {
            let reply = http
                .request(method.parse().unwrap(), pulse.url(path))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .unwrap();
            assert_eq!(reply.status().as_u16(), *status, "{method} {path} {body}");
            let error: serde_json::Value = reply.json().unwrap();
            assert!(
                error["error"].as_str().is_some(),
                "{method} {path} {body}: {error}"
            );
        }
    }
    assert_eq!(state(), before, "nothing changed");
    assert_eq!(errors(&pulse, "validation"), (routes.len() * 6) as f64);
}

#[test]
fn no_content_is_sent_with_204_205_or_304() {
    let pulse = Pulse::start(&[]);
    for code in [204, 205, 304] {
        let mut stream = connect(&pulse);
        let request = format!("GET /status/{code} HTTP/1.1\r\nHost: pulse\r\n\r\n");
        let (status, head, body) = exchange(&mut stream, request.as_bytes()).unwrap();
        assert_eq!(status, code);
        assert!(body.is_empty(), "{code}: {head}");
        assert!(
            head.contains("content-length: 0") || !head.contains("content-length"),
            "{code}: {head}"
        );
        // Nothing else comes before the next answer.
        let (next, _, _) =
            exchange(&mut stream, b"GET /healthz HTTP/1.1\r\nHost: pulse\r\n\r\n").unwrap();
        assert_eq!(next, 200, "{code}: the next answer follows at once");
    }
}

#[test]
fn the_request_head_limit_is_exact() {
    let pulse = Pulse::start(&[]);
    let limit = pulse::server::MAX_HEAD_BYTES;
    for (size, status) in [(limit, 200), (limit + 1, 431)] {
        let start = "GET /healthz HTTP/1.1\r\nHost: pulse\r\nX-Pad: ";
        let pad = size - start.len() - 4;
        let request = format!("{start}{}\r\n\r\n", "a".repeat(pad));
        assert_eq!(request.len(), size);
        // In one write, so a single read can take it all (hyper's own bound,
        // its read buffer, let such heads through well past the stated limit).
        let mut stream = connect(&pulse);
        let (answered, _, _) = exchange(&mut stream, request.as_bytes()).unwrap();
        assert_eq!(answered, status, "a head of {size} bytes");
    }
}

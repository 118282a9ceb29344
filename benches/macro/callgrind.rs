//! Instructions per request under callgrind: a fixed number of requests at
//! concurrency 1 on one keep-alive connection, instrumentation on only for them.

use std::path::Path;
use std::process::{Command, Stdio};

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::servers::{BenchServer, Variant};

/// The endpoints whose instructions per request are counted, in the order of
/// every `[f64; 2]` of counts.
pub const ENDPOINTS: [&str; 2] = ["/api/users", "/status/200"];

/// Instructions per request: `[variant.index()][endpoint index]`.
pub type Counts = [[f64; 2]; 4];

/// Indexes in [`ENDPOINTS`].
pub const API_USERS: usize = 0;
pub const STATUS_200: usize = 1;

/// One keep-alive HTTP/1.1 connection sending requests one at a time: the
/// fixed-count load of the instruction counts.
struct Connection {
    runtime: tokio::runtime::Runtime,
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

impl Connection {
    fn open(port: u16) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let sender = runtime.block_on(async {
            let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(connection);
            sender
        });
        Self { runtime, sender }
    }

    /// Sends `GET path` `n` times; checks every answer is a 200 and returns the last body.
    fn get(&mut self, path: &str, n: u64) -> Bytes {
        let sender = &mut self.sender;
        self.runtime.block_on(async {
            let mut body = Bytes::new();
            for _ in 0..n {
                sender.ready().await.expect("connection closed");
                let request = hyper::Request::get(path)
                    .header(hyper::header::HOST, "127.0.0.1")
                    .header(hyper::header::USER_AGENT, "pulse-bench")
                    .body(Empty::new())
                    .expect("request");
                let response = sender.send_request(request).await.expect("request failed");
                assert_eq!(response.status(), 200, "GET {path}");
                body = response
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes();
            }
            body
        })
    }
}

pub fn valgrind_installed() -> bool {
    ["valgrind", "callgrind_control"].iter().all(|tool| {
        Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    })
}

/// The total of a callgrind dump: its `summary:` line.
fn dump_total(path: &Path) -> Option<f64> {
    std::fs::read_to_string(path).ok()?.lines().find_map(|l| {
        l.strip_prefix("summary:")
            .and_then(|v| v.trim().parse::<f64>().ok())
    })
}

/// `callgrind_control ARGS PID`, which must succeed.
fn control(args: &[&str], pid: u32) {
    let out = Command::new("callgrind_control")
        .args(args)
        .arg(pid.to_string())
        .output()
        .expect("callgrind_control");
    assert!(
        out.status.success(),
        "callgrind_control {args:?} {pid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Instructions `variant` executes per request of each of the [`ENDPOINTS`], in
/// that order: under callgrind, after a warm-up, instrumentation on, `requests`
/// requests at concurrency 1 on one keep-alive connection, dump; per endpoint.
pub fn instructions_per_request(variant: Variant, bare: &Path, requests: u64) -> [f64; 2] {
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = dir.path().join("callgrind.out");
    let server = BenchServer::start(variant, bare, Some(&out), None);
    let mut connection = Connection::open(server.server.port);
    // Warm-up: the connection, the allocator, per-route state created on first use.
    for path in ENDPOINTS {
        connection.get(path, requests / 10 + 1);
    }
    let pid = server.server.pid();
    // Switched on only now, so the window holds exactly the requests below.
    control(&["-i", "on"], pid);
    let mut per_request = [0.0; 2];
    let log_before = server.stdout_lines();
    for (i, path) in ENDPOINTS.iter().enumerate() {
        connection.get(path, requests);
        // Dumping also zeroes the counters: the next endpoint starts from nothing.
        control(&["-d"], pid);
        let dump = dir.path().join(format!("callgrind.out.{}", i + 1));
        let total = dump_total(&dump).unwrap_or_else(|| panic!("no summary in {}", dump.display()));
        per_request[i] = total / requests as f64;
        eprintln!(
            "  callgrind: {:<50} {path:<12} {:>8.0} instructions per request",
            variant.label(),
            per_request[i]
        );
    }
    if variant == Variant::Defaults {
        let logged = server.stdout_lines() - log_before;
        assert!(
            logged as u64 >= 2 * requests,
            "the access log has {logged} lines for {} requests",
            2 * requests
        );
    }
    per_request
}

/// Every variant's counts, or `None` (and a note) without valgrind.
pub fn all(bare: &Path, requests: u64) -> Option<Counts> {
    if !valgrind_installed() {
        eprintln!("  valgrind or callgrind_control not found: no instruction counts");
        return None;
    }
    Some(Variant::ALL.map(|variant| instructions_per_request(variant, bare, requests)))
}

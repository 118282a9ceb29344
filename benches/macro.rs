//! Macro benchmark (`make bench`, after the criterion micro-benchmarks): the real
//! `pulse serve`, as users run it, against a bare axum baseline serving the same
//! bytes (`examples/bare_axum.rs`). Four servers:
//!
//! - bare axum: the two endpoints, no middleware, no instrumentation;
//! - Pulse at its shipped defaults (`--log-level info`, JSON access log written to
//!   stdout, here a file);
//! - Pulse `--log-level warn` (no access log; span and metrics still recorded);
//! - Pulse `--log-level warn --disable-http-telemetry` (the stack without the
//!   per-request telemetry layer).
//!
//! Pulse is seeded with the 20 users the baseline holds, and both are checked to
//! answer the same body, before anything is measured.
//!
//! Measured:
//! - instructions per request under callgrind, for `GET /api/users` and
//!   `GET /status/200`: a fixed number of requests (PULSE_BENCH_REQUESTS, default
//!   5000) at concurrency 1 on one keep-alive connection, with instrumentation
//!   switched on only for that window. Repeatable within about 1 %; the figure to
//!   trust on a shared machine. Left out when valgrind is not installed.
//! - throughput on `/api/users` at saturation (`pulse load --rate 0 --concurrency
//!   32`), in interleaved rounds whose order alternates; the median of per-round
//!   ratios against bare axum. PULSE_BENCH_ROUNDS (default 9) and
//!   PULSE_BENCH_SECONDS (default 2 per server per round) tune it.
//! - resident memory idle and after a million requests, and start to ready, of
//!   Pulse at its defaults.
//!
//! Prints one table, also written to `target/bench-report.md`.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

const PULSE: &str = env!("CARGO_BIN_EXE_pulse");
const CONCURRENCY: &str = "32";
/// Users in the benchmark's store (the same in `examples/bare_axum.rs`).
const USERS: u64 = 20;
/// The endpoints whose instructions per request are counted.
const ENDPOINTS: [&str; 2] = ["/api/users", "/status/200"];

/// The servers compared; `Bare` is the baseline of every ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Bare,
    Defaults,
    Warn,
    WarnNoTelemetry,
}

impl Variant {
    const ALL: [Self; 4] = [
        Self::Bare,
        Self::Defaults,
        Self::Warn,
        Self::WarnNoTelemetry,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Bare => "bare axum",
            Self::Defaults => "Pulse, defaults",
            Self::Warn => "Pulse `--log-level warn`",
            Self::WarnNoTelemetry => "Pulse `--log-level warn --disable-http-telemetry`",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Bare => 0,
            Self::Defaults => 1,
            Self::Warn => 2,
            Self::WarnNoTelemetry => 3,
        }
    }

    /// The program and its arguments, serving on `port`.
    fn command_line(self, port: u16, bare: &Path) -> (PathBuf, Vec<String>) {
        let addr = format!("127.0.0.1:{port}");
        if self == Self::Bare {
            return (bare.to_owned(), vec!["--addr".into(), addr]);
        }
        // What users run: no flag but the address, no Kubernetes, and no shutdown
        // delay (so that stopping a server does not hold the benchmark up).
        let mut args: Vec<String> = [
            "serve",
            "--addr",
            &addr,
            "--kube",
            "off",
            "--shutdown-delay",
            "0s",
        ]
        .map(String::from)
        .to_vec();
        if matches!(self, Self::Warn | Self::WarnNoTelemetry) {
            args.extend(["--log-level".into(), "warn".into()]);
        }
        if self == Self::WarnNoTelemetry {
            args.push("--disable-http-telemetry".into());
        }
        (PULSE.into(), args)
    }

    /// A path that answers 200 once the server serves.
    fn ready_path(self) -> &'static str {
        if self == Self::Bare {
            "/status/200"
        } else {
            "/readyz"
        }
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

/// Where Cargo builds (criterion writes its results there too).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)
            }
        })
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Builds `examples/bare_axum.rs` with the profile the benchmark itself was built
/// with (`bench` inherits `release`) and returns the executable's path.
fn build_bare_axum() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    // What Cargo sets for this benchmark's process, not the user's configuration: some
    // build scripts (ring's) watch CARGO_MANIFEST_DIR, and inheriting it would rebuild
    // them here, and again at the next `cargo bench`.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "OUT_DIR",
            ]
            .contains(&name.as_str())
        {
            command.env_remove(name);
        }
    }
    let out = command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "build",
            "--release",
            "--example",
            "bare_axum",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo build --example bare_axum");
    assert!(
        out.status.success(),
        "cargo build --example bare_axum failed"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "bare_axum")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("the bare_axum executable in cargo's messages")
}

/// The `/api/users` body both servers must answer, byte for byte.
fn users_body() -> String {
    let users: Vec<String> = (1..=USERS)
        .map(|id| format!(r#"{{"id":{id},"name":"User {id}","email":"user{id}@example.com"}}"#))
        .collect();
    format!(r#"{{"users":[{}],"count":{USERS}}}"#, users.join(","))
}

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

struct Server {
    variant: Variant,
    child: Child,
    port: u16,
    ready_after: Duration,
    /// Holds the server's stdout (the access log, at the defaults) and stderr.
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts `variant`, under callgrind with instrumentation off when `callgrind`
    /// is given (the path of its output file), waits until it serves, seeds Pulse's
    /// store and checks the `/api/users` body.
    fn start(variant: Variant, bare: &Path, callgrind: Option<&Path>) -> Self {
        Self::start_on(variant, bare, callgrind, None)
    }

    /// Like [`Server::start`], with users and items in the PostgreSQL `database`
    /// names (a URL), when given.
    fn start_on(
        variant: Variant,
        bare: &Path,
        callgrind: Option<&Path>,
        database: Option<&str>,
    ) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().expect("temporary directory");
        let (program, args) = variant.command_line(port, bare);
        let mut command = match callgrind {
            Some(out) => {
                let mut command = Command::new("valgrind");
                command.args([
                    "--tool=callgrind".into(),
                    "--instr-atstart=no".into(),
                    format!("--callgrind-out-file={}", out.display()),
                    program.display().to_string(),
                ]);
                command
            }
            None => Command::new(program),
        };
        // The shipped defaults, whatever this shell exports.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            if name.starts_with("PULSE_") || name.starts_with("OTEL_") || name == "RUST_LOG" {
                command.env_remove(name);
            }
        }
        if let Some(url) = database {
            command.env("PULSE_DATABASE_URL", url);
        }
        command
            .args(args)
            .stdout(File::create(dir.path().join("stdout")).expect("stdout file"))
            .stderr(File::create(dir.path().join("stderr")).expect("stderr file"));
        let started = Instant::now();
        let child = command.spawn().expect("spawn server");
        let mut server = Self {
            variant,
            child,
            port,
            ready_after: Duration::ZERO,
            dir,
        };
        let patience = Duration::from_secs(if callgrind.is_some() { 120 } else { 10 });
        let url = format!("http://127.0.0.1:{port}{}", variant.ready_path());
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        while !client
            .get(&url)
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(
                started.elapsed() < patience,
                "{} did not become ready: {}",
                variant.label(),
                server.stderr()
            );
            std::thread::sleep(Duration::from_micros(500));
        }
        server.ready_after = started.elapsed();
        if variant != Variant::Bare {
            for id in 1..=USERS {
                let created = client
                    .post(format!("http://127.0.0.1:{port}/api/users"))
                    .json(&serde_json::json!({
                        "name": format!("User {id}"),
                        "email": format!("user{id}@example.com"),
                    }))
                    .send()
                    .expect("create user");
                assert_eq!(created.status(), 201, "create user {id}");
            }
        }
        let body = client
            .get(format!("http://127.0.0.1:{port}/api/users"))
            .send()
            .and_then(|r| r.text())
            .expect("GET /api/users");
        assert_eq!(body, users_body(), "{}: /api/users body", variant.label());
        server
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// Lines written to stdout so far (the access log, at the defaults).
    fn stdout_lines(&self) -> usize {
        std::fs::read(self.dir.path().join("stdout"))
            .map_or(0, |text| text.iter().filter(|&&b| b == b'\n').count())
    }

    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    }

    /// Saturates `/api/users` for `seconds`; returns (requests/s, p99 ms, requests).
    fn saturate(&self, seconds: u64) -> (f64, f64, u64) {
        self.saturate_with("users", seconds)
    }

    /// Saturates the server with `pulse load --mix mix` for `seconds`.
    fn saturate_with(&self, mix: &str, seconds: u64) -> (f64, f64, u64) {
        let out = Command::new(PULSE)
            .args([
                "load",
                "--target",
                &format!("http://127.0.0.1:{}", self.port),
                "--rate",
                "0",
                "--concurrency",
                CONCURRENCY,
                "--mix",
                mix,
                "--output",
                "json",
                "--duration",
                &format!("{seconds}s"),
            ])
            .output()
            .expect("pulse load");
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("load summary");
        assert_eq!(
            summary["status"]["failed"],
            0,
            "{}: requests failed: {summary}",
            self.variant.label()
        );
        (
            summary["achieved_rate"].as_f64().unwrap_or(0.0),
            summary["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
            summary["requests"].as_u64().unwrap_or(0),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn valgrind_installed() -> bool {
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

/// Instructions `variant` executes per request of each of the [`ENDPOINTS`], in
/// that order: under callgrind, after a warm-up, instrumentation on, `requests`
/// requests at concurrency 1 on one keep-alive connection, dump; per endpoint.
fn instructions_per_request(variant: Variant, bare: &Path, requests: u64) -> [f64; 2] {
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = dir.path().join("callgrind.out");
    let server = Server::start(variant, bare, Some(&out));
    let mut connection = Connection::open(server.port);
    // Warm-up: the connection, the allocator, per-route state created on first use.
    for path in ENDPOINTS {
        connection.get(path, requests / 10 + 1);
    }
    let pid = server.child.id().to_string();
    let control = |args: &[&str]| {
        let out = Command::new("callgrind_control")
            .args(args)
            .arg(&pid)
            .output()
            .expect("callgrind_control");
        assert!(
            out.status.success(),
            "callgrind_control {args:?} {pid}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // Switched on only now, so the window holds exactly the requests below.
    control(&["-i", "on"]);
    let mut per_request = [0.0; 2];
    let log_before = server.stdout_lines();
    for (i, path) in ENDPOINTS.iter().enumerate() {
        connection.get(path, requests);
        // Dumping also zeroes the counters: the next endpoint starts from nothing.
        control(&["-d"]);
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

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Mean in ns of a criterion benchmark run earlier by `make bench`, if present.
fn criterion_ns(id: &str) -> Option<f64> {
    let path = target_dir().join(format!("criterion/{id}/new/estimates.json"));
    let text = std::fs::read_to_string(path).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value["mean"]["point_estimate"].as_f64()
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**MISSED**" }
}

/// `12345` as `12,345`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < -0.5 {
        format!("−{out}")
    } else {
        out
    }
}

/// A fresh, empty database on the benchmark's PostgreSQL server (`make bench` starts
/// a private one: scripts/with-postgres.sh); its URL.
fn fresh_database(server: &str, n: usize) -> String {
    let name = format!("pulse_bench_{}_{n}", std::process::id());
    let done = Command::new("psql")
        .args([server, "-q", "-c", &format!("CREATE DATABASE {name}")])
        .output()
        .expect("psql");
    assert!(
        done.status.success(),
        "CREATE DATABASE: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    let (base, _) = server.rsplit_once('/').expect("a database URL");
    format!("{base}/{name}")
}

/// The stores compared: in memory (the default) and PostgreSQL.
const STORES: [&str; 2] = ["in memory", "PostgreSQL"];
/// The workloads: reading the 20 users, creating users.
const WORKLOADS: [(&str, &str); 2] = [
    ("users", "`GET /api/users`"),
    ("create", "`POST /api/users`"),
];

/// Pulse at its defaults on each store, interleaved rounds; per workload and store
/// the rates, p99s and (PostgreSQL only) the per-round ratios to memory.
fn compare_stores(server: &str, bare: &Path, rounds: u64, seconds: u64) -> String {
    let mut rates: [[Vec<f64>; 2]; 2] = Default::default();
    let mut p99s: [[Vec<f64>; 2]; 2] = Default::default();
    let mut ratios = [const { Vec::new() }; 2];
    let mut databases = 0;
    for round in 0..rounds {
        let mut order = [0, 1];
        if round % 2 == 1 {
            order.reverse();
        }
        let mut measured = [[0.0; 2]; 2];
        for store in order {
            let database = (store == 1).then(|| {
                databases += 1;
                fresh_database(server, databases)
            });
            let pulse = Server::start_on(Variant::Defaults, bare, None, database.as_deref());
            pulse.saturate(1); // warm-up: connections, pool, caches
            for (w, (mix, label)) in WORKLOADS.iter().enumerate() {
                let (rate, p99, _) = pulse.saturate_with(mix, seconds);
                measured[w][store] = rate;
                rates[w][store].push(rate);
                p99s[w][store].push(p99);
                eprintln!(
                    "  round {}: {:<11} {label:<20} {rate:>9.0} req/s  p99 {p99:.2} ms",
                    round + 1,
                    STORES[store]
                );
            }
        }
        for w in 0..2 {
            ratios[w].push(measured[w][1] / measured[w][0]);
        }
    }
    let mut table = format!(
        "\nThe stores, Pulse at its defaults (`pulse load --rate 0 --concurrency {CONCURRENCY}`, \
         {rounds} interleaved rounds of {seconds} s; PostgreSQL from `scripts/with-postgres.sh` on \
         this machine, fsync off, so an upper bound):\n\n"
    );
    table += "| workload | in memory req/s | p99 | PostgreSQL req/s | p99 | PostgreSQL × memory (median of per-round ratios) |\n|---|---|---|---|---|---|\n";
    for (w, (_, label)) in WORKLOADS.iter().enumerate() {
        table += &format!(
            "| {label} | {:.0} | {:.2} ms | {:.0} | {:.2} ms | {:.2} |\n",
            median(rates[w][0].clone()),
            median(p99s[w][0].clone()),
            median(rates[w][1].clone()),
            median(p99s[w][1].clone()),
            median(ratios[w].clone())
        );
    }
    table
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` (make test) does not: there,
    // only check that the benchmark builds.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("macro benchmark: skipped (run it with `make bench`)");
        return;
    }
    let rounds = env_or("PULSE_BENCH_ROUNDS", 9).max(1);
    let seconds = env_or("PULSE_BENCH_SECONDS", 2).max(1);
    let requests = env_or("PULSE_BENCH_REQUESTS", 5000).max(1);
    let bare = build_bare_axum();
    eprintln!(
        "macro benchmark: {rounds} rounds x {seconds}s per server, concurrency {CONCURRENCY}; \
         callgrind: {requests} requests per endpoint at concurrency 1"
    );

    // Throughput: every round runs the four servers, in an order that alternates.
    let mut rates = [const { Vec::new() }; 4];
    let mut p99s = [const { Vec::new() }; 4];
    let mut ratios = [const { Vec::new() }; 4];
    for round in 0..rounds {
        let mut order = Variant::ALL;
        if round % 2 == 1 {
            order.reverse();
        }
        let mut measured = [0.0; 4];
        for variant in order {
            let server = Server::start(variant, &bare, None);
            server.saturate(1); // warm-up: connections, allocator, caches
            let (rate, p99, _) = server.saturate(seconds);
            measured[variant.index()] = rate;
            rates[variant.index()].push(rate);
            p99s[variant.index()].push(p99);
            eprintln!(
                "  round {}: {:<50} {rate:>9.0} req/s  p99 {p99:.2} ms",
                round + 1,
                variant.label()
            );
        }
        for variant in Variant::ALL {
            ratios[variant.index()].push(measured[variant.index()] / measured[0]);
        }
    }

    // Memory: idle, then after a million requests (Pulse at its defaults).
    let server = Server::start(Variant::Defaults, &bare, None);
    std::thread::sleep(Duration::from_secs(1));
    let rss_idle = server.rss_mib();
    let mut served = 0;
    let memory_started = Instant::now();
    while served < 1_000_000 {
        served += server.saturate(10).2;
    }
    let rss_after = server.rss_mib();
    eprintln!(
        "  {served} requests in {:.0}s; RSS {rss_idle:.1} -> {rss_after:.1} MiB",
        memory_started.elapsed().as_secs_f64()
    );
    drop(server);

    let instructions: Option<[[f64; 2]; 4]> = if valgrind_installed() {
        Some(Variant::ALL.map(|variant| instructions_per_request(variant, &bare, requests)))
    } else {
        eprintln!("  valgrind or callgrind_control not found: no instruction counts");
        None
    };

    let ready: Vec<f64> = (0..5)
        .map(|_| {
            Server::start(Variant::Defaults, &bare, None)
                .ready_after
                .as_secs_f64()
                * 1000.0
        })
        .collect();

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut table = String::new();
    table += &format!(
        "Machine: {cpu}, {cores} cores; load generator on the same machine. Command: `make bench`.\n\n"
    );

    table += &format!(
        "Instructions per request (callgrind; {requests} requests per endpoint at concurrency 1, \
         one keep-alive connection):\n\n"
    );
    table += "| server | `/api/users` | × bare | `/status/200` | × bare |\n|---|---|---|---|---|\n";
    match &instructions {
        Some(counts) => {
            for variant in Variant::ALL {
                let [users, status] = counts[variant.index()];
                let [bare_users, bare_status] = counts[0];
                table += &format!(
                    "| {} | {} | {:.2} | {} | {:.2} |\n",
                    variant.label(),
                    thousands(users),
                    users / bare_users,
                    thousands(status),
                    status / bare_status
                );
            }
        }
        None => table += "| (valgrind not installed) | | | | |\n",
    }

    table += &format!(
        "\nThroughput on `/api/users` (`pulse load --rate 0 --concurrency {CONCURRENCY}`, \
         {rounds} interleaved rounds of {seconds} s):\n\n"
    );
    table += "| server | req/s (median) | × bare (median of per-round ratios) | p99 at saturation (median) |\n|---|---|---|---|\n";
    for variant in Variant::ALL {
        let i = variant.index();
        table += &format!(
            "| {} | {:.0} | {:.2} | {:.2} ms |\n",
            variant.label(),
            median(rates[i].clone()),
            median(ratios[i].clone()),
            median(p99s[i].clone())
        );
    }

    match std::env::var("PULSE_TEST_DATABASE_URL") {
        Ok(server) if !server.is_empty() => {
            table += &compare_stores(&server, &bare, rounds, seconds)
        }
        _ => table += "\nThe stores: (no PostgreSQL: run `make bench`, which starts one)\n",
    }

    if let Some(counts) = &instructions {
        table += "\nWhere Pulse's instructions per request go, at its defaults:\n\n";
        table += "| part | `/status/200` | share | `/api/users` | share |\n|---|---|---|---|---|\n";
        let column = |endpoint: usize| {
            let [bare, defaults, warn, quiet] = Variant::ALL.map(|v| counts[v.index()][endpoint]);
            [bare, quiet - bare, warn - quiet, defaults - warn, defaults]
        };
        let (status, users) = (column(1), column(0));
        let parts = [
            "bare axum (the baseline)",
            "base stack (warn, no telemetry − bare)",
            "metrics + span (warn − warn, no telemetry)",
            "access log (defaults − warn)",
            "total, Pulse at its defaults",
        ];
        for (i, part) in parts.iter().enumerate() {
            table += &format!(
                "| {part} | {} | {:.0} % | {} | {:.0} % |\n",
                thousands(status[i]),
                status[i] / status[4] * 100.0,
                thousands(users[i]),
                users[i] / users[4] * 100.0
            );
        }
    }

    table += "\nTargets and other measures:\n\n";
    table += "| measure | result | target | |\n|---|---|---|---|\n";
    let ratio_row = |measure: &str, value: Option<f64>, limit: f64| match value {
        Some(ratio) => format!(
            "| {measure} | {ratio:.2}× | ≤ {limit}× | {} |\n",
            verdict(ratio <= limit)
        ),
        None => format!("| {measure} | (needs valgrind) | ≤ {limit}× | |\n"),
    };
    let ratio = |variant: Variant, endpoint: usize| {
        instructions.map(|c| c[variant.index()][endpoint] / c[0][endpoint])
    };
    table += &ratio_row(
        "instructions per request, defaults / bare, `/api/users`",
        ratio(Variant::Defaults, 0),
        1.5,
    );
    table += &ratio_row(
        "instructions per request, defaults / bare, `/status/200`",
        ratio(Variant::Defaults, 1),
        2.3,
    );
    table += &ratio_row(
        "instructions per request, `--log-level warn` / bare, `/api/users`",
        ratio(Variant::Warn, 0),
        1.25,
    );
    let throughput = median(ratios[Variant::Defaults.index()].clone());
    table += &format!(
        "| throughput on `/api/users`, defaults / bare (median of {rounds} per-round ratios) | {throughput:.2}× | ≥ 0.75× | {} |\n",
        verdict(throughput >= 0.75)
    );
    let telemetry_us = criterion_ns("request/with_telemetry")
        .zip(criterion_ns("request/without_telemetry"))
        .map(|(with, without)| (with - without) / 1000.0);
    let fmt = |v: Option<f64>, unit: &str| {
        v.map_or("(run `make bench`)".to_owned(), |v| {
            format!("{v:.3} {unit}")
        })
    };
    table += &format!(
        "| telemetry cost per request (criterion, with − without) | {} | ≤ 2 µs | {} |\n",
        fmt(telemetry_us, "µs"),
        telemetry_us.map_or("", |v| verdict(v <= 2.0))
    );
    for (n, label) in [("1000", "1,000"), ("10000", "10,000")] {
        let ms = criterion_ns(&format!("metrics_encode/{n}")).map(|ns| ns / 1e6);
        let target = if n == "10000" { "≤ 10 ms" } else { "—" };
        let judged = if n == "10000" {
            ms.map_or("", |v| verdict(v <= 10.0))
        } else {
            ""
        };
        table += &format!(
            "| `/metrics` encoding, {label} series | {} | {target} | {judged} |\n",
            fmt(ms, "ms")
        );
    }
    table += &format!(
        "| resident memory, idle (defaults) | {rss_idle:.1} MiB | ≤ 20 MiB | {} |\n",
        verdict(rss_idle <= 20.0)
    );
    table += &format!(
        "| resident memory after {served} requests (defaults) | {rss_after:.1} MiB | ≤ 40 MiB | {} |\n",
        verdict(rss_after <= 40.0)
    );
    let ready_ms = median(ready);
    table += &format!(
        "| start to ready (spawn to first 200 on /readyz, defaults, median of 5) | {ready_ms:.1} ms | ≤ 100 ms | {} |\n",
        verdict(ready_ms <= 100.0)
    );
    println!("\n{table}");
    let report = target_dir().join("bench-report.md");
    match std::fs::write(&report, &table) {
        Ok(()) => eprintln!("written to {}", report.display()),
        Err(e) => eprintln!("could not write {}: {e}", report.display()),
    }
}

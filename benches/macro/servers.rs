//! The four servers compared, started through the shared helper
//! (`tests/support/server.rs`), seeded, checked, and driven by `pulse load`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::server::{Launch, Output, PULSE, Server};

pub const CONCURRENCY: &str = "32";
/// Users in the benchmark's store (the same in `examples/bare_axum.rs`).
pub const USERS: u64 = 20;

/// The servers compared; `Bare` is the baseline of every ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Bare,
    Defaults,
    Warn,
    WarnNoTelemetry,
}

impl Variant {
    pub const ALL: [Self; 4] = [
        Self::Bare,
        Self::Defaults,
        Self::Warn,
        Self::WarnNoTelemetry,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            Self::Bare => "bare axum",
            Self::Defaults => "Pulse, defaults",
            Self::Warn => "Pulse `--log-level warn`",
            Self::WarnNoTelemetry => "Pulse `--log-level warn --disable-http-telemetry`",
        }
    }

    pub const fn index(self) -> usize {
        self as usize
    }

    /// The program and its arguments, serving on the launch's port.
    fn launch(self, bare: &Path) -> Launch {
        if self == Self::Bare {
            return Launch::new(bare).arg("--addr").arg_addr();
        }
        // What users run: no flag but the address, no Kubernetes, and no shutdown
        // delay (so that stopping a server does not hold the benchmark up).
        let launch = Launch::new(PULSE)
            .args(["serve", "--addr"])
            .arg_addr()
            .args(["--kube", "off", "--shutdown-delay", "0s"]);
        match self {
            Self::Warn => launch.args(["--log-level", "warn"]),
            Self::WarnNoTelemetry => {
                launch.args(["--log-level", "warn", "--disable-http-telemetry"])
            }
            _ => launch,
        }
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

/// The `/api/users` body both servers must answer, byte for byte.
fn users_body() -> String {
    let users: Vec<String> = (1..=USERS)
        .map(|id| format!(r#"{{"id":{id},"name":"User {id}","email":"user{id}@example.com"}}"#))
        .collect();
    format!(r#"{{"users":[{}],"count":{USERS}}}"#, users.join(","))
}

/// One server of the comparison, stopped when dropped.
pub struct BenchServer {
    pub variant: Variant,
    pub server: Server,
    /// From spawn to the first 200 on its ready path.
    pub ready_after: Duration,
}

impl BenchServer {
    /// Starts `variant`, under callgrind with instrumentation off when `callgrind`
    /// is given (the path of its output file), with users and items in the
    /// PostgreSQL `database` (a URL) when given; waits until it serves, seeds
    /// Pulse's store and checks the `/api/users` body.
    pub fn start(
        variant: Variant,
        bare: &Path,
        callgrind: Option<&Path>,
        database: Option<&str>,
    ) -> Self {
        // The shipped defaults, whatever this shell exports; the access log (stdout)
        // in a file.
        let mut launch = variant
            .launch(bare)
            .clean_env()
            .output(Output::Files)
            .poll(Duration::from_micros(500));
        if let Some(out) = callgrind {
            launch = launch.wrapped([
                "valgrind".to_owned(),
                "--tool=callgrind".to_owned(),
                "--instr-atstart=no".to_owned(),
                format!("--callgrind-out-file={}", out.display()),
            ]);
        }
        if let Some(url) = database {
            launch = launch.env("PULSE_DATABASE_URL", url);
        }
        let mut server = launch.spawn();
        let patience = Duration::from_secs(if callgrind.is_some() { 120 } else { 10 });
        let ready_after = server.wait_ready(variant.ready_path(), patience);
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        if variant != Variant::Bare {
            for id in 1..=USERS {
                let created = client
                    .post(server.url("/api/users"))
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
            .get(server.url("/api/users"))
            .send()
            .and_then(|r| r.text())
            .expect("GET /api/users");
        assert_eq!(body, users_body(), "{}: /api/users body", variant.label());
        Self {
            variant,
            server,
            ready_after,
        }
    }

    /// Lines written to stdout so far (the access log, at the defaults).
    pub fn stdout_lines(&self) -> usize {
        let path = self.server.stdout_path().expect("stdout in a file");
        std::fs::read(path).map_or(0, |text| text.iter().filter(|&&b| b == b'\n').count())
    }

    pub fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.server.pid()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    }

    /// Saturates `/api/users` for `seconds`; returns (requests/s, p99 ms, requests).
    pub fn saturate(&self, seconds: u64) -> (f64, f64, u64) {
        self.saturate_with("users", seconds)
    }

    /// Saturates `GET /api/users` with `wrk -t2 -c64` for `seconds` when `wrk` is
    /// installed (Debian's `wrk`: an independent client in C, two threads and 64
    /// connections, the setting the throughput target is stated for), else with
    /// `pulse load` at [`CONCURRENCY`]. Returns the rate, the p99 in ms and the
    /// requests sent; any non-2xx answer or socket error fails the benchmark.
    pub fn saturate_users(&self, seconds: u64) -> (f64, f64, u64) {
        if wrk().is_none() {
            return self.saturate(seconds);
        }
        let (rate, p99, sent) = wrk_run(&self.server.url("/api/users"), seconds);
        (rate, p99, sent)
    }

    /// Saturates the server with `pulse load --mix mix` for `seconds`.
    pub fn saturate_with(&self, mix: &str, seconds: u64) -> (f64, f64, u64) {
        let out = Command::new(PULSE)
            .args(["load", "--target", &self.server.url(""), "--rate", "0"])
            .args([
                "--concurrency",
                CONCURRENCY,
                "--mix",
                mix,
                "--output",
                "json",
            ])
            .args(["--duration", &format!("{seconds}s")])
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

/// The client the throughput rounds use, as the report names it.
pub fn throughput_client() -> String {
    match wrk() {
        Some(_) => "`wrk -t2 -c64`".into(),
        None => format!("`pulse load --rate 0 --concurrency {CONCURRENCY}`: wrk is not installed"),
    }
}

/// `wrk -t2 -c64 --latency` on `url` for `seconds`: the rate, the p99 in ms and
/// the requests sent. Any non-2xx answer or socket error fails the benchmark.
pub fn wrk_run(url: &str, seconds: u64) -> (f64, f64, u64) {
    let wrk = wrk().expect("wrk on PATH");
    let out = Command::new(wrk)
        .args([
            "-t2",
            "-c64",
            "--latency",
            "-d",
            &format!("{seconds}s"),
            url,
        ])
        .output()
        .expect("wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("Non-2xx") && !text.contains("Socket errors"),
        "wrk {url}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |prefix: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .map(|rest| rest.trim().to_owned())
            .unwrap_or_else(|| panic!("wrk printed no {prefix:?}: {text}"))
    };
    let rate: f64 = field("Requests/sec:").parse().expect("a rate");
    let p99 = wrk_ms(&field("99%"));
    let sent = text
        .lines()
        .find_map(|line| line.trim().split_once(" requests in"))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or(0);
    (rate, p99, sent)
}

/// `wrk` on PATH, unless `PULSE_BENCH_WRK=0`.
pub fn wrk() -> Option<PathBuf> {
    if std::env::var("PULSE_BENCH_WRK").is_ok_and(|v| v == "0") {
        return None;
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("wrk"))
        .find(|candidate| candidate.is_file())
}

/// A wrk latency (`850.00us`, `1.23ms`, `2.00s`) in milliseconds.
fn wrk_ms(text: &str) -> f64 {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (text, 1.0)
    };
    number.parse::<f64>().unwrap_or(f64::NAN) * scale
}

/// Where Cargo builds (criterion writes its results there too).
pub fn target_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| manifest.join(dir)) // `join` keeps an absolute path as it is
        .unwrap_or_else(|| manifest.join("target"))
}

/// Builds `examples/bare_axum.rs` with the profile the benchmark itself was built
/// with (`bench` inherits `release`) and returns the executable's path.
pub fn build_bare_axum() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    // What Cargo sets for this benchmark's process, not the user's configuration: some
    // build scripts (ring's) watch CARGO_MANIFEST_DIR, and inheriting it would rebuild
    // them here, and again at the next `cargo bench`.
    const SET_BY_CARGO: [&str; 8] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("CARGO_PKG_") || SET_BY_CARGO.contains(&name.as_str()) {
            command.env_remove(name);
        }
    }
    let out = command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--release", "--example", "bare_axum"])
        .arg("--message-format=json-render-diagnostics")
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

//! Macro benchmark (`make bench`, after the criterion micro-benchmarks): the real
//! `pulse serve`, with and without the telemetry layer, saturated on loopback by
//! `pulse load --rate 0`; resident memory idle and after 1M requests; time from
//! start to ready. Prints one table (also written to target/bench-report.md).
//!
//! The machine is shared and noisy, so variants are measured in interleaved rounds
//! whose order alternates, and the table reports medians of per-round ratios.
//! PULSE_BENCH_ROUNDS (default 9) and PULSE_BENCH_SECONDS (default 2) tune it.
//! Throughput on a shared machine moves by tens of percent between rounds, so the
//! server's instructions per request are also counted under callgrind (when
//! valgrind is installed): repeatable within about 1%.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PULSE: &str = env!("CARGO_BIN_EXE_pulse");
const CONCURRENCY: &str = "32";

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

/// `pulse serve` on `port`, quiet, with or without the telemetry layer.
fn serve_args(port: u16, telemetry: bool) -> Vec<String> {
    let mut args: Vec<String> = [
        "serve",
        "--addr",
        &format!("127.0.0.1:{port}"),
        "--log-level",
        "warn",
        "--shutdown-delay",
        "0s",
        "--kube",
        "off",
    ]
    .map(String::from)
    .to_vec();
    if !telemetry {
        args.push("--disable-http-telemetry".into());
    }
    args
}

struct Server {
    child: Child,
    port: u16,
    ready_after: Duration,
}

impl Server {
    fn start(telemetry: bool) -> Self {
        let port = free_port();
        let mut command = Command::new(PULSE);
        command
            .args(serve_args(port, telemetry))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let started = Instant::now();
        let child = command.spawn().expect("spawn pulse");
        let url = format!("http://127.0.0.1:{port}/readyz");
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .expect("client");
        loop {
            if client
                .get(&url)
                .send()
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "pulse did not become ready"
            );
            std::thread::sleep(Duration::from_micros(500));
        }
        Self {
            child,
            port,
            ready_after: started.elapsed(),
        }
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

    /// Saturates the server for `seconds`; returns (requests/s, p99 ms, requests).
    fn saturate(&self, seconds: u64) -> (f64, f64, u64) {
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
                "users",
                "--output",
                "json",
                "--duration",
                &format!("{seconds}s"),
            ])
            .output()
            .expect("pulse load");
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("load summary");
        assert_eq!(summary["status"]["failed"], 0, "requests failed: {summary}");
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

/// Instructions the server executes per request under a fixed load, counted by
/// callgrind (switched on only for the measured window). `None` without valgrind.
fn instructions_per_request(telemetry: bool) -> Option<f64> {
    let dir = std::env::temp_dir().join(format!(
        "pulse-callgrind-{}-{telemetry}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).ok()?;
    let port = free_port();
    let out = dir.join("callgrind.out");
    let mut command = Command::new("valgrind");
    command
        .args([
            "--tool=callgrind",
            "--instr-atstart=no",
            &format!("--callgrind-out-file={}", out.display()),
            PULSE,
        ])
        .args(serve_args(port, telemetry))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Owned by a Server so it is killed on every path out of here.
    let server = Server {
        child: command.spawn().ok()?,
        port,
        ready_after: Duration::ZERO,
    };
    let url = format!("http://127.0.0.1:{port}/readyz");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reqwest::blocking::get(&url).is_ok_and(|r| r.status().is_success()) {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    server.saturate(1);
    let pid = server.child.id().to_string();
    let control = |args: &[&str]| {
        Command::new("callgrind_control")
            .args(args)
            .arg(&pid)
            .output()
    };
    control(&["-i", "on"]).ok()?;
    let (_, _, requests) = server.saturate(5);
    control(&["-d"]).ok()?;
    drop(server);
    // The dump's "summary:" line is the total of the measured window.
    let total = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("summary:")
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
        })
        .fold(0.0_f64, f64::max);
    let _ = std::fs::remove_dir_all(&dir);
    (requests > 0 && total > 0.0).then(|| total / requests as f64)
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
    let path = format!(
        "{}/target/criterion/{id}/new/estimates.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value["mean"]["point_estimate"].as_f64()
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` (make test) does not: there,
    // only check that the benchmark builds.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("macro benchmark: skipped (run it with `make bench`)");
        return;
    }
    let rounds = env_or("PULSE_BENCH_ROUNDS", 9);
    let seconds = env_or("PULSE_BENCH_SECONDS", 2);
    eprintln!(
        "macro benchmark: {rounds} rounds x {seconds}s per variant, concurrency {CONCURRENCY}"
    );

    let (mut ratios, mut with_rate, mut without_rate, mut with_p99, mut without_p99) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        let mut measured = [(0.0, 0.0); 2];
        for telemetry in order {
            let server = Server::start(telemetry);
            server.saturate(1); // warm-up: connections, allocator, caches
            let (rate, p99, _) = server.saturate(seconds);
            measured[usize::from(telemetry)] = (rate, p99);
            eprintln!(
                "  round {}: {:<18} {:>9.0} req/s  p99 {:.2} ms",
                round + 1,
                if telemetry {
                    "with telemetry"
                } else {
                    "without telemetry"
                },
                rate,
                p99
            );
        }
        let ((bare, bare_p99), (instrumented, instrumented_p99)) = (measured[0], measured[1]);
        ratios.push(instrumented / bare);
        with_rate.push(instrumented);
        without_rate.push(bare);
        with_p99.push(instrumented_p99);
        without_p99.push(bare_p99);
    }

    // Memory: idle, then after a million requests (the instrumented server).
    let server = Server::start(true);
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

    let instructions = [true, false].map(instructions_per_request);

    let ready: Vec<f64> = (0..5)
        .map(|_| Server::start(true).ready_after.as_secs_f64() * 1000.0)
        .collect();

    let ratio = median(ratios);
    let telemetry_us = criterion_ns("request/with_telemetry")
        .zip(criterion_ns("request/without_telemetry"))
        .map(|(with, without)| (with - without) / 1000.0);
    let encode_ms = |n: &str| criterion_ns(&format!("metrics_encode/{n}")).map(|ns| ns / 1e6);
    let fmt = |v: Option<f64>, unit: &str| {
        v.map_or("(run `make bench`)".to_owned(), |v| {
            format!("{v:.3} {unit}")
        })
    };

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
    table += "| measure | result | target | |\n|---|---|---|---|\n";
    table += &format!(
        "| throughput with / without telemetry (median of {rounds} per-round ratios) | {:.1} % ({:.0} vs {:.0} req/s) | ≥ 90 % | {} |\n",
        ratio * 100.0,
        median(with_rate),
        median(without_rate),
        verdict(ratio >= 0.9)
    );
    table += &format!(
        "| p99 latency at saturation, with / without telemetry | {:.2} / {:.2} ms | — | |\n",
        median(with_p99),
        median(without_p99)
    );
    if let [Some(with), Some(without)] = instructions {
        table += &format!(
            "| server instructions per request (callgrind), with / without telemetry | {with:.0} / {without:.0} (+{:.0} %) | — | |\n",
            (with / without - 1.0) * 100.0
        );
    }
    table += &format!(
        "| telemetry cost per request (criterion, with − without) | {} | ≤ 2 µs | {} |\n",
        fmt(telemetry_us, "µs"),
        telemetry_us.map_or("", |v| verdict(v <= 2.0))
    );
    for (n, label) in [("1000", "1,000"), ("10000", "10,000")] {
        let ms = encode_ms(n);
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
        "| resident memory, idle | {rss_idle:.1} MiB | ≤ 20 MiB | {} |\n",
        verdict(rss_idle <= 20.0)
    );
    table += &format!(
        "| resident memory after {served} requests | {rss_after:.1} MiB | ≤ 40 MiB | {} |\n",
        verdict(rss_after <= 40.0)
    );
    let ready_ms = median(ready);
    table += &format!(
        "| start to ready (spawn to first 200 on /readyz, median of 5) | {ready_ms:.1} ms | ≤ 100 ms | {} |\n",
        verdict(ready_ms <= 100.0)
    );
    println!("\n{table}");
    let _ = std::fs::write(
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench-report.md"),
        &table,
    );
}

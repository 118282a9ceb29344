//! The timed measures: throughput in interleaved rounds, resident memory, start to
//! ready, and the two stores. Each returns data; `report.rs` renders it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::servers::{BenchServer, Variant};

/// Requests served before the second resident-memory reading.
pub const MEMORY_REQUESTS: u64 = 1_000_000;
/// Starts of which start to ready is the median.
pub const READY_STARTS: usize = 5;

/// Per server (`Variant::index`), one value per round.
#[derive(Default)]
pub struct Throughput {
    pub rates: [Vec<f64>; 4],
    pub p99s: [Vec<f64>; 4],
    /// Each round's rate over bare axum's in the same round.
    pub ratios: [Vec<f64>; 4],
}

/// Every round runs the four servers, in an order that alternates.
pub fn throughput(bare: &Path, rounds: u64, seconds: u64) -> Throughput {
    let mut out = Throughput::default();
    for round in 0..rounds {
        let mut order = Variant::ALL;
        if round % 2 == 1 {
            order.reverse();
        }
        let mut measured = [0.0; 4];
        for variant in order {
            let server = BenchServer::start(variant, bare, None, None);
            server.saturate_users(1); // warm-up: connections, allocator, caches
            let (rate, p99, _) = server.saturate_users(seconds);
            measured[variant.index()] = rate;
            out.rates[variant.index()].push(rate);
            out.p99s[variant.index()].push(p99);
            eprintln!(
                "  round {}: {:<50} {rate:>9.0} req/s  p99 {p99:.2} ms",
                round + 1,
                variant.label()
            );
        }
        for variant in Variant::ALL {
            out.ratios[variant.index()].push(measured[variant.index()] / measured[0]);
        }
    }
    out
}

/// Resident memory of Pulse at its defaults.
pub struct Memory {
    pub idle_mib: f64,
    pub after_mib: f64,
    /// Requests served before `after_mib` (at least [`MEMORY_REQUESTS`]).
    pub served: u64,
}

/// Idle, then after a million requests (Pulse at its defaults).
pub fn memory(bare: &Path) -> Memory {
    let server = BenchServer::start(Variant::Defaults, bare, None, None);
    std::thread::sleep(Duration::from_secs(1));
    let idle_mib = server.rss_mib();
    let mut served = 0;
    let started = Instant::now();
    while served < MEMORY_REQUESTS {
        served += server.saturate(10).2;
    }
    let after_mib = server.rss_mib();
    eprintln!(
        "  {served} requests in {:.0}s; RSS {idle_mib:.1} -> {after_mib:.1} MiB",
        started.elapsed().as_secs_f64()
    );
    Memory {
        idle_mib,
        after_mib,
        served,
    }
}

/// Start to ready of Pulse at its defaults, in ms, median of [`READY_STARTS`].
pub fn start_to_ready(bare: &Path) -> f64 {
    let ready = (0..READY_STARTS)
        .map(|_| {
            let server = BenchServer::start(Variant::Defaults, bare, None, None);
            server.ready_after.as_secs_f64() * 1000.0
        })
        .collect();
    median(ready)
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The stores compared: in memory (the default) and PostgreSQL.
pub const STORES: [&str; 2] = ["in memory", "PostgreSQL"];
/// The workloads: `pulse load --mix` and the request it sends.
pub const WORKLOADS: [(&str, &str); 2] = [
    ("users", "`GET /api/users`"),
    ("create", "`POST /api/users`"),
];

/// Per workload and store, one value per round.
#[derive(Default)]
pub struct Stores {
    pub rates: [[Vec<f64>; 2]; 2],
    pub p99s: [[Vec<f64>; 2]; 2],
    /// Per workload, each round's PostgreSQL rate over the in-memory one.
    pub ratios: [Vec<f64>; 2],
}

/// Pulse at its defaults on each store, in interleaved rounds, on the PostgreSQL
/// `server` (an admin URL).
pub fn stores(server: &str, bare: &Path, rounds: u64, seconds: u64) -> Stores {
    let mut out = Stores::default();
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
            let pulse = BenchServer::start(Variant::Defaults, bare, None, database.as_deref());
            pulse.saturate(1); // warm-up: connections, pool, caches
            for (w, (mix, label)) in WORKLOADS.iter().enumerate() {
                let (rate, p99, _) = pulse.saturate_with(mix, seconds);
                measured[w][store] = rate;
                out.rates[w][store].push(rate);
                out.p99s[w][store].push(p99);
                eprintln!(
                    "  round {}: {:<11} {label:<20} {rate:>9.0} req/s  p99 {p99:.2} ms",
                    round + 1,
                    STORES[store]
                );
            }
        }
        for (w, ratios) in out.ratios.iter_mut().enumerate() {
            ratios.push(measured[w][1] / measured[w][0]);
        }
    }
    out
}

/// A fresh, empty database on the benchmark's PostgreSQL server (`make bench` starts
/// a private one: scripts/with-postgres.sh); its URL.
pub fn fresh_database(server: &str, n: usize) -> String {
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

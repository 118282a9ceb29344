//! Macro benchmark (`make bench`, after the criterion micro-benchmarks): the real
//! `pulse serve`, as users run it, against a bare axum baseline serving the same
//! bytes (`examples/bare_axum.rs`). Four servers (`servers.rs`):
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
//! - instructions per request under callgrind (`callgrind.rs`), for `GET /api/users`
//!   and `GET /status/200`: a fixed number of requests (PULSE_BENCH_REQUESTS,
//!   default 5000) at concurrency 1 on one keep-alive connection, with
//!   instrumentation switched on only for that window. Repeatable within about 1 %;
//!   the figure to trust on a shared machine. Left out when valgrind is not installed.
//! - throughput on `/api/users` at saturation (`wrk -t2 -c64`, Debian's `wrk`;
//!   `pulse load --rate 0 --concurrency 32` where it is not installed, or with
//!   PULSE_BENCH_WRK=0), in interleaved rounds whose order alternates; the median of per-round
//!   ratios against bare axum. PULSE_BENCH_ROUNDS (default 9) and
//!   PULSE_BENCH_SECONDS (default 2 per server per round) tune it (`measure.rs`).
//! - resident memory idle and after a million requests, and start to ready, of
//!   Pulse at its defaults; with PostgreSQL (PULSE_TEST_DATABASE_URL), the two stores,
//!   and PostgreSQL writes with and without the size accounting (`writes.rs`;
//!   `PULSE_BENCH_ONLY=pg-writes` runs that part alone); with Redis too
//!   (PULSE_TEST_REDIS_URL) and wrk, `GET /api/users/{id}` on PostgreSQL with and
//!   without the cache (`cache.rs`; `PULSE_BENCH_ONLY=cache`).
//!
//! Prints one table (`report.rs`), also written to `target/bench-report.md`, whose
//! verdicts come from the one table of targets, `targets.rs`; so does the target
//! table of `docs/performance.md`. Without `--bench` (`cargo test --all-targets`)
//! it measures nothing and only checks that the docs' table is that one;
//! `cargo test --bench macro -- --write-docs` rewrites it.

#[path = "../../tests/support/server.rs"]
mod server;

mod cache;
mod callgrind;
mod measure;
mod report;
mod servers;
mod targets;
mod writes;

use report::Knobs;
use servers::CONCURRENCY;
use targets::Results;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--write-docs") {
        return targets::write_docs();
    }
    targets::check_docs();
    // `cargo bench` passes --bench; `cargo test --all-targets` (make test) does not: there,
    // only check that the benchmark builds and that the docs' targets are its own.
    if !args.iter().any(|a| a == "--bench") {
        eprintln!(
            "macro benchmark: skipped (run it with `make bench`); docs/performance.md's targets checked"
        );
        return;
    }
    let knobs = Knobs {
        rounds: env_or("PULSE_BENCH_ROUNDS", 9).max(1),
        seconds: env_or("PULSE_BENCH_SECONDS", 2).max(1),
        requests: env_or("PULSE_BENCH_REQUESTS", 5000).max(1),
    };
    match std::env::var("PULSE_BENCH_ONLY").as_deref() {
        Ok("pg-writes") => return writes::only(knobs),
        Ok("cache") => return cache::only(knobs),
        _ => {}
    }
    let bare = servers::build_bare_axum();
    eprintln!(
        "macro benchmark: {} rounds x {}s per server, concurrency {CONCURRENCY}; \
         callgrind: {} requests per endpoint at concurrency 1",
        knobs.rounds, knobs.seconds, knobs.requests
    );

    let throughput = measure::throughput(&bare, knobs.rounds, knobs.seconds);
    let memory = measure::memory(&bare);
    let instructions = callgrind::all(&bare, knobs.requests);
    let ready_ms = measure::start_to_ready(&bare);
    let stores = match std::env::var("PULSE_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            Some(measure::stores(&url, &bare, knobs.rounds, knobs.seconds))
        }
        _ => None,
    };
    let pg_writes = match std::env::var("PULSE_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(writes::measure(&url, knobs.rounds, knobs.seconds)),
        _ => None,
    };
    let cached = match (
        cache::env("PULSE_TEST_DATABASE_URL"),
        cache::env("PULSE_TEST_REDIS_URL"),
    ) {
        (Some(db), Some(redis)) => cache::measure(&db, &redis, knobs.rounds, knobs.seconds),
        _ => None,
    };
    let results = Results {
        rounds: knobs.rounds,
        throughput,
        instructions,
        memory_idle_mib: memory.idle_mib,
        memory_after_mib: memory.after_mib,
        served: memory.served,
        ready_ms,
        pg_writes,
    };

    let table = report::render(knobs, &results, stores.as_ref(), cached.as_ref());
    println!("\n{table}");
    let report = servers::target_dir().join("bench-report.md");
    match std::fs::write(&report, &table) {
        Ok(()) => eprintln!("written to {}", report.display()),
        Err(e) => eprintln!("could not write {}: {e}", report.display()),
    }
}

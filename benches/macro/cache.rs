//! The Redis cache in front of PostgreSQL: `GET /api/users/{id}` on Pulse at its
//! defaults on PostgreSQL, with and without `--redis-url`, in interleaved rounds
//! whose order alternates, each server on a fresh database (and, with the cache, a
//! Redis database of its own). Reported, not a target: what the cache buys on this
//! machine, where PostgreSQL, Redis, Pulse and the load generator share the cores.
//!
//! The load is `wrk -t2 -c64` on one user's URL (a hot key: every read after the
//! first is a hit); without `wrk` the part is left out. `PULSE_BENCH_ONLY=cache`
//! runs it alone: `PULSE_BENCH_ONLY=cache scripts/with-postgres.sh scripts/with-redis.sh
//! cargo bench --bench macro`.

use std::time::Duration;

use crate::measure::{fresh_database, median};
use crate::report::Knobs;
use crate::server::{Launch, Output, PULSE, Server};
use crate::servers::{wrk, wrk_run};

/// The two ways to serve the read.
const MODES: [&str; 2] = ["PostgreSQL", "PostgreSQL + Redis cache"];
/// The user read.
const PATH: &str = "/api/users/1";

/// Per mode, one rate and one p99 per round; per round, cached over uncached.
#[derive(Default)]
pub struct Cached {
    pub rates: [Vec<f64>; 2],
    pub p99s: [Vec<f64>; 2],
    pub ratios: Vec<f64>,
}

/// Measures both modes in `rounds` interleaved rounds of `seconds`, on databases
/// made on the PostgreSQL `server` (an admin URL) and the Redis at `redis`; `None`
/// without wrk.
pub fn measure(server: &str, redis: &str, rounds: u64, seconds: u64) -> Option<Cached> {
    wrk()?;
    let mut out = Cached::default();
    for round in 0..rounds {
        let mut order = [0, 1];
        if round % 2 == 1 {
            order.reverse();
        }
        let mut measured = [0.0; 2];
        for mode in order {
            let n = round as usize * 2 + mode;
            let database = fresh_database(server, 2000 + n);
            // Redis databases 1 to 15, a fresh one per cached server (0 is the tests').
            let cache =
                (mode == 1).then(|| format!("{}/{}", redis.trim_end_matches('/'), 1 + n % 15));
            let pulse = start(&database, cache.as_deref());
            let _ = wrk_run(&pulse.url(PATH), 1); // warm-up: pool, connections, the cache
            let (rate, p99, _) = wrk_run(&pulse.url(PATH), seconds);
            measured[mode] = rate;
            out.rates[mode].push(rate);
            out.p99s[mode].push(p99);
            eprintln!(
                "  round {}: {:<26} GET {PATH} {rate:>7.0} req/s  p99 {p99:.2} ms",
                round + 1,
                MODES[mode]
            );
        }
        out.ratios.push(measured[1] / measured[0]);
    }
    Some(out)
}

/// Pulse at its defaults on `database`, with the cache at `redis` when given, one
/// user stored; ready.
fn start(database: &str, redis: Option<&str>) -> Server {
    let mut launch = Launch::new(PULSE)
        .args(["serve", "--addr"])
        .arg_addr()
        .args(["--kube", "off", "--shutdown-delay", "0s"])
        .clean_env()
        .output(Output::Files)
        .env("PULSE_DATABASE_URL", database);
    if let Some(url) = redis {
        launch = launch.env("PULSE_REDIS_URL", url);
    }
    let mut server = launch.spawn();
    server.wait_ready("/readyz", Duration::from_secs(10));
    let created = reqwest::blocking::Client::new()
        .post(server.url("/api/users"))
        .json(&serde_json::json!({"name": "Cached", "email": "cached@example.com"}))
        .send()
        .expect("create the user");
    assert_eq!(created.status(), 201, "create the user");
    server
}

/// The report's table.
pub fn table(knobs: Knobs, cached: &Cached) -> String {
    let Knobs {
        rounds, seconds, ..
    } = knobs;
    let mut table = format!(
        "\nThe cache, `GET {PATH}` on PostgreSQL (`wrk -t2 -c64`, one user: every read after the \
         first a hit; {rounds} interleaved rounds of {seconds} s, a fresh database each):\n\n\
         | server | req/s (median) | p99 (median) |\n|---|---|---|\n"
    );
    for (mode, label) in MODES.iter().enumerate() {
        table += &format!(
            "| {label} | {:.0} | {:.2} ms |\n",
            median(cached.rates[mode].clone()),
            median(cached.p99s[mode].clone())
        );
    }
    table += &format!(
        "\nWith the cache over without (median of per-round ratios): {:.2}×\n",
        median(cached.ratios.clone())
    );
    table
}

/// `PULSE_BENCH_ONLY=cache`: this part alone.
pub fn only(knobs: Knobs) {
    let (Some(server), Some(redis)) = (env("PULSE_TEST_DATABASE_URL"), env("PULSE_TEST_REDIS_URL"))
    else {
        panic!(
            "PULSE_BENCH_ONLY=cache needs PostgreSQL and Redis: run it under \
             scripts/with-postgres.sh scripts/with-redis.sh"
        );
    };
    match measure(&server, &redis, knobs.rounds, knobs.seconds) {
        Some(cached) => println!("{}", table(knobs, &cached)),
        None => eprintln!("the cache part needs wrk (Debian's `wrk`)"),
    }
}

/// A non-empty environment variable.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

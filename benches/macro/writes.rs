//! PostgreSQL writes: `POST /api/users` with the size accounting (`--max-store-bytes`
//! at its default, 8 MiB: the slot rows of `src/store/postgres/slots.rs`) over the
//! same insert without it (`--max-store-bytes 0`), with 1 replica and with 2 (two
//! Pulse processes on one database, the load split across both). Interleaved
//! rounds whose order alternates, each server on a fresh database; the median of
//! per-round ratios is the target (`targets.rs`, `Metric::PgWrites`).
//!
//! `PULSE_BENCH_ONLY=pg-writes` runs this part alone (`make bench` runs it with the
//! rest): `PULSE_BENCH_ONLY=pg-writes scripts/with-postgres.sh cargo bench --bench macro`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::measure::{fresh_database, median};
use crate::report::Knobs;
use crate::server::{Launch, Output, PULSE, Server};
use crate::servers::CONCURRENCY;

/// Pulse processes sharing the database, per configuration.
pub const REPLICAS: [usize; 2] = [1, 2];
/// The two ways to run the insert: counted (the default limit) and not (0).
const MODES: [(&str, Option<&str>); 2] = [
    ("with the size accounting (defaults)", None),
    ("without (`--max-store-bytes 0`)", Some("0")),
];

/// Per replica count (`REPLICAS` index) and mode (`MODES` index), one rate per round.
#[derive(Default)]
pub struct Writes {
    pub rates: [[Vec<f64>; 2]; 2],
    /// Per replica count, each round's counted rate over the uncounted one.
    pub ratios: [Vec<f64>; 2],
}

impl Writes {
    /// The target's value: the median of the per-round ratios with `replicas` replicas.
    pub fn ratio(&self, replicas: usize) -> Option<f64> {
        let i = REPLICAS.iter().position(|&r| r == replicas)?;
        (!self.ratios[i].is_empty()).then(|| median(self.ratios[i].clone()))
    }
}

/// Measures both modes with each replica count, in `rounds` interleaved rounds of
/// `seconds`, on databases made on the PostgreSQL `server` (an admin URL).
pub fn measure(server: &str, rounds: u64, seconds: u64) -> Writes {
    let mut out = Writes::default();
    let mut databases = 0;
    for round in 0..rounds {
        for (r, &replicas) in REPLICAS.iter().enumerate() {
            let mut order = [0, 1];
            if round % 2 == 1 {
                order.reverse();
            }
            let mut measured = [0.0; 2];
            for mode in order {
                databases += 1;
                let url = fresh_database(server, 1000 + databases);
                let pulses: Vec<Server> = (0..replicas).map(|_| start(&url, mode)).collect();
                create_load(&pulses, 1); // warm-up: connections, pool, caches
                let rate = create_load(&pulses, seconds);
                measured[mode] = rate;
                out.rates[r][mode].push(rate);
                eprintln!(
                    "  round {}: {replicas} replica(s), {:<38} {rate:>7.0} req/s",
                    round + 1,
                    MODES[mode].0
                );
            }
            out.ratios[r].push(measured[0] / measured[1]);
        }
    }
    out
}

/// Pulse at its defaults on `url`, but for `MODES[mode]`'s limit; ready.
fn start(url: &str, mode: usize) -> Server {
    let mut launch = Launch::new(PULSE)
        .args(["serve", "--addr"])
        .arg_addr()
        .args(["--kube", "off", "--shutdown-delay", "0s"])
        .clean_env()
        .output(Output::Files)
        .env("PULSE_DATABASE_URL", url);
    if let Some(limit) = MODES[mode].1 {
        launch = launch.args(["--max-store-bytes", limit]);
    }
    let mut server = launch.spawn();
    server.wait_ready("/readyz", Duration::from_secs(10));
    server
}

/// `pulse load --mix create` on every server at once for `seconds`, the
/// concurrency split between them; the rates added up.
fn create_load(pulses: &[Server], seconds: u64) -> f64 {
    let total: usize = CONCURRENCY.parse().expect("CONCURRENCY is a number");
    let each = (total / pulses.len()).max(1).to_string();
    let loads: Vec<Child> = pulses
        .iter()
        .map(|pulse| {
            Command::new(PULSE)
                .args(["load", "--target", &pulse.url(""), "--rate", "0"])
                .args([
                    "--concurrency",
                    &each,
                    "--mix",
                    "create",
                    "--output",
                    "json",
                ])
                .args(["--duration", &format!("{seconds}s")])
                .stdout(Stdio::piped())
                .spawn()
                .expect("pulse load")
        })
        .collect();
    loads
        .into_iter()
        .map(|load| {
            let out = load.wait_with_output().expect("pulse load");
            let summary: serde_json::Value =
                serde_json::from_slice(&out.stdout).expect("load summary");
            assert_eq!(
                summary["status"]["failed"], 0,
                "POST /api/users failed: {summary}"
            );
            summary["achieved_rate"].as_f64().unwrap_or(0.0)
        })
        .sum()
}

/// The report's table.
pub fn table(knobs: Knobs, writes: &Writes) -> String {
    let Knobs {
        rounds, seconds, ..
    } = knobs;
    let mut table = format!(
        "\nPostgreSQL writes, `POST /api/users` (`pulse load --rate 0 --concurrency {CONCURRENCY} \
         --mix create`, split across the replicas; {rounds} interleaved rounds of {seconds} s, a \
         fresh database each):\n\n"
    );
    table += &format!(
        "| replicas | {} req/s | {} req/s | with / without (median of per-round ratios) |\n\
         |---|---|---|---|\n",
        MODES[0].0, MODES[1].0
    );
    for (r, replicas) in REPLICAS.iter().enumerate() {
        table += &format!(
            "| {replicas} | {:.0} | {:.0} | {:.2} |\n",
            median(writes.rates[r][0].clone()),
            median(writes.rates[r][1].clone()),
            median(writes.ratios[r].clone())
        );
    }
    table
}

/// `PULSE_BENCH_ONLY=pg-writes`: this part alone, its table printed.
pub fn only(knobs: Knobs) {
    let Some(server) = std::env::var("PULSE_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
    else {
        panic!(
            "PULSE_BENCH_ONLY=pg-writes needs PostgreSQL: run it under scripts/with-postgres.sh"
        );
    };
    let writes = measure(&server, knobs.rounds, knobs.seconds);
    println!("{}", table(knobs, &writes));
}

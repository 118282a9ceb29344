//! The report: one Markdown table per measure, then the targets
//! (`targets.rs`), printed and written to `target/bench-report.md`.

use crate::callgrind::{API_USERS, Counts, STATUS_200};
use crate::measure::{STORES, Stores, Throughput, WORKLOADS, median};
use crate::servers::{CONCURRENCY, Variant};
use crate::targets::{self, Results};

/// How the benchmark ran: its knobs.
#[derive(Debug, Clone, Copy)]
pub struct Knobs {
    pub rounds: u64,
    pub seconds: u64,
    pub requests: u64,
}

/// The whole report.
pub fn render(
    knobs: Knobs,
    results: &Results,
    stores: Option<&Stores>,
    cached: Option<&crate::cache::Cached>,
) -> String {
    let mut report = machine();
    report += &instructions(knobs.requests, results.instructions.as_ref());
    report += &throughput(knobs, &results.throughput);
    report += &match stores {
        Some(stores) => stores_table(knobs, stores),
        None => "\nThe stores: (no PostgreSQL: run `make bench`, which starts one)\n".into(),
    };
    if let Some(writes) = &results.pg_writes {
        report += &crate::writes::table(knobs, writes);
    }
    if let Some(cached) = cached {
        report += &crate::cache::table(knobs, cached);
    }
    if let Some(counts) = &results.instructions {
        report += &breakdown(counts);
    }
    report += "\nTargets and other measures:\n\n";
    report += &targets::report_table(results);
    report
}

fn machine() -> String {
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
    format!(
        "Machine: {cpu}, {cores} cores; load generator on the same machine. Command: `make bench`.\n\n"
    )
}

fn instructions(requests: u64, counts: Option<&Counts>) -> String {
    let mut table = format!(
        "Instructions per request (callgrind; {requests} requests per endpoint at concurrency 1, \
         one keep-alive connection):\n\n"
    );
    table += "| server | `/api/users` | × bare | `/status/200` | × bare |\n|---|---|---|---|---|\n";
    let Some(counts) = counts else {
        return table + "| (valgrind not installed) | | | | |\n";
    };
    let bare = counts[Variant::Bare.index()];
    for variant in Variant::ALL {
        let counts = counts[variant.index()];
        let (users, status) = (counts[API_USERS], counts[STATUS_200]);
        table += &format!(
            "| {} | {} | {:.2} | {} | {:.2} |\n",
            variant.label(),
            thousands(users),
            users / bare[API_USERS],
            thousands(status),
            status / bare[STATUS_200]
        );
    }
    table
}

fn throughput(knobs: Knobs, measured: &Throughput) -> String {
    let Knobs {
        rounds, seconds, ..
    } = knobs;
    let mut table = format!(
        "\nThroughput on `/api/users` ({}, {rounds} interleaved rounds of {seconds} s):\n\n",
        crate::servers::throughput_client()
    );
    table += "| server | req/s (median) | × bare (median of per-round ratios) | p99 at saturation (median) |\n|---|---|---|---|\n";
    for variant in Variant::ALL {
        let i = variant.index();
        table += &format!(
            "| {} | {:.0} | {:.2} | {:.2} ms |\n",
            variant.label(),
            median(measured.rates[i].clone()),
            median(measured.ratios[i].clone()),
            median(measured.p99s[i].clone())
        );
    }
    table
}

fn stores_table(knobs: Knobs, stores: &Stores) -> String {
    let Knobs {
        rounds, seconds, ..
    } = knobs;
    let mut table = format!(
        "\nThe stores, Pulse at its defaults (`pulse load --rate 0 --concurrency {CONCURRENCY}`, \
         {rounds} interleaved rounds of {seconds} s; PostgreSQL from `scripts/with-postgres.sh` on \
         this machine, fsync off, so an upper bound):\n\n"
    );
    table += &format!(
        "| workload | {} req/s | p99 | {} req/s | p99 | PostgreSQL × memory (median of per-round ratios) |\n|---|---|---|---|---|---|\n",
        STORES[0], STORES[1]
    );
    for (w, (_, label)) in WORKLOADS.iter().enumerate() {
        table += &format!(
            "| {label} | {:.0} | {:.2} ms | {:.0} | {:.2} ms | {:.2} |\n",
            median(stores.rates[w][0].clone()),
            median(stores.p99s[w][0].clone()),
            median(stores.rates[w][1].clone()),
            median(stores.p99s[w][1].clone()),
            median(stores.ratios[w].clone())
        );
    }
    table
}

/// Where Pulse's instructions per request go, at its defaults, by difference.
fn breakdown(counts: &Counts) -> String {
    let mut table =
        String::from("\nWhere Pulse's instructions per request go, at its defaults:\n\n");
    table += "| part | `/status/200` | share | `/api/users` | share |\n|---|---|---|---|---|\n";
    let column = |endpoint: usize| {
        let [bare, defaults, warn, quiet] = Variant::ALL.map(|v| counts[v.index()][endpoint]);
        [bare, quiet - bare, warn - quiet, defaults - warn, defaults]
    };
    let (status, users) = (column(STATUS_200), column(API_USERS));
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
    table
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

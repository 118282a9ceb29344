//! The one table of targets: what each measure is, how it is compared and to
//! what. The report's "Targets and other measures" rows and the target table of
//! `docs/performance.md` (between the markers below) are both rendered from
//! [`TARGETS`]; `cargo test --all-targets` fails when the docs differ, and
//! `cargo test --bench macro -- --write-docs` rewrites them.

use std::path::{Path, PathBuf};

use crate::callgrind::{API_USERS, Counts, ENDPOINTS, STATUS_200};
use crate::measure::{MEMORY_REQUESTS, READY_STARTS, Throughput, median};
use crate::servers::{CONCURRENCY, Variant, target_dir};

/// What a target compares a measure with.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    AtMost(f64),
    AtLeast(f64),
    /// Reported, not judged.
    None,
}

/// A measure, and where its value comes from.
#[derive(Debug, Clone, Copy)]
pub enum Metric {
    /// Instructions per request of a server over bare axum's, on `ENDPOINTS[i]`.
    Instructions(Variant, usize),
    /// Throughput on `/api/users`, Pulse at its defaults over bare axum, median of
    /// the per-round ratios.
    Throughput,
    /// criterion: `request/with_telemetry` − `request/without_telemetry`, in µs.
    TelemetryCost,
    /// criterion: `metrics_encode/<series>`, in ms.
    MetricsEncoding(u32),
    /// Resident memory of Pulse at its defaults, idle, MiB.
    MemoryIdle,
    /// Resident memory of Pulse at its defaults after `MEMORY_REQUESTS`, MiB.
    MemoryAfter,
    /// Spawn to the first 200 on `/readyz`, ms.
    StartToReady,
    /// `POST /api/users` on PostgreSQL with this many replicas, with the size
    /// accounting over without it (`writes.rs`), median of the per-round ratios.
    PgWrites(usize),
}

/// One row: `measure` (as the report writes it; `{rounds}`, `{served}` and
/// `{starts}` are filled in), its metric and its limit.
pub struct Target {
    pub measure: &'static str,
    pub metric: Metric,
    pub limit: Limit,
}

/// The targets, and the other measures reported beside them, in report order.
pub const TARGETS: &[Target] = &[
    Target {
        measure: "instructions per request, defaults / bare, `/api/users`",
        metric: Metric::Instructions(Variant::Defaults, API_USERS),
        limit: Limit::AtMost(1.35),
    },
    Target {
        measure: "instructions per request, defaults / bare, `/status/200`",
        metric: Metric::Instructions(Variant::Defaults, STATUS_200),
        limit: Limit::AtMost(2.0),
    },
    Target {
        measure: "instructions per request, `--log-level warn` / bare, `/api/users`",
        metric: Metric::Instructions(Variant::Warn, API_USERS),
        limit: Limit::AtMost(1.2),
    },
    Target {
        measure: "throughput on `/api/users`, defaults / bare (median of {rounds} per-round ratios)",
        metric: Metric::Throughput,
        limit: Limit::AtLeast(0.75),
    },
    Target {
        measure: "telemetry cost per request (criterion, with − without)",
        metric: Metric::TelemetryCost,
        limit: Limit::AtMost(2.0),
    },
    Target {
        measure: "`/metrics` encoding, 1,000 series",
        metric: Metric::MetricsEncoding(1000),
        limit: Limit::None,
    },
    Target {
        measure: "`/metrics` encoding, 10,000 series",
        metric: Metric::MetricsEncoding(10000),
        limit: Limit::AtMost(10.0),
    },
    Target {
        measure: "resident memory, idle (defaults)",
        metric: Metric::MemoryIdle,
        limit: Limit::AtMost(20.0),
    },
    Target {
        measure: "resident memory after {served} requests (defaults)",
        metric: Metric::MemoryAfter,
        limit: Limit::AtMost(40.0),
    },
    Target {
        measure: "start to ready (spawn to first 200 on /readyz, defaults, median of {starts})",
        metric: Metric::StartToReady,
        limit: Limit::AtMost(100.0),
    },
    Target {
        measure: "`POST /api/users` on PostgreSQL, 1 replica, with / without the size accounting (median of {rounds} per-round ratios)",
        metric: Metric::PgWrites(1),
        limit: Limit::AtLeast(0.5),
    },
    Target {
        measure: "`POST /api/users` on PostgreSQL, 2 replicas, with / without the size accounting (median of {rounds} per-round ratios)",
        metric: Metric::PgWrites(2),
        limit: Limit::AtLeast(0.5),
    },
];

/// What the benchmark measured, for the metrics to read.
pub struct Results {
    pub rounds: u64,
    pub throughput: Throughput,
    pub instructions: Option<Counts>,
    pub memory_idle_mib: f64,
    pub memory_after_mib: f64,
    pub served: u64,
    pub ready_ms: f64,
    /// With PostgreSQL only.
    pub pg_writes: Option<crate::writes::Writes>,
}

impl Metric {
    /// The unit after the value and the limit, and the value's decimals.
    fn unit(self) -> (&'static str, usize) {
        match self {
            Self::Instructions(..) | Self::Throughput | Self::PgWrites(_) => ("×", 2),
            Self::TelemetryCost => (" µs", 3),
            Self::MetricsEncoding(_) => (" ms", 3),
            Self::MemoryIdle | Self::MemoryAfter => (" MiB", 1),
            Self::StartToReady => (" ms", 1),
        }
    }

    /// Its value, or why there is none.
    fn value(self, results: &Results) -> Result<f64, &'static str> {
        let criterion = |id: &str| criterion_ns(id).ok_or("(run `make bench`)");
        match self {
            Self::Instructions(variant, endpoint) => results
                .instructions
                .map(|c| c[variant.index()][endpoint] / c[Variant::Bare.index()][endpoint])
                .ok_or("(needs valgrind)"),
            Self::Throughput => Ok(median(
                results.throughput.ratios[Variant::Defaults.index()].clone(),
            )),
            Self::TelemetryCost => Ok((criterion("request/with_telemetry")?
                - criterion("request/without_telemetry")?)
                / 1000.0),
            Self::MetricsEncoding(n) => Ok(criterion(&format!("metrics_encode/{n}"))? / 1e6),
            Self::MemoryIdle => Ok(results.memory_idle_mib),
            Self::MemoryAfter => Ok(results.memory_after_mib),
            Self::StartToReady => Ok(results.ready_ms),
            Self::PgWrites(replicas) => results
                .pg_writes
                .as_ref()
                .and_then(|writes| writes.ratio(replicas))
                .ok_or("(needs PostgreSQL: `make bench`)"),
        }
    }

    /// How it is measured, for the docs.
    fn how(self) -> String {
        match self {
            Self::Instructions(variant, endpoint) => format!(
                "callgrind: instructions per `GET {}` of {} over those of bare axum",
                ENDPOINTS[endpoint],
                match variant {
                    Variant::Bare => "bare axum",
                    Variant::Defaults => "Pulse at its defaults",
                    Variant::Warn => "Pulse `--log-level warn`",
                    Variant::WarnNoTelemetry => "Pulse `--log-level warn --disable-http-telemetry`",
                }
            ),
            Self::Throughput => format!(
                "`wrk -t2 -c64` on `/api/users` (`pulse load --rate 0 --concurrency {CONCURRENCY} \
                 --mix users` where wrk is not installed); each round's rate over bare axum's in \
                 the same round"
            ),
            Self::TelemetryCost => "`benches/telemetry.rs`: `request/with_telemetry` − \
                                    `request/without_telemetry`"
                .into(),
            Self::MetricsEncoding(n) => format!("`benches/telemetry.rs`: `metrics_encode/{n}`"),
            Self::MemoryIdle => "`VmRSS` of Pulse at its defaults, 1 s after ready".into(),
            Self::MemoryAfter => "`VmRSS` once `pulse load` has sent it at least a million \
                                  requests, 10 s at a time"
                .into(),
            Self::StartToReady => format!(
                "`GET /readyz` every 0.5 ms from spawn until it answers 200, {READY_STARTS} starts"
            ),
            Self::PgWrites(replicas) => format!(
                "`pulse load --rate 0 --concurrency {CONCURRENCY} --mix create` split across \
                 {replicas} Pulse process(es) on one fresh database, at the defaults over the same \
                 with `--max-store-bytes 0` (no accounting), each round's ratio (`writes.rs`)"
            ),
        }
    }
}

impl Limit {
    fn holds(self, value: f64) -> Option<bool> {
        match self {
            Self::AtMost(limit) => Some(value <= limit),
            Self::AtLeast(limit) => Some(value >= limit),
            Self::None => None,
        }
    }

    fn text(self, unit: &str) -> String {
        match self {
            Self::AtMost(limit) => format!("≤ {limit}{unit}"),
            Self::AtLeast(limit) => format!("≥ {limit}{unit}"),
            Self::None => "—".into(),
        }
    }
}

impl Target {
    /// The report's row: measure, result, target, verdict.
    pub fn report_row(&self, results: &Results) -> String {
        let (unit, decimals) = self.metric.unit();
        let (result, verdict) = match self.metric.value(results) {
            Ok(value) => (
                format!("{value:.decimals$}{unit}"),
                match self.limit.holds(value) {
                    Some(true) => "met",
                    Some(false) => "**MISSED**",
                    None => "",
                },
            ),
            Err(missing) => (missing.to_owned(), ""),
        };
        let measure = self
            .measure
            .replace("{rounds}", &results.rounds.to_string())
            .replace("{served}", &results.served.to_string());
        format!(
            "| {} | {result} | {} | {verdict} |\n",
            fill_constants(&measure),
            self.limit.text(unit)
        )
    }

    /// The docs' row: measure, target, how it is measured.
    fn docs_row(&self) -> String {
        let measure = self
            .measure
            .replace("{rounds}", "`PULSE_BENCH_ROUNDS`")
            .replace("{served}", "a million");
        format!(
            "| {} | {} | {} |\n",
            fill_constants(&measure),
            self.limit.text(self.metric.unit().0),
            self.metric.how()
        )
    }
}

// The docs' rows say "a million" for `{served}`.
const _: () = assert!(MEMORY_REQUESTS == 1_000_000);

fn fill_constants(measure: &str) -> String {
    measure.replace("{starts}", &READY_STARTS.to_string())
}

/// The report's last table.
pub fn report_table(results: &Results) -> String {
    let mut table = String::from("| measure | result | target | |\n|---|---|---|---|\n");
    for target in TARGETS {
        table += &target.report_row(results);
    }
    table
}

/// Mean in ns of a criterion benchmark run earlier by `make bench`, if present.
fn criterion_ns(id: &str) -> Option<f64> {
    let path = target_dir().join(format!("criterion/{id}/new/estimates.json"));
    let text = std::fs::read_to_string(path).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value["mean"]["point_estimate"].as_f64()
}

const BEGIN: &str = "<!-- targets: generated from benches/macro/targets.rs; \
                     `cargo test --bench macro -- --write-docs` rewrites them -->\n";
const END: &str = "<!-- end of targets -->";

/// The target table of the docs, between [`BEGIN`] and [`END`].
fn docs_table() -> String {
    let mut table = String::from("| measure | target | how |\n|---|---|---|\n");
    for target in TARGETS {
        table += &target.docs_row();
    }
    table
}

fn docs_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/performance.md")
}

/// The docs' text split around the generated table: before, table, after.
fn split_docs(text: &str) -> (&str, &str, &str) {
    let start = text.find(BEGIN).map(|i| i + BEGIN.len());
    let end = start.and_then(|s| text[s..].find(END).map(|i| s + i));
    let (Some(start), Some(end)) = (start, end) else {
        panic!("docs/performance.md: no target table between\n{BEGIN}and\n{END}");
    };
    (&text[..start], &text[start..end], &text[end..])
}

/// Panics unless the docs' target table is [`TARGETS`].
pub fn check_docs() {
    let text = std::fs::read_to_string(docs_path()).expect("docs/performance.md");
    let (_, table, _) = split_docs(&text);
    let expected = docs_table();
    assert!(
        table == expected,
        "docs/performance.md's target table is not benches/macro/targets.rs's TARGETS; \
         rewrite it with `cargo test --bench macro -- --write-docs`.\n\
         It says:\n{table}\nTARGETS say:\n{expected}"
    );
}

/// Rewrites the docs' target table from [`TARGETS`].
pub fn write_docs() {
    let path = docs_path();
    let text = std::fs::read_to_string(&path).expect("docs/performance.md");
    let (before, _, after) = split_docs(&text);
    let text = format!("{before}{}{after}", docs_table());
    std::fs::write(&path, text).expect("write docs/performance.md");
    eprintln!(
        "macro benchmark: wrote the target table of {}",
        path.display()
    );
}

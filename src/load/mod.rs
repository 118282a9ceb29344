//! `pulse load`: a traffic generator for dashboards, drills and benchmarks.
//!
//! With `--rate N` it is open-loop: request *i* is due at `start + i/N` whatever the
//! server does. A slow server does not slow the schedule down; when all
//! `--concurrency` connections are busy, the slot is skipped and counted as missed.
//! Latency is measured from the slot's due time, so queueing delay in the generator
//! counts against the server (no coordinated omission). `--rate 0` is closed-loop:
//! `--concurrency` workers send back to back, for saturation benchmarks.

mod failure;
pub(crate) mod mix;
pub(crate) mod report;

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::config::rules::RuleError;
use tokio::sync::Semaphore;
use tokio::time::Instant;

pub use failure::{Failure, FailureCounts};
pub use mix::{Generator, Mix};
pub use report::{Outcome, Stats, Summary};

/// What `pulse load --help` says of its exit codes ([`Outcome::exit_code`]).
pub const EXIT_CODES: &str = "\
Exit codes:
  0  answers came back and the error rate stayed within --max-error-rate (if given)
  1  the error rate, (5xx + failed) / requests, exceeded --max-error-rate
  2  bad arguments
  3  no request got an answer (the summary counts the failures by cause: connection
     refused, timeout, connection reset...): the target is down or unreachable";

/// `pulse load` output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A human-readable summary.
    Text,
    /// One JSON object (see [`Summary`]).
    Json,
}

/// Options of `pulse load`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Base URL of the Pulse to load, e.g. `http://127.0.0.1:8080`.
    #[arg(long, env = "PULSE_LOAD_TARGET", value_parser = crate::config::rules::http_url)]
    pub target: String,
    /// Requests per second (0 = as fast as `--concurrency` allows).
    #[arg(long, env = "PULSE_LOAD_RATE", default_value_t = 50.0, value_parser = parse_rate)]
    pub rate: f64,
    /// How long to send (`30s`, `5m`), or `forever`.
    #[arg(long, env = "PULSE_LOAD_DURATION", default_value = "30s", value_parser = parse_run_duration)]
    pub duration: RunDuration,
    /// Most requests in flight at once (1..=10000).
    #[arg(long, env = "PULSE_LOAD_CONCURRENCY", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// What to send.
    #[arg(long, env = "PULSE_LOAD_MIX", value_enum, default_value_t = Mix::Default)]
    pub mix: Mix,
    /// Summary format.
    #[arg(long, env = "PULSE_LOAD_OUTPUT", value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Exit 1 when (5xx + failed) / requests exceeds this (0..=1). Whatever it is,
    /// a run in which no request got an answer exits 3.
    #[arg(long, env = "PULSE_LOAD_MAX_ERROR_RATE", value_parser = crate::config::rules::rate)]
    pub max_error_rate: Option<f64>,
    /// Per-request timeout; a request without an answer by then counts as failed.
    #[arg(long, env = "PULSE_LOAD_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// With `--duration forever`, print a cumulative summary this often.
    #[arg(long, env = "PULSE_LOAD_REPORT_EVERY", default_value = "60s", value_parser = humantime::parse_duration)]
    pub report_every: Duration,
}

/// A bounded run, or one that goes on until the process is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunDuration {
    /// Send for this long.
    For(Duration),
    /// Send until stopped (the chart's load generator).
    Forever,
}

fn parse_run_duration(value: &str) -> Result<RunDuration, RuleError> {
    if value == "forever" {
        return Ok(RunDuration::Forever);
    }
    match humantime::parse_duration(value) {
        Ok(d) if !d.is_zero() => Ok(RunDuration::For(d)),
        _ => Err(RuleError::RunDuration),
    }
}

fn parse_rate(value: &str) -> Result<f64, RuleError> {
    match value.trim_end_matches("/s").parse::<f64>() {
        Ok(r) if r.is_finite() && (0.0..=1_000_000.0).contains(&r) => Ok(r),
        _ => Err(RuleError::RequestRate),
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Runs the load and returns the summary.
pub async fn run(args: &LoadArgs) -> Result<Summary, LoadError> {
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .pool_max_idle_per_host(args.concurrency as usize)
        .build()?;
    let stats = Arc::new(Stats::default());
    let generator = Arc::new(Generator::new(args.mix));
    let start = Instant::now();
    let end = match args.duration {
        RunDuration::For(d) => Some(start + d),
        RunDuration::Forever => None,
    };
    let reporter = tokio::spawn(report_progress(stats.clone(), args.clone(), start));
    let permits = Arc::new(Semaphore::new(args.concurrency as usize));
    if args.rate > 0.0 {
        open_loop(args, &client, &generator, &stats, &permits, start, end).await;
    } else {
        closed_loop(args, &client, &generator, &stats, &permits, end).await;
    }
    let sent_for = end.map_or_else(|| start.elapsed(), |e| e - start);
    // Let in-flight requests finish (each is bounded by --timeout).
    let _ = permits.acquire_many(args.concurrency).await;
    reporter.abort();
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    Ok(stats.summary(sent_for, args.rate, args.max_error_rate))
}

async fn open_loop(
    args: &LoadArgs,
    client: &reqwest::Client,
    generator: &Arc<Generator>,
    stats: &Arc<Stats>,
    permits: &Arc<Semaphore>,
    start: Instant,
    end: Option<Instant>,
) {
    for slot in 0u64.. {
        let due = start + Duration::from_secs_f64(slot as f64 / args.rate);
        if end.is_some_and(|end| due >= end) {
            break;
        }
        tokio::time::sleep_until(due).await;
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let (client, stats, target, generator) = (
                    client.clone(),
                    stats.clone(),
                    args.target.clone(),
                    generator.clone(),
                );
                tokio::spawn(async move {
                    send(&client, &target, &generator, &stats, due).await;
                    drop(permit);
                });
            }
            Err(_) => stats.missed(),
        }
    }
}

async fn closed_loop(
    args: &LoadArgs,
    client: &reqwest::Client,
    generator: &Arc<Generator>,
    stats: &Arc<Stats>,
    permits: &Arc<Semaphore>,
    end: Option<Instant>,
) {
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (client, stats, target, generator) = (
            client.clone(),
            stats.clone(),
            args.target.clone(),
            generator.clone(),
        );
        workers.push(tokio::spawn(async move {
            while end.is_none_or(|end| Instant::now() < end) {
                send(&client, &target, &generator, &stats, Instant::now()).await;
            }
            drop(permit);
        }));
    }
    for worker in workers {
        let _ = worker.await;
    }
}

/// Sends one request of the mix and records its outcome, timed from `due`.
async fn send(
    client: &reqwest::Client,
    target: &str,
    generator: &Generator,
    stats: &Stats,
    due: Instant,
) {
    let planned = generator.next(&mut rand::rng());
    let mut request = client.request(planned.method, format!("{target}{}", planned.path));
    if let Some(json) = planned.json {
        request = request
            .header("content-type", "application/json")
            .body(json);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            // Read the body: the answer is complete only when its body is.
            let outcome = response.bytes().await;
            match outcome {
                Ok(_) => stats.answered(status, due.elapsed()),
                Err(err) => failed(stats, &err, due),
            }
        }
        Err(err) => failed(stats, &err, due),
    }
}

fn failed(stats: &Stats, err: &reqwest::Error, due: Instant) {
    stats.failed(
        Failure::of(err),
        || crate::causes::one_line(err),
        due.elapsed(),
    );
}

/// A progress line on a terminal every second; with `--duration forever` and no
/// terminal, a cumulative summary every `--report-every`.
async fn report_progress(stats: Arc<Stats>, args: LoadArgs, start: Instant) {
    let terminal = std::io::stderr().is_terminal();
    let forever = args.duration == RunDuration::Forever;
    let every = if terminal {
        Duration::from_secs(1)
    } else {
        args.report_every
    };
    if !terminal && !forever {
        return;
    }
    let mut ticker = tokio::time::interval_at(start + every, every);
    loop {
        ticker.tick().await;
        let summary = stats.summary(start.elapsed(), args.rate, args.max_error_rate);
        if terminal {
            let s = &summary.status;
            eprint!(
                "\r{:>8} req  {:>8.1}/s  2xx {}  4xx {}  5xx {}  failed {}  missed {}  p99 {:.1}ms   ",
                summary.requests,
                summary.achieved_rate,
                s.success,
                s.client_error,
                s.server_error,
                s.failed,
                summary.missed_slots,
                summary.latency_ms.p99
            );
        } else {
            match args.output {
                Output::Json => println!("{}", serde_json::to_string(&summary).unwrap_or_default()),
                Output::Text => println!("{summary}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_parse() {
        assert_eq!(parse_run_duration("forever"), Ok(RunDuration::Forever));
        assert_eq!(
            parse_run_duration("5s"),
            Ok(RunDuration::For(Duration::from_secs(5)))
        );
        assert!(parse_run_duration("0s").is_err());
        assert_eq!(parse_rate("200/s"), Ok(200.0));
        assert!(parse_rate("-1").is_err() && parse_rate("NaN").is_err());
        assert!(crate::config::rules::rate("1.5").is_err());
        assert_eq!(
            crate::config::rules::http_url("http://127.0.0.1:8080/").as_deref(),
            Ok("http://127.0.0.1:8080")
        );
        let target = crate::config::rules::http_url;
        assert!(target("ftp://x").is_err() && target("nope").is_err());
    }
}

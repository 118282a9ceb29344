//! Command line and environment: every flag has a `PULSE_*` twin.
//!
//! Values are validated while parsing, so a bad setting stops the process at
//! start with one line naming the flag and the accepted range.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::cluster::KubeMode;

/// Default `--max-body-bytes`: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Default `--max-concurrency`.
pub const DEFAULT_MAX_CONCURRENCY: usize = 1024;

/// `pulse`: an observable demo web service.
#[derive(Debug, Parser)]
// Negative numbers are values, so `--fault-error-rate -1` gets the range message.
#[command(
    name = "pulse",
    version,
    about,
    args_conflicts_with_subcommands = true,
    allow_negative_numbers = true
)]
pub struct Cli {
    /// What to run; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `serve`, accepted without the subcommand name.
    #[command(flatten)]
    pub serve: ServeArgs,
}

impl Cli {
    /// The command to run, with `serve` as the default.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Serve(self.serve))
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default).
    #[command(allow_negative_numbers = true)]
    Serve(ServeArgs),
    /// GET a URL; exit 0 on a 2xx answer, 1 otherwise. For exec probes,
    /// `helm test` and HEALTHCHECK in an image without a shell.
    Probe(ProbeArgs),
    /// Send traffic to a Pulse: a request mix at a fixed rate, then a summary.
    #[command(allow_negative_numbers = true)]
    Load(crate::load::LoadArgs),
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for log pipelines).
    Json,
    /// Human-readable text.
    Text,
}

/// Options of `pulse serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PULSE_ADDR", default_value = "0.0.0.0:8080")]
    pub addr: SocketAddr,

    /// Serve the admin routes (`/admin/*`, `/readyz/enable|disable`) only on this
    /// address, e.g. `0.0.0.0:8081`, so a NetworkPolicy can restrict them; unset,
    /// they share `--addr`.
    #[arg(long, env = "PULSE_ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,

    /// Log filter, as an `EnvFilter` directive (`info`, `pulse=debug,warn`).
    #[arg(long, env = "PULSE_LOG_LEVEL", default_value = "info", value_parser = parse_log_level)]
    pub log_level: String,

    /// Log format.
    #[arg(long, env = "PULSE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// After SIGTERM, keep serving (while reporting not ready) this long, so
    /// endpoints and load balancers stop sending traffic before we stop accepting.
    #[arg(long, env = "PULSE_SHUTDOWN_DELAY", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    /// Then wait at most this long for in-flight requests to finish.
    #[arg(long, env = "PULSE_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Largest request body accepted, in bytes (1..=1073741824); larger gets 413.
    #[arg(long, env = "PULSE_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES,
          value_parser = parse_bytes)]
    pub max_body_bytes: usize,

    /// Longest a request may take before it is answered 503 (greater than 0).
    #[arg(long, env = "PULSE_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_positive_duration)]
    pub request_timeout: Duration,

    /// Most bytes the users and items may take (1..=1073741824); a write past it
    /// gets 507 and changes nothing.
    #[arg(long, env = "PULSE_MAX_STORE_BYTES", default_value_t = crate::store::DEFAULT_MAX_STORE_BYTES,
          value_parser = parse_bytes)]
    pub max_store_bytes: usize,

    /// API requests served at once (1..=1000000); beyond it a request is
    /// answered 503 with `Retry-After` at once instead of queueing.
    #[arg(long, env = "PULSE_MAX_CONCURRENCY", default_value_t = DEFAULT_MAX_CONCURRENCY,
          value_parser = parse_concurrency)]
    pub max_concurrency: usize,

    /// Close a connection whose request head is not complete this long after
    /// it opened or after its last response (slowloris; also the idle keep-alive timeout).
    #[arg(long, env = "PULSE_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = parse_positive_duration)]
    pub header_read_timeout: Duration,

    /// Fraction of API requests answered with an injected 500 (0..=1).
    #[arg(long, env = "PULSE_FAULT_ERROR_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub fault_error_rate: f64,

    /// Add a random delay of up to this much to API requests (0 disables).
    #[arg(long, env = "PULSE_FAULT_DELAY_MAX", default_value = "0s", value_parser = parse_duration)]
    pub fault_delay_max: Duration,

    /// Also record probes and `/metrics` in the `http_*` and `app_requests_total` series.
    #[arg(long, env = "PULSE_INSTRUMENT_PROBES", default_value_t = false)]
    pub instrument_probes: bool,

    /// Use the Kubernetes API (runtime ConfigMap, Events): auto = when in a cluster.
    #[arg(long, env = "PULSE_KUBE", value_enum, default_value_t = KubeMode::Auto)]
    pub kube: KubeMode,

    /// Benchmarks only: serve without the per-request telemetry layer, to measure its cost.
    #[arg(long, hide = true, default_value_t = false)]
    pub disable_http_telemetry: bool,

    /// Name of the ConfigMap holding runtime settings (in the pod's namespace).
    #[arg(long, env = "PULSE_RUNTIME_CONFIGMAP", default_value = "pulse-runtime")]
    pub runtime_configmap: String,
}

/// Options of `pulse probe`.
#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// URL to GET, e.g. `http://127.0.0.1:8080/healthz`.
    pub url: String,
    /// Give up after this long.
    #[arg(long, env = "PULSE_PROBE_TIMEOUT", default_value = "2s", value_parser = parse_positive_duration)]
    pub timeout: Duration,
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value)
        .map_err(|e| format!("{e}; expected a duration such as 250ms, 5s or 1m"))
}

fn parse_positive_duration(value: &str) -> Result<Duration, String> {
    match parse_duration(value)? {
        d if d.is_zero() => Err("must be greater than 0 (e.g. 30s)".into()),
        d => Ok(d),
    }
}

fn parse_rate(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err("must be a number between 0 and 1 (0.05 = 5%)".into()),
    }
}

/// 1 GiB: far above any sane body or store limit, low enough to catch a typo'd exponent.
const MAX_BYTES_LIMIT: usize = 1 << 30;

/// A million in-flight requests is far past what one process serves well.
const MAX_CONCURRENCY_LIMIT: usize = 1_000_000;

fn parse_bytes(value: &str) -> Result<usize, String> {
    parse_count(value, MAX_BYTES_LIMIT)
}

fn parse_concurrency(value: &str) -> Result<usize, String> {
    parse_count(value, MAX_CONCURRENCY_LIMIT)
}

/// An integer from 1 to `max`.
fn parse_count(value: &str, max: usize) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("must be an integer between 1 and {max}")),
    }
}

fn parse_log_level(value: &str) -> Result<String, String> {
    crate::telemetry::log_filter(value)
        .map(|_| value.to_owned())
        .map_err(|e| format!("{e}; expected an EnvFilter directive such as info or pulse=debug"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        let argv = std::iter::once("pulse").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|cli| match cli.into_command() {
            Command::Serve(args) => args,
            other => panic!("expected serve, got {other:?}"),
        })
    }

    #[test]
    fn defaults_match_the_contract() {
        let args = serve(&[]).unwrap();
        assert_eq!(args.addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(args.shutdown_delay, Duration::from_secs(5));
        assert_eq!(args.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(args.max_body_bytes, 1 << 20);
        assert_eq!(args.request_timeout, Duration::from_secs(30));
        assert_eq!(args.max_concurrency, 1024);
        assert_eq!(args.max_store_bytes, 8 << 20);
        assert_eq!(args.header_read_timeout, Duration::from_secs(30));
        assert_eq!(args.fault_error_rate, 0.0);
        assert_eq!(args.log_format, LogFormat::Json);
    }

    #[test]
    fn serve_is_the_default_subcommand() {
        let a = serve(&["--shutdown-delay", "250ms"]).unwrap();
        let b = serve(&["serve", "--shutdown-delay", "250ms"]).unwrap();
        assert_eq!(a.shutdown_delay, Duration::from_millis(250));
        assert_eq!(b.shutdown_delay, a.shutdown_delay);
    }

    #[test]
    fn invalid_values_name_the_flag_and_the_range() {
        for (args, flag, range) in [
            (
                &["--fault-error-rate", "1.5"][..],
                "--fault-error-rate",
                "between 0 and 1",
            ),
            (
                &["--fault-error-rate", "NaN"][..],
                "--fault-error-rate",
                "between 0 and 1",
            ),
            (
                &["--max-body-bytes", "0"][..],
                "--max-body-bytes",
                "between 1 and",
            ),
            (
                &["--max-concurrency", "0"][..],
                "--max-concurrency",
                "between 1 and 1000000",
            ),
            (
                &["--header-read-timeout", "0s"][..],
                "--header-read-timeout",
                "greater than 0",
            ),
            (
                &["--request-timeout", "0s"][..],
                "--request-timeout",
                "greater than 0",
            ),
            (
                &["--shutdown-delay", "5 parsecs"][..],
                "--shutdown-delay",
                "such as 250ms",
            ),
            (&["--log-level", "[["][..], "--log-level", "EnvFilter"),
        ] {
            let err = serve(args).unwrap_err().to_string();
            let first = err.lines().next().unwrap_or_default();
            assert!(first.contains(flag) && first.contains(range), "{first}");
        }
    }

    #[test]
    fn probe_takes_a_url() {
        let cli = Cli::try_parse_from(["pulse", "probe", "http://127.0.0.1:8080/healthz"]).unwrap();
        match cli.into_command() {
            Command::Probe(p) => assert_eq!(p.timeout, Duration::from_secs(2)),
            other => panic!("expected probe, got {other:?}"),
        }
    }
}

//! The command line: `pulse [serve] | probe URL | load | doctor`. Every flag has a
//! `PULSE_*` environment twin.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{ServeArgs, rules};
use crate::doctor::DoctorArgs;
use crate::load::LoadArgs;

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
        self.command
            .unwrap_or_else(|| Command::Serve(Box::new(self.serve)))
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default).
    // Boxed: the server's options are many times the size of the other commands'.
    #[command(allow_negative_numbers = true)]
    Serve(Box<ServeArgs>),
    /// GET a URL; exit 0 on a 2xx answer, 1 otherwise. For exec probes,
    /// `helm test` and HEALTHCHECK in an image without a shell.
    Probe(ProbeArgs),
    /// Send traffic to a Pulse: a request mix at a fixed rate, then a summary.
    #[command(allow_negative_numbers = true, after_help = crate::load::EXIT_CODES)]
    Load(LoadArgs),
    /// Check a running installation: Pulse scraped, rules loaded, exemplars, traces
    /// and logs arriving, Grafana's datasources and dashboards; exit 1 when a check fails.
    Doctor(DoctorArgs),
}

/// Options of `pulse probe`.
#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// URL to GET, e.g. `http://127.0.0.1:8080/healthz`.
    pub url: String,
    /// Give up after this long.
    #[arg(long, env = "PULSE_PROBE_TIMEOUT", default_value = "2s", value_parser = rules::positive_duration)]
    pub timeout: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        let argv = std::iter::once("pulse").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|cli| match cli.into_command() {
            Command::Serve(args) => *args,
            other => panic!("expected serve, got {other:?}"),
        })
    }

    #[test]
    fn defaults_match_the_contract() {
        let args = serve(&[]).unwrap();
        assert_eq!(args, ServeArgs::default(), "one definition of the defaults");
        assert_eq!(args.addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(args.shutdown_delay, Duration::from_secs(5));
        assert_eq!(args.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(args.max_body_bytes, 1 << 20);
        assert_eq!(args.request_timeout, Duration::from_secs(30));
        assert_eq!(args.max_concurrency, 1024);
        assert_eq!(args.max_store_bytes, 8 << 20);
        assert_eq!(args.header_read_timeout, Duration::from_secs(30));
        assert_eq!(args.fault_error_rate, 0.0);
        assert_eq!(args.log_format, crate::config::LogFormat::Json);
        assert_eq!(args.cache_ttl, Duration::from_secs(30));
        assert_eq!(args.cache_timeout, Duration::from_millis(50));
        assert_eq!(args.redis_url, None);
    }

    #[test]
    fn redis_urls_need_the_redis_scheme_and_a_host() {
        for good in [
            "redis://cache:6379/0",
            "redis://:secret@10.0.0.1",
            "redis://cache",
        ] {
            let args = serve(&["--redis-url", good]).unwrap();
            assert_eq!(args.redis_url.as_ref().map(|u| u.expose()), Some(good));
            assert!(
                !format!("{args:?}").contains("secret"),
                "the password is redacted"
            );
        }
        for bad in [
            "http://cache:6379",
            "redis://",
            "redis://:6379",
            "rediss://cache",
            "cache:6379",
        ] {
            let err = serve(&["--redis-url", bad]).unwrap_err().to_string();
            assert!(
                err.contains("--redis-url") && err.contains("redis://"),
                "{bad}: {err}"
            );
        }
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
                &["--fault-delay-max", "5m"][..],
                "--fault-delay-max",
                "maximum of 60s",
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
            (&["--log-level", "[["][..], "--log-level", "names no level"),
            (
                &["--log-level", "info=[["][..],
                "--log-level",
                "names no level",
            ),
        ] {
            let err = serve(args).unwrap_err().to_string();
            let first = err.lines().next().unwrap_or_default();
            assert!(first.contains(flag) && first.contains(range), "{first}");
        }
    }

    #[test]
    fn the_help_lists_every_ui_colour_name() {
        use clap::CommandFactory as _;
        let help = Cli::command().render_long_help().to_string();
        let (_, after) = help
            .split_once("--ui-color")
            .expect("--ui-color in the help");
        let ui_color = after.split("--ui-message").next().unwrap_or_default();
        for name in crate::config::ui::ColorName::ALL {
            assert!(ui_color.contains(name.as_str()), "{}", name.as_str());
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

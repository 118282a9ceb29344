//! The `pulse` binary: parses the command line, and for `serve` installs the
//! global telemetry, builds the application with it, binds the listeners, turns
//! signals into a shutdown and runs the application (`App::run`).

use std::future::Future;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::Parser as _;
use pulse::app::{App, Identity};
use pulse::causes::one_line;
use pulse::cli::{Cli, Command};
use pulse::config::ServeArgs;
use pulse::server::{self, Listeners, Signals};
use pulse::telemetry::{self, TracingConfig};

fn main() -> ExitCode {
    // Taken first, so "time to ready" includes everything the process does.
    let started = Instant::now();
    match Cli::parse().into_command() {
        Command::Serve(args) => match runtime().and_then(|rt| rt.block_on(serve(*args, started))) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("pulse: {}", one_line(err.as_ref()));
                ExitCode::FAILURE
            }
        },
        Command::Load(args) => match load(&args) {
            Ok(summary) => ExitCode::from(summary.outcome.exit_code()),
            Err(err) => {
                eprintln!("pulse load: {}", one_line(err.as_ref()));
                ExitCode::from(2)
            }
        },
        Command::Doctor(args) => match runtime() {
            Ok(rt) => {
                let report = rt.block_on(pulse::doctor::run(&args));
                match args.output {
                    pulse::doctor::Output::Table => println!("{report}"),
                    pulse::doctor::Output::Json => match serde_json::to_string(&report) {
                        Ok(json) => println!("{json}"),
                        Err(err) => {
                            eprintln!("pulse doctor: {err}");
                            return ExitCode::from(2);
                        }
                    },
                }
                if report.passed() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(err) => {
                eprintln!("pulse doctor: {}", one_line(err.as_ref()));
                ExitCode::from(2)
            }
        },
        Command::Probe(args) => match pulse::probe::probe(&args.url, args.timeout) {
            Ok(status) => {
                println!("GET {} -> {status}", args.url);
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("pulse probe: {}", one_line(&err));
                ExitCode::FAILURE
            }
        },
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn load(args: &pulse::load::LoadArgs) -> anyhow::Result<pulse::load::Summary> {
    let summary = runtime()?.block_on(pulse::load::run(args))?;
    match args.output {
        pulse::load::Output::Json => println!("{}", serde_json::to_string(&summary)?),
        pulse::load::Output::Text => println!("{summary}"),
    }
    Ok(summary)
}

async fn serve(args: ServeArgs, started: Instant) -> anyhow::Result<()> {
    let identity = Identity::current(started);
    let mut tracing = telemetry::init_tracing(
        &TracingConfig {
            log_level: args.log_level.clone(),
            log_format: args.log_format,
        },
        identity.resource.clone(),
    )?;
    let app = App::new(&args, identity, tracing.handles())?;
    let listeners = Listeners::bind(&args).await?;
    let shutdown = shutdown_signal().context("cannot install signal handlers")?;
    app.run(listeners, shutdown).await?;
    tracing.shutdown(server::FLUSH_TIMEOUT);
    Ok(())
}

/// Completes on SIGTERM or SIGINT with the signal's name; a second signal means
/// "now": the process exits at once, without draining.
fn shutdown_signal() -> std::io::Result<impl Future<Output = &'static str>> {
    let mut signals = Signals::install()?;
    Ok(async move {
        let signal = signals.recv().await;
        tokio::spawn(async move {
            let signal = signals.recv().await;
            tracing::warn!(signal = signal.as_str(), "second signal: exiting now");
            std::process::exit(signal.exit_code());
        });
        signal.as_str()
    })
}

//! The `pulse` binary: parses the command line, and for `serve` installs the
//! global telemetry, binds the listeners and turns signals into a shutdown.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::Parser as _;
use pulse::app::App;
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
                eprintln!("pulse: {err:#}");
                ExitCode::FAILURE
            }
        },
        Command::Load(args) => match load(&args) {
            Ok(summary) if summary.passed => ExitCode::SUCCESS,
            Ok(_) => ExitCode::from(1),
            Err(err) => {
                eprintln!("pulse load: {err:#}");
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
                eprintln!("pulse doctor: {err:#}");
                ExitCode::from(2)
            }
        },
        Command::Probe(args) => match pulse::probe::probe(&args.url, args.timeout) {
            Ok(status) => {
                println!("GET {} -> {status}", args.url);
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("pulse probe: {err}");
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
    let mut app = App::new(&args, started)?;
    let mut tracing = telemetry::init_tracing(
        &TracingConfig {
            log_level: args.log_level.clone(),
            log_format: args.log_format,
        },
        app.resource.clone(),
    )?;
    if let Some(reloader) = tracing.take_log_reloader() {
        app.state.settings.set_log_reloader(reloader);
    }
    app.state
        .metrics
        .observe_dropped_log_lines(tracing.dropped_log_lines());
    app.state.metrics.observe_span_export(tracing.span_counts());
    tokio::spawn(telemetry::logs::report_dropped_lines(
        tracing.dropped_log_lines(),
    ));
    app.start_cluster(&args);
    app.start_database();
    let build = app.state.info.build;
    app.events.publish(pulse::cluster::PodEvent::normal(
        "Started",
        format!("pulse {} ({}) started", build.version, build.revision),
    ));
    let listeners = Listeners::bind(&args).await?;
    let mut signals = Signals::install().context("cannot install signal handlers")?;
    let shutdown = async move {
        let signal = signals.recv().await;
        // A second signal means "now": no drain.
        tokio::spawn(async move {
            let signal = signals.recv().await;
            tracing::warn!(signal = signal.as_str(), "second signal: exiting now");
            std::process::exit(signal.exit_code());
        });
        signal.as_str()
    };
    server::serve(listeners, app, shutdown).await?;
    tracing.shutdown(server::FLUSH_TIMEOUT);
    Ok(())
}

//! The `pulse` binary: parses the command line and runs a subcommand.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::Parser as _;
use pulse::config::{Cli, Command};

fn main() -> ExitCode {
    // Taken first, so "time to ready" includes everything the process does.
    let started = Instant::now();
    match Cli::parse().into_command() {
        Command::Serve(args) => match serve(args, started) {
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

fn load(args: &pulse::load::LoadArgs) -> anyhow::Result<pulse::load::Summary> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let summary = runtime.block_on(pulse::load::run(args))?;
    match args.output {
        pulse::load::Output::Json => println!("{}", serde_json::to_string(&summary)?),
        pulse::load::Output::Text => println!("{summary}"),
    }
    Ok(summary)
}

fn serve(args: pulse::config::ServeArgs, started: Instant) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(pulse::server::run(args, started))?;
    Ok(())
}

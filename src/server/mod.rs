//! `pulse serve`: start-up, serving, and the graceful shutdown sequence.
//!
//! Shutdown (PRODUCT.md 1.5): on SIGTERM or SIGINT readiness turns 503 at once;
//! the server keeps serving for `--shutdown-delay` so endpoints controllers and
//! load balancers stop sending; then it stops accepting and drains in-flight
//! requests for at most `--shutdown-timeout`; telemetry is flushed and the
//! process exits 0. A second signal exits at once.

mod connections;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::BuildInfo;
use crate::cluster::{self, EventPublisher, KubeConfig, PodEvent};
use crate::config::ServeArgs;
use crate::readiness::Readiness;
use crate::routes::{self, HttpConfig};
use crate::settings::{LiveSettings, RuntimeSettings};
use crate::state::{AppState, ServiceInfo};
use crate::store::MemoryStore;
use crate::telemetry::{self, Metrics, TelemetryError, TracingConfig};
use connections::{Connections, Draining};

/// How long telemetry may take to flush at exit.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Telemetry could not be set up.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// The listen address is taken or not ours.
    #[error("cannot listen on {addr} ({flag}): {source}")]
    Bind {
        /// The flag that asked for it.
        flag: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// The listening socket failed.
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

impl From<&ServeArgs> for HttpConfig {
    fn from(args: &ServeArgs) -> Self {
        Self {
            max_body_bytes: args.max_body_bytes,
            request_timeout: args.request_timeout,
            max_concurrency: args.max_concurrency,
            separate_admin: args.admin_addr.is_some(),
            instrument_probes: args.instrument_probes,
            telemetry: !args.disable_http_telemetry,
        }
    }
}

impl From<&ServeArgs> for RuntimeSettings {
    fn from(args: &ServeArgs) -> Self {
        Self {
            log_level: args.log_level.clone(),
            fault_error_rate: args.fault_error_rate,
            fault_delay_max: args.fault_delay_max,
            force_unready: false,
        }
    }
}

/// Runs the server until shutdown completes. `started` is when the process began.
pub async fn run(args: ServeArgs, started: Instant) -> Result<(), ServeError> {
    let build = BuildInfo::current();
    let resource = telemetry::resource(&build);
    let service_name = telemetry::service_name(&resource);
    let mut tracing_guard = telemetry::init_tracing(
        &TracingConfig {
            log_level: args.log_level.clone(),
            log_format: args.log_format,
        },
        resource.clone(),
    )?;
    let metrics = Metrics::new(resource, &build, started)?;
    let readiness = Arc::new(Readiness::default());
    let settings = Arc::new(LiveSettings::new(
        RuntimeSettings::from(&args),
        metrics.clone(),
        tracing_guard.take_log_reloader(),
    ));
    let events = if args.kube.enabled() {
        let config = KubeConfig::from_env(args.runtime_configmap.clone());
        tracing::info!(configmap = %config.configmap, "Kubernetes features on: watching runtime settings, publishing Events");
        cluster::start(config, settings.clone(), metrics.clone())
    } else {
        EventPublisher::disabled()
    };
    events.publish(PodEvent::normal(
        "Started",
        format!("pulse {} ({}) started", build.version, build.revision),
    ));
    let state = AppState {
        store: Arc::new(MemoryStore::with_limit(args.max_store_bytes)),
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        info: Arc::new(ServiceInfo::from_env(service_name, build, started)),
        settings,
    };
    let http = HttpConfig::from(&args);
    let app = routes::router(state.clone(), &http);
    let listener = bind("--addr", args.addr).await?;
    let local = listener.local_addr().map_err(ServeError::Serve)?;
    let mut listeners = vec![(listener, app)];
    if let Some(addr) = args.admin_addr {
        listeners.push((
            bind("--admin-addr", addr).await?,
            routes::admin_router(state, &http),
        ));
        tracing::info!(addr = %addr, "admin routes on their own listener");
    }
    let mut signals = Signals::install()?;

    readiness.set_ready();
    tracing::info!(
        addr = %local,
        version = build.version,
        revision = build.revision,
        startup_ms = started.elapsed().as_secs_f64() * 1000.0,
        "pulse ready"
    );
    events.publish(PodEvent::normal("Ready", format!("serving on {local}")));

    // The sequence after the first signal; accepting stops when it completes.
    let (stop_tx, stop_rx) = watch::channel(false);
    let delay = args.shutdown_delay;
    let drain_timeout = args.shutdown_timeout;
    let shutdown = async move {
        let signal = signals.recv().await;
        readiness.shut_down();
        events.publish(PodEvent::normal(
            "ShuttingDown",
            format!(
                "{signal}: draining for up to {}s",
                (delay + drain_timeout).as_secs()
            ),
        ));
        tracing::info!(signal, delay = ?delay, "shutdown: not ready; still serving during the delay");
        tokio::spawn(async move {
            let signal = signals.recv().await;
            tracing::warn!(signal, "second signal: exiting now");
            std::process::exit(128 + signal_number(signal));
        });
        tokio::time::sleep(delay).await;
        tracing::info!("shutdown: no longer accepting; draining in-flight requests");
        let _ = stop_tx.send(true);
    };
    let accepting = listeners.into_iter().map(|(listener, app)| {
        let mut stop = stop_rx.clone();
        Connections::new(listener, app, args.header_read_timeout, metrics.clone()).accept_until(
            async move {
                let _ = stop.wait_for(|stop| *stop).await;
            },
        )
    });
    let ((), open) = tokio::join!(shutdown, join_all(accepting));
    let drained = join_all(open.into_iter().map(Draining::finished));
    match tokio::time::timeout(drain_timeout, drained).await {
        Ok(_) => tracing::info!("shutdown: drained"),
        Err(_) => tracing::warn!(
            timeout = ?drain_timeout,
            "shutdown: drain timeout; abandoning remaining requests"
        ),
    }

    metrics.shutdown(FLUSH_TIMEOUT);
    tracing_guard.shutdown(FLUSH_TIMEOUT);
    Ok(())
}

async fn bind(flag: &'static str, addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { flag, addr, source })
}

fn signal_number(name: &str) -> i32 {
    match name {
        "SIGINT" => 2,
        _ => 15,
    }
}

/// SIGTERM and SIGINT, received as a stream of names.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self, ServeError> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate()).map_err(ServeError::Signals)?,
                int: signal(SignalKind::interrupt()).map_err(ServeError::Signals)?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Waits for the next signal and returns its name.
    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

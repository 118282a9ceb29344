//! Serving the application's routers on its listeners ([`serve`], which
//! `App::run` calls), and the graceful shutdown sequence.
//!
//! When the `shutdown` future completes (the binary completes it on SIGTERM or
//! SIGINT), readiness turns 503 at once; the listeners keep serving for the
//! shutdown delay so endpoints controllers and load balancers stop sending; then
//! they stop accepting and in-flight requests drain for at most the shutdown
//! timeout; then metrics are flushed and [`serve`] returns.

mod body;
mod connections;
mod signals;
mod stream;

pub use signals::{Signal, Signals};

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use futures::future::join_all;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cluster::{EventPublisher, PodEvent};
use crate::config::ServeArgs;
use crate::state::AppState;
pub use connections::{MAX_HEAD_BYTES, MAX_HEADERS};

use connections::{ConnectionLimit, Connections, Draining};

/// How long telemetry may take to flush at exit.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// How connections are served and how serving ends: the connection limits and
/// the shutdown sequence's timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    /// Serve on, not ready, this long after the shutdown signal.
    pub shutdown_delay: Duration,
    /// Then wait at most this long for in-flight requests.
    pub shutdown_timeout: Duration,
    /// Close a connection whose request head does not arrive within this.
    pub header_read_timeout: Duration,
    /// Close a connection whose response makes no progress for this long.
    pub write_timeout: Duration,
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
}

impl From<&ServeArgs> for Lifecycle {
    fn from(args: &ServeArgs) -> Self {
        Self {
            shutdown_delay: args.shutdown_delay,
            shutdown_timeout: args.shutdown_timeout,
            header_read_timeout: args.header_read_timeout,
            write_timeout: args.write_timeout,
            max_connections: args.max_connections,
        }
    }
}

/// What [`serve`] serves: the routers, the state they share (readiness, metrics),
/// where Events go and the timings.
#[derive(Debug)]
pub struct Service {
    /// What every handler sees.
    pub state: AppState,
    /// Served on [`Listeners::main`].
    pub main: Router,
    /// Served on [`Listeners::admin`], when both exist.
    pub admin: Option<Router>,
    /// Where the Ready and ShuttingDown Events go.
    pub events: EventPublisher,
    /// The connection limits and the shutdown sequence's timings.
    pub lifecycle: Lifecycle,
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
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
    /// The listening socket failed.
    #[error("server failed: {0}")]
    Listener(std::io::Error),
}

/// The bound sockets: `--addr`, and `--admin-addr` when it is set.
#[derive(Debug)]
pub struct Listeners {
    /// Serves the main router (the API, probes, `/metrics`).
    pub main: TcpListener,
    /// Serves the admin router (when `--admin-addr` moves it).
    pub admin: Option<TcpListener>,
}

impl Listeners {
    /// Binds the addresses `args` names.
    pub async fn bind(args: &ServeArgs) -> Result<Self, ServeError> {
        let admin = match args.admin_addr {
            Some(addr) => Some(bind("--admin-addr", addr).await?),
            None => None,
        };
        Ok(Self {
            main: bind("--addr", args.addr).await?,
            admin,
        })
    }
}

async fn bind(flag: &'static str, addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { flag, addr, source })
}

/// Serves `service` on `listeners` until `shutdown` completes (with the reason,
/// e.g. the signal's name), then runs the shutdown sequence and returns when
/// drained.
pub async fn serve(
    listeners: Listeners,
    service: Service,
    shutdown: impl Future<Output = &'static str>,
) -> Result<(), ServeError> {
    let Service {
        state,
        main,
        admin,
        events,
        lifecycle,
    } = service;
    let local = listeners.main.local_addr().map_err(ServeError::Listener)?;
    let mut serving = vec![(listeners.main, main)];
    if let (Some(listener), Some(router)) = (listeners.admin, admin) {
        let addr = listener.local_addr().map_err(ServeError::Listener)?;
        tracing::info!(addr = %addr, "admin routes on their own listener");
        serving.push((listener, router));
    }
    announce_ready(&state, &events, local);

    // The sequence after the shutdown signal; accepting stops when it completes.
    let (stop_tx, stop_rx) = watch::channel(false);
    let sequence = shutdown_sequence(shutdown, &state, events, lifecycle, stop_tx);
    // One bound for the process: descriptors are per process, not per listener.
    let limit = ConnectionLimit::new(lifecycle.max_connections);
    let (open, rejected) = (limit.clone(), limit.clone());
    state
        .metrics
        .observe_connections(move || open.open(), move || rejected.rejected());
    let accepting = serving.into_iter().map(|(listener, router)| {
        let mut stop = stop_rx.clone();
        Connections::new(
            listener,
            router,
            lifecycle.header_read_timeout,
            lifecycle.write_timeout,
            limit.clone(),
            state.metrics.clone(),
        )
        .accept_until(async move {
            let _ = stop.wait_for(|stop| *stop).await;
        })
    });
    let ((), open) = tokio::join!(sequence, join_all(accepting));
    let drained = join_all(open.into_iter().map(Draining::finished));
    match tokio::time::timeout(lifecycle.shutdown_timeout, drained).await {
        Ok(_) => tracing::info!("shutdown: drained"),
        Err(_) => tracing::warn!(
            timeout = ?lifecycle.shutdown_timeout,
            "shutdown: drain timeout; abandoning remaining requests"
        ),
    }
    state.metrics.shutdown(FLUSH_TIMEOUT);
    Ok(())
}

/// Readiness on, the "pulse ready" line with the time to ready, the Ready Event.
fn announce_ready(state: &AppState, events: &EventPublisher, local: SocketAddr) {
    state.readiness.set_ready();
    let startup = state.info.started.elapsed();
    tracing::info!(
        addr = %local,
        version = state.info.build.version,
        revision = state.info.build.revision,
        // Whole microseconds: a float of milliseconds prints 7.595847999999999.
        startup_ms = startup.as_micros() as f64 / 1000.0,
        "pulse ready"
    );
    events.publish(PodEvent::normal("Ready", format!("serving on {local}")));
}

/// After `shutdown`: not ready at once, an Event, serving on for the delay, then
/// `stop` tells the listeners to stop accepting.
async fn shutdown_sequence(
    shutdown: impl Future<Output = &'static str>,
    state: &AppState,
    events: EventPublisher,
    lifecycle: Lifecycle,
    stop: watch::Sender<bool>,
) {
    let reason = shutdown.await;
    state.readiness.shut_down();
    events.publish(PodEvent::normal(
        "ShuttingDown",
        format!(
            "{reason}: draining for up to {}s",
            (lifecycle.shutdown_delay + lifecycle.shutdown_timeout).as_secs()
        ),
    ));
    tracing::info!(reason, delay = ?lifecycle.shutdown_delay, "shutdown: not ready; still serving during the delay");
    tokio::time::sleep(lifecycle.shutdown_delay).await;
    tracing::info!("shutdown: no longer accepting; draining in-flight requests");
    let _ = stop.send(true);
}

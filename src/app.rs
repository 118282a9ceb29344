//! The application: the state and routers `pulse serve` runs, built from its
//! arguments and the telemetry the binary installed, then served.
//!
//! Start-up has one shape (mini-redis's `server::run`): the binary installs the
//! process-wide telemetry, [`App::new`] builds a complete application from it,
//! the binary binds the listeners and wires the signals, and [`App::run`] starts
//! the background work and serves until the shutdown future completes. The tests
//! and benchmarks take the same path, with [`Handles::default`] where the binary
//! installed global telemetry.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use opentelemetry_sdk::Resource;
use tokio::sync::mpsc;

use crate::BuildInfo;
use crate::backend::Backend;
use crate::cluster::{self, EventPublisher, KubeConfig, PodEvent};
use crate::config::{PodIdentity, ServeArgs};
use crate::readiness::Readiness;
use crate::routes::{self, HttpConfig};
use crate::server::{self, Lifecycle, Listeners, ServeError, Service};
use crate::settings::{LiveSettings, Notifier, RuntimeSettings};
use crate::state::{AppState, Parts, ServiceInfo};
use crate::store::{CachedStore, MemoryStore, PostgresStore, Store};
use crate::telemetry::{self, DroppedLines, Handles, Metrics, TelemetryError};

/// Why the application could not be built (at start-up only).
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Metrics or tracing could not be set up.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// `--database-url` (or `DATABASE_URL`) is not a PostgreSQL URL.
    #[error("invalid database URL (--database-url or DATABASE_URL): {0}")]
    DatabaseUrl(#[from] crate::config::rules::RuleError),
    /// The PostgreSQL driver refuses the URL's options.
    #[error("invalid database URL (--database-url or DATABASE_URL): {0}")]
    DatabaseOptions(#[from] crate::store::DatabaseUrlError),
    /// `--max-store-bytes 0` (no limit) without a database: the in-memory store
    /// must stay bounded, or a client could fill the process's memory.
    #[error(
        "--max-store-bytes 0 (no limit) needs a database (--database-url): the in-memory store must be bounded"
    )]
    UnboundedMemoryStore,
    /// `--redis-url` without a database: the cache is PostgreSQL's.
    #[error(
        "--redis-url (PULSE_REDIS_URL) needs --database-url (or DATABASE_URL): the cache sits in front of PostgreSQL"
    )]
    CacheWithoutDatabase,
    /// The Redis client refuses the URL.
    #[error("invalid Redis URL (--redis-url or PULSE_REDIS_URL): {0}")]
    RedisUrl(#[from] crate::store::RedisUrlError),
}

/// Who this process is: its build, its pod and the OpenTelemetry resource made of
/// them. Read once, before anything is built, because the binary's tracing needs
/// the resource before the application exists.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Version and revision of this binary.
    pub build: BuildInfo,
    /// Who this process is in Kubernetes (the downward-API variables).
    pub pod: PodIdentity,
    /// The resource of its metrics and traces.
    pub resource: Resource,
    /// When the process began (uptime, time to ready).
    pub started: Instant,
}

impl Identity {
    /// Reads this process's identity; `started` is when it began.
    pub fn current(started: Instant) -> Self {
        let build = BuildInfo::current();
        let pod = PodIdentity::from_env();
        let resource = telemetry::resource(&build, &pod);
        Self {
            build,
            pod,
            resource,
            started,
        }
    }
}

/// Everything `pulse serve` runs, complete before it listens.
#[derive(Debug)]
pub struct App {
    /// What every handler sees.
    pub state: AppState,
    /// The routes of `--addr` (all of them, unless `--admin-addr` is set).
    pub main: Router,
    /// The admin routes, when `--admin-addr` gives them a listener of their own.
    pub admin: Option<Router>,
    /// Where Kubernetes Events go (a queue [`App::run`] drains when `--kube` is
    /// on; nowhere otherwise).
    pub events: EventPublisher,
    /// The shutdown sequence's timings and the connection limits.
    pub lifecycle: Lifecycle,
    /// The PostgreSQL store, when `--database-url` chose it ([`App::run`] starts
    /// its supervisor: migrations, then checks).
    pub database: Option<Arc<PostgresStore>>,
    /// The Kubernetes side, started by [`App::run`] when `--kube` is on.
    cluster: Option<ClusterStart>,
    /// Reported on stderr once lines are lost (binary only).
    dropped_log_lines: Option<DroppedLines>,
}

/// What the Kubernetes side starts with: its configuration and the queue of
/// Events the application's [`EventPublisher`] feeds.
#[derive(Debug)]
struct ClusterStart {
    config: KubeConfig,
    queue: mpsc::Receiver<PodEvent>,
}

impl App {
    /// Builds the complete application: store, settings, metrics, routers.
    /// Spawns nothing and installs nothing global (tests build many); `telemetry`
    /// is what the binary's [`telemetry::init_tracing`] handed over, or
    /// [`Handles::default`].
    pub fn new(args: &ServeArgs, identity: Identity, telemetry: Handles) -> Result<Self, AppError> {
        let Identity {
            build,
            pod,
            resource,
            started,
        } = identity;
        let service_name = telemetry::service_name(&resource);
        let metrics = Metrics::new(resource, &build, started)?;
        if let Some(dropped) = telemetry.dropped_log_lines.clone() {
            metrics.observe_dropped_log_lines(move || dropped.count());
        }
        if let Some(counts) = telemetry.span_counts {
            metrics.observe_span_export(counts);
        }
        let database = match args.database()? {
            Some(url) => Some(Arc::new(PostgresStore::new(
                url.expose(),
                args.database_pool_size,
                args.database_timeout,
                args.max_store_bytes,
                &metrics,
            )?)),
            None => None,
        };
        let store = store(args, database.as_ref(), &metrics)?;
        observe_store(&metrics, store.clone());
        let (events, cluster) = if args.kube.enabled() {
            let (events, queue) = EventPublisher::channel();
            let config = KubeConfig {
                configmap: args.runtime_configmap.clone(),
                pod: pod.clone(),
            };
            (events, Some(ClusterStart { config, queue }))
        } else {
            (EventPublisher::disabled(), None)
        };
        let notifier = cluster
            .as_ref()
            .map(|_| Arc::new(events.clone()) as Arc<dyn Notifier>);
        let settings = LiveSettings::new(RuntimeSettings::from(args), metrics.clone())
            .with_log_reloader(telemetry.log_reloader)
            .with_notifier(notifier);
        let state = AppState::from(Parts {
            store,
            settings: Arc::new(settings),
            metrics,
            readiness: Arc::new(Readiness::default()),
            info: Arc::new(ServiceInfo::new(
                service_name,
                build,
                &pod,
                started,
                args.ui(),
            )),
            backend: Arc::new(Backend::new(args)),
        });
        let http = HttpConfig::from(args);
        Ok(Self {
            main: routes::router(state.clone(), &http),
            admin: http
                .separate_admin
                .then(|| routes::admin_router(state.clone(), &http)),
            state,
            events,
            lifecycle: Lifecycle::from(args),
            database,
            cluster,
            dropped_log_lines: telemetry.dropped_log_lines,
        })
    }

    /// Starts the background work (the database's supervisor, the Kubernetes
    /// side, the dropped-log-lines report), then serves on `listeners` until
    /// `shutdown` completes (with the reason, e.g. the signal's name) and the
    /// shutdown sequence has drained.
    pub async fn run(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = &'static str>,
    ) -> Result<(), ServeError> {
        let Self {
            state,
            main,
            admin,
            events,
            lifecycle,
            database,
            cluster,
            dropped_log_lines,
        } = self;
        if let Some(dropped) = dropped_log_lines {
            tokio::spawn(telemetry::logs::report_dropped_lines(move || {
                dropped.count()
            }));
        }
        if let Some(database) = database {
            tracing::info!("users and items in PostgreSQL; migrating");
            tokio::spawn(database.supervise());
        }
        if let Some(ClusterStart { config, queue }) = cluster {
            tracing::info!(configmap = %config.configmap, "Kubernetes features on: watching runtime settings, publishing Events");
            tokio::spawn(cluster::run(
                config,
                queue,
                state.settings.clone(),
                state.metrics.clone(),
            ));
        }
        let build = state.info.build;
        events.publish(PodEvent::normal(
            "Started",
            format!("pulse {} ({}) started", build.version, build.revision),
        ));
        let service = Service {
            state,
            main,
            admin,
            events,
            lifecycle,
        };
        server::serve(listeners, service, shutdown).await
    }
}

/// The store the handlers see: PostgreSQL (behind the Redis cache with
/// `--redis-url`), or memory.
fn store(
    args: &ServeArgs,
    database: Option<&Arc<PostgresStore>>,
    metrics: &Arc<Metrics>,
) -> Result<Arc<dyn Store>, AppError> {
    Ok(match (database, &args.redis_url) {
        (Some(postgres), Some(redis)) => Arc::new(CachedStore::new(
            postgres.clone(),
            redis.expose(),
            args.cache_ttl,
            args.cache_timeout,
            metrics.clone(),
        )?),
        (Some(postgres), None) => postgres.clone(),
        (None, Some(_)) => return Err(AppError::CacheWithoutDatabase),
        (None, None) if args.max_store_bytes == 0 => return Err(AppError::UnboundedMemoryStore),
        (None, None) => Arc::new(MemoryStore::with_limit(args.max_store_bytes)),
    })
}

/// `pulse_users` and `pulse_data_items` read the store at scrape time.
fn observe_store(metrics: &Metrics, store: Arc<dyn Store>) {
    let items = store.clone();
    metrics.observe_stored(
        move || store.counts().users as u64,
        move || items.counts().items as u64,
    );
}

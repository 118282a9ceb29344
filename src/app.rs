//! The application: the state and routers `pulse serve` runs, built from its
//! arguments. The one place [`AppState`] is assembled; the binary, the tests and
//! the benchmarks all start here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;

use crate::BuildInfo;
use crate::backend::Backend;
use crate::cluster::{self, EventPublisher, KubeConfig};
use crate::config::{PodIdentity, ServeArgs};
use crate::readiness::Readiness;
use crate::routes::{self, HttpConfig};
use crate::settings::{LiveSettings, RuntimeSettings};
use crate::state::{AppState, ServiceInfo};
use crate::store::{MemoryStore, PostgresStore, Store};
use crate::telemetry::{self, Metrics, TelemetryError};
use opentelemetry_sdk::Resource;

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
}

/// Everything `pulse serve` runs, before it listens.
#[derive(Debug)]
pub struct App {
    /// What every handler sees.
    pub state: AppState,
    /// The routes of `--addr` (all of them, unless `--admin-addr` is set).
    pub main: Router,
    /// The admin routes, when `--admin-addr` gives them a listener of their own.
    pub admin: Option<Router>,
    /// Where Kubernetes Events go (nowhere until [`App::start_cluster`]).
    pub events: EventPublisher,
    /// The shutdown sequence's timings.
    pub lifecycle: Lifecycle,
    /// Who this process is in Kubernetes (read once, at start).
    pub pod: PodIdentity,
    /// The OpenTelemetry resource of its metrics, for its traces too.
    pub resource: Resource,
    /// The PostgreSQL store, when `--database-url` chose it (its supervisor starts
    /// with [`App::start_database`]).
    pub database: Option<Arc<PostgresStore>>,
}

impl App {
    /// Builds the state and routers. `started` is when the process began (for
    /// uptime). Installs nothing global: tests build many.
    pub fn new(args: &ServeArgs, started: Instant) -> Result<Self, AppError> {
        let build = BuildInfo::current();
        let pod = PodIdentity::from_env();
        let resource = telemetry::resource(&build, &pod);
        let service_name = telemetry::service_name(&resource);
        let metrics = Metrics::new(resource.clone(), &build, started)?;
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
        let store: Arc<dyn Store> = match &database {
            Some(postgres) => postgres.clone(),
            None => Arc::new(MemoryStore::with_limit(args.max_store_bytes)),
        };
        observe_store(&metrics, store.clone());
        let state = AppState {
            store,
            settings: Arc::new(LiveSettings::new(
                RuntimeSettings::from(args),
                metrics.clone(),
            )),
            metrics,
            readiness: Arc::new(Readiness::default()),
            info: Arc::new(ServiceInfo::new(service_name, build, &pod, started)),
            backend: Arc::new(Backend::new(args)),
        };
        let http = HttpConfig::from(args);
        Ok(Self {
            main: routes::router(state.clone(), &http),
            admin: http
                .separate_admin
                .then(|| routes::admin_router(state.clone(), &http)),
            state,
            events: EventPublisher::disabled(),
            lifecycle: Lifecycle {
                shutdown_delay: args.shutdown_delay,
                shutdown_timeout: args.shutdown_timeout,
                header_read_timeout: args.header_read_timeout,
                write_timeout: args.write_timeout,
                max_connections: args.max_connections,
            },
            pod,
            resource,
            database,
        })
    }

    /// Starts the PostgreSQL store's supervisor (migrations, then checks), when
    /// there is one. Needs a Tokio runtime: it runs in the background.
    pub fn start_database(&self) {
        if let Some(database) = &self.database {
            tracing::info!("users and items in PostgreSQL; migrating");
            tokio::spawn(database.clone().supervise());
        }
    }

    /// Starts the Kubernetes side (runtime ConfigMap watch, pod Events) when
    /// `--kube` asks for it. Needs a Tokio runtime: it runs in the background.
    pub fn start_cluster(&mut self, args: &ServeArgs) {
        if !args.kube.enabled() {
            return;
        }
        let config = KubeConfig {
            configmap: args.runtime_configmap.clone(),
            pod: self.pod.clone(),
        };
        tracing::info!(configmap = %config.configmap, "Kubernetes features on: watching runtime settings, publishing Events");
        self.events = cluster::start(
            config,
            self.state.settings.clone(),
            self.state.metrics.clone(),
        );
    }
}

/// `pulse_users` and `pulse_data_items` read the store at scrape time.
fn observe_store(metrics: &Metrics, store: Arc<dyn Store>) {
    let items = store.clone();
    metrics.observe_stored(
        move || store.counts().users as u64,
        move || items.counts().items as u64,
    );
}

//! What `pulse serve` is told: flags, their `PULSE_*` environment twins, and the
//! pod identity from the downward API. The bottom of the module graph: it
//! depends on no other Pulse module.
//!
//! Values are validated while parsing ([`rules`]), so a bad setting stops the
//! process at start with one line naming the flag and the accepted range.

pub mod rules;
pub mod ui;
pub mod urls;

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// The defaults of `pulse serve`, as clap shows them in `--help`. [`ServeArgs::default`]
/// parses the same text, so there is one definition of each.
pub(crate) mod defaults {
    /// `--addr`.
    pub const ADDR: &str = "0.0.0.0:8080";
    /// `--log-level`.
    pub const LOG_LEVEL: &str = "info";
    /// `--shutdown-delay`.
    pub const SHUTDOWN_DELAY: &str = "5s";
    /// `--shutdown-timeout`.
    pub const SHUTDOWN_TIMEOUT: &str = "10s";
    /// `--max-body-bytes`: 1 MiB.
    pub const MAX_BODY_BYTES: usize = 1024 * 1024;
    /// `--request-timeout`.
    pub const REQUEST_TIMEOUT: &str = "30s";
    /// `--max-store-bytes`: 8 MiB, far above what the demo traffic stores.
    pub const MAX_STORE_BYTES: usize = 8 * 1024 * 1024;
    /// `--max-concurrency`.
    pub const MAX_CONCURRENCY: usize = 1024;
    /// `--max-connections`: well under the usual open-file limits of a container
    /// (1048576) and far above what one replica serves well.
    pub const MAX_CONNECTIONS: usize = 10_000;
    /// `--header-read-timeout`.
    pub const HEADER_READ_TIMEOUT: &str = "30s";
    /// `--write-timeout`.
    pub const WRITE_TIMEOUT: &str = "30s";
    /// `--fault-error-rate`.
    pub const FAULT_ERROR_RATE: f64 = 0.0;
    /// `--fault-delay-max`.
    pub const FAULT_DELAY_MAX: &str = "0s";
    /// `--runtime-configmap`.
    pub const RUNTIME_CONFIGMAP: &str = "pulse-runtime";
    /// `--backend-timeout`: well under `--request-timeout`, so a slow backend is a 504, not a 503.
    pub const BACKEND_TIMEOUT: &str = "5s";
    /// `--backend-max-hops`.
    pub const BACKEND_MAX_HOPS: u32 = 5;
    /// `--database-pool-size`.
    pub const DATABASE_POOL_SIZE: u32 = 10;
    /// `--database-timeout`: well under `--request-timeout`, so a lost database is a
    /// quick 503 with `Retry-After`, not a request held for the whole timeout.
    pub const DATABASE_TIMEOUT: &str = "2s";
    /// `--cache-ttl`: what a reader may be served after a write whose invalidation
    /// was lost (Redis down at that moment), short enough to bound that staleness,
    /// long enough that a hot record is read from PostgreSQL about once per 30 s.
    pub const CACHE_TTL: &str = "30s";
    /// `--cache-timeout`: a healthy Redis answers in well under a millisecond; past
    /// this, the read goes to PostgreSQL instead of waiting.
    pub const CACHE_TIMEOUT: &str = "50ms";
    /// `--ui-color`.
    pub const UI_COLOR: &str = super::ui::DEFAULT_COLOR;
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for log pipelines).
    Json,
    /// Human-readable text.
    Text,
}

/// `--kube`: whether to use the Kubernetes API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KubeMode {
    /// On when running in a cluster (`KUBERNETES_SERVICE_HOST` is set).
    Auto,
    /// Always (in-cluster config or the kubeconfig).
    On,
    /// Never.
    Off,
}

impl KubeMode {
    /// Whether the API should be used in this environment.
    pub fn enabled(self) -> bool {
        match self {
            Self::On => true,
            Self::Off => false,
            Self::Auto => std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
        }
    }
}

/// Options of `pulse serve`.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PULSE_ADDR", default_value = defaults::ADDR)]
    pub addr: SocketAddr,

    /// Serve the admin routes (`/admin/*`, `/readyz/enable|disable`) only on this
    /// address, e.g. `0.0.0.0:8081`, so a NetworkPolicy can restrict them; unset,
    /// they share `--addr`.
    #[arg(long, env = "PULSE_ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,

    /// Log filter, as an `EnvFilter` directive (`info`, `pulse=debug,warn`).
    #[arg(long, env = "PULSE_LOG_LEVEL", default_value = defaults::LOG_LEVEL, value_parser = rules::log_level)]
    pub log_level: String,

    /// Log format.
    #[arg(long, env = "PULSE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// After SIGTERM, keep serving (while reporting not ready) this long, so
    /// endpoints and load balancers stop sending traffic before we stop accepting.
    #[arg(long, env = "PULSE_SHUTDOWN_DELAY", default_value = defaults::SHUTDOWN_DELAY, value_parser = rules::duration)]
    pub shutdown_delay: Duration,

    /// Then wait at most this long for in-flight requests to finish.
    #[arg(long, env = "PULSE_SHUTDOWN_TIMEOUT", default_value = defaults::SHUTDOWN_TIMEOUT, value_parser = rules::duration)]
    pub shutdown_timeout: Duration,

    /// Largest request body accepted, in bytes (1..=1073741824); larger gets 413.
    #[arg(long, env = "PULSE_MAX_BODY_BYTES", default_value_t = defaults::MAX_BODY_BYTES,
          value_parser = rules::bytes)]
    pub max_body_bytes: usize,

    /// Longest a request may take before it is answered 503 (greater than 0).
    #[arg(long, env = "PULSE_REQUEST_TIMEOUT", default_value = defaults::REQUEST_TIMEOUT, value_parser = rules::positive_duration)]
    pub request_timeout: Duration,

    /// Most bytes the users and items may take (1..=1073741824); a write past it
    /// gets 507 and changes nothing. 0: no limit and no size accounting, with
    /// PostgreSQL only (a database with a quota of its own).
    #[arg(long, env = "PULSE_MAX_STORE_BYTES", default_value_t = defaults::MAX_STORE_BYTES,
          value_parser = rules::store_bytes)]
    pub max_store_bytes: usize,

    /// API requests served at once (1..=1000000); beyond it a request is
    /// answered 503 with `Retry-After` at once instead of queueing.
    #[arg(long, env = "PULSE_MAX_CONCURRENCY", default_value_t = defaults::MAX_CONCURRENCY,
          value_parser = rules::concurrency)]
    pub max_concurrency: usize,

    /// TCP connections open at once, on all listeners (1..=1000000); past it a new
    /// connection is closed as soon as it is accepted (counted in
    /// `pulse_connections_rejected_total`).
    #[arg(long, env = "PULSE_MAX_CONNECTIONS", default_value_t = defaults::MAX_CONNECTIONS,
          value_parser = rules::connections)]
    pub max_connections: usize,

    /// Close a connection whose request head is not complete this long after
    /// it opened or after its last response (slowloris; also the idle keep-alive timeout).
    #[arg(long, env = "PULSE_HEADER_READ_TIMEOUT", default_value = defaults::HEADER_READ_TIMEOUT, value_parser = rules::positive_duration)]
    pub header_read_timeout: Duration,

    /// Close a connection whose response write makes no progress this long: a
    /// client that stops reading (slow read) cannot hold a connection forever.
    #[arg(long, env = "PULSE_WRITE_TIMEOUT", default_value = defaults::WRITE_TIMEOUT, value_parser = rules::positive_duration)]
    pub write_timeout: Duration,

    /// Fraction of API requests answered with an injected 500 (0..=1).
    #[arg(long, env = "PULSE_FAULT_ERROR_RATE", default_value_t = defaults::FAULT_ERROR_RATE, value_parser = rules::rate)]
    pub fault_error_rate: f64,

    /// Add a random delay of up to this much to API requests (0s disables; at most 60s).
    #[arg(long, env = "PULSE_FAULT_DELAY_MAX", default_value = defaults::FAULT_DELAY_MAX, value_parser = rules::fault_delay)]
    pub fault_delay_max: Duration,

    /// Also record probes, `/metrics` and `/stats` in the `http_*` and `app_requests_total` series.
    #[arg(long, env = "PULSE_INSTRUMENT_PROBES", default_value_t = false)]
    pub instrument_probes: bool,

    /// Use the Kubernetes API (runtime ConfigMap, Events): auto = when in a cluster.
    #[arg(long, env = "PULSE_KUBE", value_enum, default_value_t = KubeMode::Auto)]
    pub kube: KubeMode,

    /// Benchmarks only: serve without the per-request telemetry layer, to measure its cost.
    #[arg(long, hide = true, default_value_t = false)]
    pub disable_http_telemetry: bool,

    /// Name of the ConfigMap holding runtime settings (in the pod's namespace).
    #[arg(long, env = "PULSE_RUNTIME_CONFIGMAP", default_value = defaults::RUNTIME_CONFIGMAP)]
    pub runtime_configmap: String,

    /// Base URL of the downstream Pulse `GET /api/backend` calls (`http://host[:port]`);
    /// unset, that route answers itself, as the end of a chain.
    #[arg(long, env = "PULSE_BACKEND_URL", value_parser = rules::backend_url)]
    pub backend_url: Option<rules::BackendUrl>,

    /// Longest a call to the backend may take, answer included; longer gets 504.
    #[arg(long, env = "PULSE_BACKEND_TIMEOUT", default_value = defaults::BACKEND_TIMEOUT, value_parser = rules::positive_duration)]
    pub backend_timeout: Duration,

    /// Longest chain of `GET /api/backend` calls (1..=32): deeper gets 508, so a
    /// backend URL pointing back at a caller cannot recurse forever.
    #[arg(long, env = "PULSE_BACKEND_MAX_HOPS", default_value_t = defaults::BACKEND_MAX_HOPS, value_parser = rules::hops)]
    pub backend_max_hops: u32,

    /// PostgreSQL URL (`postgres://user:password@host:port/db`) for users and items,
    /// shared by every replica; unset (and no `DATABASE_URL`), they live in memory.
    #[arg(long, env = "PULSE_DATABASE_URL", value_parser = urls::database_url, hide_env_values = true)]
    pub database_url: Option<urls::DatabaseUrl>,

    /// Most connections to the database at once (1..=1000).
    #[arg(long, env = "PULSE_DATABASE_POOL_SIZE", default_value_t = defaults::DATABASE_POOL_SIZE, value_parser = rules::pool_size)]
    pub database_pool_size: u32,

    /// Longest a store operation may wait for the database, a free connection
    /// included; longer gets 503 with `Retry-After`.
    #[arg(long, env = "PULSE_DATABASE_TIMEOUT", default_value = defaults::DATABASE_TIMEOUT, value_parser = rules::positive_duration)]
    pub database_timeout: Duration,

    /// Redis URL (`redis://[:password@]host[:port][/db]`) of a read-through cache in
    /// front of PostgreSQL (needs `--database-url`); unset, every read goes to the
    /// database. Shared by every replica: a write invalidates before it is answered.
    #[arg(long, env = "PULSE_REDIS_URL", value_parser = urls::redis_url, hide_env_values = true)]
    pub redis_url: Option<urls::RedisUrl>,

    /// How long a cached record or list lives (greater than 0): the longest a read
    /// can be served an old value after a write whose invalidation failed (Redis
    /// unreachable at that moment). 30s bounds that staleness and still spares
    /// PostgreSQL all but one read per hot record per 30s.
    #[arg(long, env = "PULSE_CACHE_TTL", default_value = defaults::CACHE_TTL, value_parser = rules::positive_duration)]
    pub cache_ttl: Duration,

    /// Longest one Redis command may take (greater than 0); past it a read falls
    /// through to PostgreSQL and a write's invalidation is counted as failed.
    #[arg(long, env = "PULSE_CACHE_TIMEOUT", default_value = defaults::CACHE_TIMEOUT, value_parser = rules::positive_duration)]
    pub cache_timeout: Duration,

    /// Colour of the page `GET /` answers a browser: `#rgb`, `#rrggbb` or a name
    /// (black, blue, gray, green, orange, pink, purple, red, teal, white, yellow),
    /// so that two versions can be told apart during a rollout.
    #[arg(long, env = "PULSE_UI_COLOR", default_value = defaults::UI_COLOR, value_parser = ui::ui_color)]
    pub ui_color: ui::UiColor,

    /// A line of text on that page (at most 200 characters), e.g. `canary v2`;
    /// shown as text, never as HTML.
    #[arg(long, env = "PULSE_UI_MESSAGE", value_parser = ui::ui_message)]
    pub ui_message: Option<ui::UiMessage>,
}

impl ServeArgs {
    /// What the page `GET /` answers a browser shows besides the identity.
    pub fn ui(&self) -> ui::UiSettings {
        ui::UiSettings {
            color: self.ui_color.clone(),
            message: self.ui_message.clone(),
        }
    }

    /// The database to use: `--database-url` (`PULSE_DATABASE_URL`), else the
    /// standard `DATABASE_URL`, else none (the in-memory store).
    pub fn database(&self) -> Result<Option<urls::DatabaseUrl>, rules::RuleError> {
        match &self.database_url {
            Some(url) => Ok(Some(url.clone())),
            None => match std::env::var("DATABASE_URL") {
                Ok(url) if !url.is_empty() => urls::database_url(&url).map(Some),
                _ => Ok(None),
            },
        }
    }
}

impl Default for ServeArgs {
    /// The command line's defaults, whatever the environment says (for tests,
    /// benchmarks and library use).
    fn default() -> Self {
        // The defaults are constants: a typo in one is a bug to stop at, never a
        // silent 0s (`defaults_match_the_contract` parses every one of them).
        let duration =
            |text: &str| rules::duration(text).expect("the default durations are valid durations");
        Self {
            addr: defaults::ADDR
                .parse()
                .expect("the default address is a socket address"),
            admin_addr: None,
            log_level: defaults::LOG_LEVEL.to_owned(),
            log_format: LogFormat::Json,
            shutdown_delay: duration(defaults::SHUTDOWN_DELAY),
            shutdown_timeout: duration(defaults::SHUTDOWN_TIMEOUT),
            max_body_bytes: defaults::MAX_BODY_BYTES,
            request_timeout: duration(defaults::REQUEST_TIMEOUT),
            max_store_bytes: defaults::MAX_STORE_BYTES,
            max_concurrency: defaults::MAX_CONCURRENCY,
            max_connections: defaults::MAX_CONNECTIONS,
            header_read_timeout: duration(defaults::HEADER_READ_TIMEOUT),
            write_timeout: duration(defaults::WRITE_TIMEOUT),
            fault_error_rate: defaults::FAULT_ERROR_RATE,
            fault_delay_max: duration(defaults::FAULT_DELAY_MAX),
            instrument_probes: false,
            kube: KubeMode::Auto,
            disable_http_telemetry: false,
            runtime_configmap: defaults::RUNTIME_CONFIGMAP.to_owned(),
            backend_url: None,
            backend_timeout: duration(defaults::BACKEND_TIMEOUT),
            backend_max_hops: defaults::BACKEND_MAX_HOPS,
            database_url: None,
            database_pool_size: defaults::DATABASE_POOL_SIZE,
            database_timeout: duration(defaults::DATABASE_TIMEOUT),
            redis_url: None,
            cache_ttl: duration(defaults::CACHE_TTL),
            cache_timeout: duration(defaults::CACHE_TIMEOUT),
            ui_color: ui::UiSettings::default().color,
            ui_message: None,
        }
    }
}

/// Who this process is in Kubernetes, from the downward-API variables
/// (`POD_NAME`, `POD_NAMESPACE`, `NODE_NAME`, `POD_UID`); read once, at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodIdentity {
    /// `POD_NAME`.
    pub name: Option<String>,
    /// `POD_NAMESPACE`.
    pub namespace: Option<String>,
    /// `NODE_NAME`.
    pub node: Option<String>,
    /// `POD_UID`.
    pub uid: Option<String>,
}

impl PodIdentity {
    /// Reads the downward-API variables; empty values count as unset.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            name: var("POD_NAME"),
            namespace: var("POD_NAMESPACE"),
            node: var("NODE_NAME"),
            uid: var("POD_UID"),
        }
    }
}

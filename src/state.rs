//! State shared by every handler.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::BuildInfo;
use crate::readiness::Readiness;
use crate::settings::LiveSettings;
use crate::store::Store;
use crate::telemetry::Metrics;

/// Who and where this process is: the answer of `GET /`.
#[derive(Debug, Clone)]
pub struct ServiceInfo {
    /// The resource's `service.name`: `OTEL_SERVICE_NAME`, default `pulse`.
    pub name: String,
    /// Version and revision of the binary.
    pub build: BuildInfo,
    /// The machine's (or pod's) hostname.
    pub hostname: String,
    /// `POD_NAME` from the downward API, when set.
    pub pod: Option<String>,
    /// `POD_NAMESPACE`, when set.
    pub namespace: Option<String>,
    /// `NODE_NAME`, when set.
    pub node: Option<String>,
    /// Wall-clock start, for display.
    pub started_at: SystemTime,
    /// Monotonic start, for uptime.
    pub started: Instant,
}

impl ServiceInfo {
    /// Reads the process identity from the environment; `name` is the
    /// service name the telemetry resource uses, so both always agree.
    pub fn from_env(name: String, build: BuildInfo, started: Instant) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            name,
            build,
            hostname: gethostname::gethostname().to_string_lossy().into_owned(),
            pod: var("POD_NAME"),
            namespace: var("POD_NAMESPACE"),
            node: var("NODE_NAME"),
            started_at: SystemTime::now() - started.elapsed(),
            started,
        }
    }
}

/// Everything a handler may need; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Users and key-value items.
    pub store: Arc<dyn Store>,
    /// Instruments and the `/metrics` registry.
    pub metrics: Arc<Metrics>,
    /// What `/readyz` answers.
    pub readiness: Arc<Readiness>,
    /// Identity shown by `/`, `/version` and `/health`.
    pub info: Arc<ServiceInfo>,
    /// Log filter, faults and forced unreadiness, changeable at run time.
    pub settings: Arc<LiveSettings>,
}

impl AppState {
    /// Why the service should not receive traffic, or `None` when it should.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        self.readiness.get().not_ready_reason().or_else(|| {
            self.settings
                .force_unready()
                .then_some("forced unready by runtime settings")
        })
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("readiness", &self.readiness.get())
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

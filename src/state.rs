//! State shared by every handler.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde::Serialize;
use utoipa::ToSchema;

use crate::BuildInfo;
use crate::backend::Backend;
use crate::config::PodIdentity;
use crate::config::ui::UiSettings;
use crate::readiness::{NotReady, Readiness};
use crate::settings::LiveSettings;
use crate::store::Store;
use crate::telemetry::Metrics;

/// Who and where this process is, as `GET /` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServiceInfo {
    /// The resource's `service.name`: `OTEL_SERVICE_NAME`, default `pulse`.
    #[schema(example = "pulse")]
    pub name: String,
    /// Version and revision of the binary.
    #[serde(flatten)]
    pub build: BuildInfo,
    /// The machine's (or pod's) hostname.
    pub hostname: String,
    /// `POD_NAME` from the downward API, when set.
    pub pod: Option<String>,
    /// `POD_NAMESPACE`, when set.
    pub namespace: Option<String>,
    /// `NODE_NAME`, when set.
    pub node: Option<String>,
    /// Wall-clock start (RFC 3339).
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, example = "2026-11-25T20:00:00Z")]
    pub started_at: SystemTime,
    /// Monotonic start, for uptime.
    #[serde(skip)]
    pub started: Instant,
    /// The colour and message of the page `GET /` answers a browser. Here rather
    /// than a field of [`AppState`] of its own: every handler's state is a clone of
    /// `AppState`, and one more `Arc` would be one more atomic count per request.
    #[serde(skip)]
    pub ui: UiSettings,
}

fn rfc3339<S: serde::Serializer>(at: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_seconds(*at))
}

impl ServiceInfo {
    /// This process: `name` is the service name the telemetry resource uses, so
    /// both always agree.
    pub fn new(
        name: String,
        build: BuildInfo,
        pod: &PodIdentity,
        started: Instant,
        ui: UiSettings,
    ) -> Self {
        Self {
            name,
            build,
            hostname: gethostname::gethostname().to_string_lossy().into_owned(),
            pod: pod.name.clone(),
            namespace: pod.namespace.clone(),
            node: pod.node.clone(),
            started_at: SystemTime::now() - started.elapsed(),
            started,
            ui,
        }
    }
}

/// Everything a handler may need, behind one `Arc` ([`Parts`]): cheap to clone.
///
/// axum clones the state for every request that extracts it. One reference count
/// is one atomic increment and decrement per request; six `Arc` fields were six of
/// each, on cache lines every worker thread writes, which at saturation cost more
/// than their instruction count says (docs/performance.md). Assembled by
/// [`crate::app::App`].
#[derive(Clone)]
pub struct AppState(Arc<Parts>);

/// The parts of [`AppState`], reached through it (`state.store`).
pub struct Parts {
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
    /// The downstream Pulse of `GET /api/backend`, if any.
    pub backend: Arc<Backend>,
}

impl std::ops::Deref for AppState {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.0
    }
}

impl From<Parts> for AppState {
    fn from(parts: Parts) -> Self {
        Self(Arc::new(parts))
    }
}

impl AppState {
    /// Why the service should not receive traffic, or `None` when it should.
    pub fn not_ready_reason(&self) -> Option<NotReady> {
        self.readiness
            .get()
            .not_ready_reason()
            .or_else(|| self.store.unavailable())
            .or_else(|| {
                self.settings
                    .force_unready()
                    .then_some(NotReady::ForcedUnready)
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

//! `GET /` and `GET /version`: who is answering.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::BuildInfo;
use crate::settings::RuntimeSettings;
use crate::state::{AppState, ServiceInfo};

/// Service identity, as `GET /` returns it: the process's identity plus what
/// changes while it runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceInfoBody {
    /// Name, version, host and pod.
    #[serde(flatten)]
    pub info: ServiceInfo,
    /// Seconds since start.
    pub uptime_seconds: f64,
    /// The runtime settings in force.
    pub runtime: RuntimeSettings,
}

/// Service information.
#[utoipa::path(get, path = "/", tag = "info",
    responses((status = 200, description = "Service identity", body = ServiceInfoBody)))]
pub async fn root(State(state): State<AppState>) -> Json<ServiceInfoBody> {
    Json(ServiceInfoBody {
        info: (*state.info).clone(),
        uptime_seconds: state.info.started.elapsed().as_secs_f64(),
        runtime: (*state.settings.current()).clone(),
    })
}

/// Version of the running binary.
#[utoipa::path(get, path = "/version", tag = "info",
    responses((status = 200, description = "Version and revision", body = BuildInfo)))]
pub async fn version(State(state): State<AppState>) -> Json<BuildInfo> {
    Json(state.info.build)
}

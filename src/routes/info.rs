//! `GET /` and `GET /version`: who is answering.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// Service identity, as `GET /` returns it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceInfoBody {
    /// Service name (`OTEL_SERVICE_NAME`).
    #[schema(example = "pulse")]
    pub name: String,
    /// Crate version.
    #[schema(example = "0.1.0")]
    pub version: String,
    /// Source revision the binary was built from.
    pub revision: String,
    /// Hostname (the pod name in Kubernetes).
    pub hostname: String,
    /// Pod name from the downward API.
    pub pod: Option<String>,
    /// Namespace from the downward API.
    pub namespace: Option<String>,
    /// Node name from the downward API.
    pub node: Option<String>,
    /// RFC 3339 start time.
    #[schema(example = "2026-11-25T20:00:00Z")]
    pub started_at: String,
    /// Seconds since start.
    pub uptime_seconds: f64,
    /// The runtime settings in force.
    pub runtime: crate::settings::RuntimeSettings,
}

/// Version and revision of the running binary.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionBody {
    /// Crate version.
    #[schema(example = "0.1.0")]
    pub version: String,
    /// Source revision.
    #[schema(example = "3f2c1a9b7d10")]
    pub revision: String,
}

/// Service information.
#[utoipa::path(get, path = "/", tag = "info",
    responses((status = 200, description = "Service identity", body = ServiceInfoBody)))]
pub async fn root(State(state): State<AppState>) -> Json<ServiceInfoBody> {
    let info = &state.info;
    Json(ServiceInfoBody {
        name: info.name.clone(),
        version: info.build.version.to_owned(),
        revision: info.build.revision.to_owned(),
        hostname: info.hostname.clone(),
        pod: info.pod.clone(),
        namespace: info.namespace.clone(),
        node: info.node.clone(),
        started_at: humantime::format_rfc3339_seconds(info.started_at).to_string(),
        uptime_seconds: info.started.elapsed().as_secs_f64(),
        runtime: (*state.settings.current()).clone(),
    })
}

/// Version of the running binary.
#[utoipa::path(get, path = "/version", tag = "info",
    responses((status = 200, description = "Version and revision", body = VersionBody)))]
pub async fn version(State(state): State<AppState>) -> Json<VersionBody> {
    Json(VersionBody {
        version: state.info.build.version.to_owned(),
        revision: state.info.build.revision.to_owned(),
    })
}

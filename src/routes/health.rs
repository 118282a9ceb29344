//! Probes: liveness, readiness (with run-time toggles) and detailed health.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::process::ProcessStats;
use crate::readiness::{NotReady, ReadyState};
use crate::state::AppState;

/// Liveness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveBody {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Readiness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyBody {
    /// `ready` or `not ready`.
    #[schema(example = "not ready")]
    pub status: &'static str,
    /// Why not (absent when ready).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "shutting down", nullable = false)]
    pub reason: Option<NotReady>,
}

impl ReadyBody {
    fn from_state(state: ReadyState) -> Self {
        Self::from_reason(state.not_ready_reason())
    }

    fn from_reason(reason: Option<NotReady>) -> Self {
        Self {
            status: if reason.is_none() {
                "ready"
            } else {
                "not ready"
            },
            reason,
        }
    }
}

/// The results of the individual health checks.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthChecks {
    /// `ready`, or the reason the service is not ready.
    pub readiness: ReadinessCheck,
}

/// `ready`, or why not.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ReadinessCheck {
    /// Ready.
    Ready(Ready),
    /// Not ready, and why.
    NotReady(NotReady),
}

/// The word `ready`.
#[derive(Debug, Serialize, ToSchema)]
pub enum Ready {
    /// Ready.
    #[serde(rename = "ready")]
    Ready,
}

impl From<Option<NotReady>> for ReadinessCheck {
    fn from(reason: Option<NotReady>) -> Self {
        reason.map_or(Self::Ready(Ready::Ready), Self::NotReady)
    }
}

/// Detailed health: status, version, uptime, checks and process figures.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthBody {
    /// `healthy` while the process serves (a lost database shows in `checks.readiness`).
    #[schema(example = "healthy")]
    pub status: &'static str,
    /// Crate version.
    pub version: &'static str,
    /// Seconds since start.
    pub uptime_seconds: f64,
    /// Individual checks.
    pub checks: HealthChecks,
    /// Resource use of this process.
    pub process: ProcessStats,
}

/// Liveness: the process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive", body = LiveBody)))]
pub async fn healthz() -> Json<LiveBody> {
    Json(LiveBody { status: "ok" })
}

/// Liveness (the `/health/*` spelling of `/healthz`).
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "Alive", body = LiveBody)))]
pub async fn health_live() -> Json<LiveBody> {
    healthz().await
}

/// Readiness: 200 when the service should receive traffic.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Ready", body = ReadyBody),
    (status = 503, description = "Not ready: the reason says why", body = ReadyBody)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let reason = state.not_ready_reason();
    let status = match reason {
        None => StatusCode::OK,
        Some(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, Json(ReadyBody::from_reason(reason))).into_response()
}

/// Readiness (the `/health/*` spelling of `/readyz`).
#[utoipa::path(get, path = "/health/ready", tag = "health", responses(
    (status = 200, description = "Ready", body = ReadyBody),
    (status = 503, description = "Not ready: the reason says why", body = ReadyBody)))]
pub async fn health_ready(state: State<AppState>) -> Response {
    readyz(state).await
}

/// Puts the service back in rotation (no effect while shutting down).
#[utoipa::path(post, path = "/readyz/enable", tag = "health",
    responses((status = 202, description = "Readiness after the change", body = ReadyBody)))]
pub async fn enable(State(state): State<AppState>) -> (StatusCode, Json<ReadyBody>) {
    let now = state.readiness.set_ready();
    tracing::info!(state = ?now, "readiness enabled");
    (StatusCode::ACCEPTED, Json(ReadyBody::from_state(now)))
}

/// Takes the service out of rotation; liveness is unaffected.
#[utoipa::path(post, path = "/readyz/disable", tag = "health",
    responses((status = 202, description = "Readiness after the change", body = ReadyBody)))]
pub async fn disable(State(state): State<AppState>) -> (StatusCode, Json<ReadyBody>) {
    let now = state.readiness.disable();
    tracing::info!(state = ?now, "readiness disabled");
    (StatusCode::ACCEPTED, Json(ReadyBody::from_state(now)))
}

/// Detailed health: checks plus process figures.
#[utoipa::path(get, path = "/health", tag = "health", responses(
    (status = 200, description = "Healthy", body = HealthBody)))]
pub async fn health(State(state): State<AppState>) -> Json<HealthBody> {
    Json(HealthBody {
        status: "healthy",
        version: state.info.build.version,
        uptime_seconds: state.info.started.elapsed().as_secs_f64(),
        checks: HealthChecks {
            readiness: state.not_ready_reason().into(),
        },
        process: ProcessStats::read(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_openapi_document_lists_every_readiness_reason() {
        let doc = serde_json::to_value(crate::routes::openapi()).unwrap();
        let reasons = &doc["components"]["schemas"]["NotReady"]["enum"];
        let mut listed: Vec<&str> = reasons
            .as_array()
            .unwrap_or_else(|| panic!("NotReady is an enum in the document: {reasons}"))
            .iter()
            .filter_map(|r| r.as_str())
            .collect();
        listed.sort_unstable();
        assert_eq!(
            listed,
            [
                "database unavailable",
                "disabled",
                "forced unready by runtime settings",
                "shutting down",
                "starting"
            ]
        );
    }
}

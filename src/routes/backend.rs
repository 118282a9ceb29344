//! `GET /api/backend`: a request that crosses services. Pulse calls the Pulse
//! `--backend-url` names, which may call its own backend, and so on; the last one
//! answers itself. One trace spans them all (see [`crate::backend`]).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Serialize;
use utoipa::ToSchema;

use crate::backend::{BackendError, HOP_HEADER};
use crate::config::rules::MAX_HOPS;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// Who answered at one hop of the chain, and what the rest of the chain answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackendReply {
    /// This Pulse's `service.name`.
    #[schema(example = "pulse")]
    pub service: String,
    /// This Pulse's pod (`POD_NAME`), or its hostname outside Kubernetes.
    #[schema(example = "pulse-7d9c6b5f4-x2x8q")]
    pub pod: String,
    /// How many Pulses the request crossed before this one (0: the first).
    #[schema(example = 0)]
    pub hop: u32,
    /// The backend's answer (the same shape, one hop further), or null where no
    /// backend is configured: the end of the chain.
    #[schema(value_type = Option<Object>)]
    pub backend: Option<Box<serde_json::value::RawValue>>,
}

/// Call the backend (`--backend-url`) and answer with its answer; without a
/// backend, answer as the end of the chain.
#[utoipa::path(get, path = "/api/backend", operation_id = "call_backend", tag = "demo",
    // maximum: rules::MAX_HOPS (a literal here; tests/integration/backend.rs compares them).
    params(("x-pulse-hop" = Option<u32>, Header, nullable = false, minimum = 0, maximum = 32,
        description = "Pulses crossed so far; set by a calling Pulse, absent from a client")),
    responses(
        (status = 200, description = "This Pulse and, nested, the rest of the chain", body = BackendReply),
        (status = 400, description = "`x-pulse-hop` is not an integer from 0 to 32", body = ErrorBody),
        (status = 502, description = "The backend is unreachable, answered an error or a redirect (not followed), or answered something that is not JSON (`Retry-After: 1`)", body = ErrorBody),
        (status = 504, description = "The backend did not answer within `--backend-timeout` (`Retry-After: 1`)", body = ErrorBody),
        (status = 508, description = "The chain is `--backend-max-hops` deep: a backend URL points back at a caller", body = ErrorBody)))]
pub async fn call(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<BackendReply>, ApiError> {
    let hop = match headers.get(HOP_HEADER) {
        None => 0,
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|hop| *hop <= MAX_HOPS)
            .ok_or_else(|| {
                ApiError::invalid(
                    "x-pulse-hop",
                    format!("x-pulse-hop must be an integer from 0 to {MAX_HOPS}"),
                )
            })?,
    };
    let backend = &state.backend;
    if hop >= backend.max_hops {
        return Err(ApiError::LoopDetected(backend.max_hops));
    }
    let answer = backend.call(hop + 1, &state.metrics).await.map_err(|err| {
        tracing::warn!(error = %err, "backend call failed");
        match err {
            BackendError::Timeout(limit) => ApiError::GatewayTimeout(limit),
            BackendError::HopLimit => ApiError::LoopDetected(backend.max_hops),
            other => ApiError::BadGateway(other.public_message().into()),
        }
    })?;
    let info = &state.info;
    Ok(Json(BackendReply {
        service: info.name.clone(),
        pod: info.pod.clone().unwrap_or_else(|| info.hostname.clone()),
        hop,
        backend: answer,
    }))
}

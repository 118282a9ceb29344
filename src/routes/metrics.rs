//! `GET /metrics`: the Prometheus exposition, in the format the scraper asks for.

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;

use crate::error::ApiError;
use crate::state::AppState;
use crate::telemetry::metrics::CONTENT_TYPE;
use crate::telemetry::openmetrics::{self, Format};

/// The metrics: OpenMetrics 1.0.0 with exemplars when `Accept` asks for it (as
/// Prometheus does), the Prometheus text format 0.0.4 otherwise.
#[utoipa::path(get, path = "/metrics", tag = "telemetry", responses(
    (status = 200, description = "Prometheus text format 0.0.4, or OpenMetrics 1.0.0 (with \
     exemplars on http_request_duration_seconds) when Accept asks for application/openmetrics-text",
     content(
        (String = "text/plain; version=0.0.4; charset=utf-8"),
        (String = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
    ))))]
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let answer = match openmetrics::negotiate(accept) {
        Format::OpenMetrics => (
            openmetrics::CONTENT_TYPE,
            state.metrics.encode_openmetrics(),
        ),
        Format::Text => (
            CONTENT_TYPE,
            state
                .metrics
                .encode()
                .map_err(|e| ApiError::Internal(e.to_string()))?,
        ),
    };
    Ok((
        [
            (header::CONTENT_TYPE, answer.0),
            // Caches between Pulse and a scraper must keep the two formats apart.
            (header::VARY, "accept"),
        ],
        answer.1,
    ))
}

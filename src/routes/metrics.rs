//! `GET /metrics`: the Prometheus exposition, in the format the scraper asks for.

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;

use crate::error::ApiError;
use crate::state::AppState;
use crate::telemetry::format::{self, Format};
use crate::telemetry::metrics::CONTENT_TYPE;
use crate::telemetry::{openmetrics, protobuf};

/// The metrics: the Prometheus protobuf exposition with native histograms when
/// `Accept` prefers it (as Prometheus does with native histograms on), OpenMetrics
/// 1.0.0 with exemplars when it prefers that (as Prometheus does by default), the
/// Prometheus text format 0.0.4 otherwise.
#[utoipa::path(get, path = "/metrics", tag = "telemetry", responses(
    (status = 200, description = "Prometheus text format 0.0.4, or OpenMetrics 1.0.0 (with \
     exemplars on http_request_duration_seconds) when Accept asks for application/openmetrics-text, \
     or delimited io.prometheus.client.MetricFamily protobuf messages (native histograms beside the \
     classic buckets of the latency histograms) when Accept prefers application/vnd.google.protobuf",
     content(
        (String = "text/plain; version=0.0.4; charset=utf-8"),
        (String = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (Vec<u8> = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"),
    ))))]
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = format::negotiate(accept);
    let metrics = state.metrics.clone();
    // Encoding walks every series (about 5 ms at 10,000, `make bench`): on tokio's
    // blocking pool, so a scrape never holds one of the few request workers (two
    // on a 2-core pod) while requests queue behind it.
    let answer = tokio::task::spawn_blocking(move || match format {
        Format::Protobuf => Ok((protobuf::CONTENT_TYPE, metrics.encode_protobuf())),
        Format::OpenMetrics => Ok((openmetrics::CONTENT_TYPE, metrics.encode_openmetrics())),
        Format::Text => metrics.encode().map(|body| (CONTENT_TYPE, body)),
    })
    .await
    .map_err(|e| ApiError::Internal(format!("encoding /metrics: {e}")))?
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        [
            (header::CONTENT_TYPE, answer.0),
            // Caches between Pulse and a scraper must keep the two formats apart.
            (header::VARY, "accept"),
        ],
        answer.1,
    ))
}

//! `GET /`, `GET /version` and `GET /stats`: who is answering, and how busy it is.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::page;
use crate::BuildInfo;
use crate::error::ApiError;
use crate::settings::RuntimeSettings;
use crate::state::{AppState, ServiceInfo};
use crate::telemetry::metrics::RequestTotals;

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

/// Service information: JSON, or the page for people when `Accept` prefers HTML
/// (a browser's does; curl's `*/*` does not).
#[utoipa::path(get, path = "/", tag = "info",
    responses((status = 200,
        description = "Service identity in JSON; a self-contained HTML page (version, pod, node, \
                       uptime, live request rate and errors, `--ui-color`, `--ui-message`) when \
                       `Accept` prefers `text/html` by its q-values. Either answer has `Vary: Accept`",
        content(
            (ServiceInfoBody = "application/json"),
            (String = "text/html"),
        ),
        headers(("Vary" = String, description = "`Accept`: the same URL answers two media types")))))]
pub async fn root(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if page::wants_html(&headers) {
        let totals = request_totals(&state).await?;
        // Read after the totals: the page's script divides later deltas by it.
        let uptime_seconds = state.info.started.elapsed().as_secs_f64();
        let nonce = page::nonce();
        let html = page::render(&state.info, uptime_seconds, totals, &nonce);
        return Ok(page::answer(html, &nonce));
    }
    let body = ServiceInfoBody {
        info: (*state.info).clone(),
        uptime_seconds: state.info.started.elapsed().as_secs_f64(),
        runtime: (*state.settings.current()).clone(),
    };
    Ok((
        [(header::VARY, HeaderValue::from_static("accept"))],
        Json(body),
    )
        .into_response())
}

/// Version of the running binary.
#[utoipa::path(get, path = "/version", tag = "info",
    responses((status = 200, description = "Version and revision", body = BuildInfo)))]
pub async fn version(State(state): State<AppState>) -> Json<BuildInfo> {
    Json(state.info.build)
}

/// This process's request counters, as the page at `/` polls them.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsBody {
    /// The machine's (or pod's) hostname: with `started_at`, which process answered.
    pub hostname: String,
    /// Wall-clock start (RFC 3339).
    #[schema(example = "2026-11-25T20:00:00Z")]
    pub started_at: String,
    /// Seconds since start: the clock to divide counter deltas by.
    pub uptime_seconds: f64,
    /// The sums of `http_requests_total`.
    #[serde(flatten)]
    pub totals: RequestTotals,
}

/// The request counters of this process, summed from `http_requests_total`: what
/// the page at `/` polls every 2 s to show a live rate. Like the probes and
/// `/metrics`, not itself counted (unless `--instrument-probes`), so an open page
/// does not show its own polls.
#[utoipa::path(get, path = "/stats", tag = "info",
    responses((status = 200, description = "Request totals and uptime", body = StatsBody)))]
pub async fn stats(State(state): State<AppState>) -> Result<Json<StatsBody>, ApiError> {
    let totals = request_totals(&state).await?;
    Ok(Json(StatsBody {
        hostname: state.info.hostname.clone(),
        started_at: humantime::format_rfc3339_seconds(state.info.started_at).to_string(),
        uptime_seconds: state.info.started.elapsed().as_secs_f64(),
        totals,
    }))
}

/// The totals now. Gathering walks every series, as a scrape does: on tokio's
/// blocking pool, like `/metrics`, so it never holds a request worker.
async fn request_totals(state: &AppState) -> Result<RequestTotals, ApiError> {
    let metrics = state.metrics.clone();
    tokio::task::spawn_blocking(move || metrics.request_totals())
        .await
        .map_err(|e| ApiError::Internal(format!("reading the request counters: {e}")))
}

//! Demo workload endpoints: slow, failing, delayed, arbitrary-status, items, echo.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Query, RawBody};

/// Longest `/delay/{seconds}` accepted.
pub const MAX_DELAY_SECONDS: f64 = 10.0;

/// How long a delayed endpoint waited.
#[derive(Debug, Serialize, ToSchema)]
pub struct DelayBody {
    /// Seconds waited.
    #[schema(example = 2.5)]
    pub delay_seconds: f64,
}

/// The answer of `/status/{code}`. For a 4xx or 5xx it is also an error body
/// (`error` is the reason phrase), so it reads like every other error answer and
/// like what the layers answer with the same status (a timeout's 503, say).
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusBody {
    /// The status answered.
    #[schema(example = 418)]
    pub status: u16,
    /// The reason phrase, for a 4xx or 5xx.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "I'm a teapot")]
    pub error: Option<&'static str>,
}

/// Query of `/items/{item_id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ItemQuery {
    /// Free-text query, echoed back.
    pub q: Option<String>,
}

/// The `{item_id}` path parameter, named so errors carry `"field": "item_id"`.
#[derive(Debug, Deserialize)]
pub struct ItemId {
    /// Integer id.
    pub item_id: i64,
}

/// The answer of `/items/{item_id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemBody {
    /// The id from the path.
    #[schema(example = 42)]
    pub item_id: i64,
    /// The `q` parameter, or null.
    #[schema(example = "test")]
    pub q: Option<String>,
}

/// Responds after a random 2–3 s.
#[utoipa::path(get, path = "/api/slow", operation_id = "slow", tag = "demo",
    responses((status = 200, description = "After 2 to 3 seconds", body = DelayBody)))]
pub async fn slow() -> Json<DelayBody> {
    let seconds = rand::rng().random_range(2.0..3.0);
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    Json(DelayBody {
        delay_seconds: seconds,
    })
}

/// Always fails with 500, counted as `api_errors_total{error_type="simulated"}`.
#[utoipa::path(get, path = "/api/error", operation_id = "simulate_error", tag = "demo",
    responses((status = 500, description = "Simulated failure", body = ErrorBody)))]
pub async fn error() -> ApiError {
    ApiError::Simulated
}

/// Responds after `seconds` (fractions allowed, at most 10).
#[utoipa::path(get, path = "/delay/{seconds}", tag = "demo",
    params(("seconds" = f64, Path, minimum = 0, maximum = 10, description = "0 to 10, fractions allowed")),
    responses(
        (status = 200, description = "After the delay", body = DelayBody),
        (status = 400, description = "Not a number from 0 to 10", body = ErrorBody)))]
pub async fn delay(Path(seconds): Path<String>) -> Result<Json<DelayBody>, ApiError> {
    let seconds = seconds
        .parse::<f64>()
        .ok()
        .filter(|s| (0.0..=MAX_DELAY_SECONDS).contains(s))
        .ok_or_else(|| ApiError::invalid("seconds", "seconds must be a number from 0 to 10"))?;
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    Ok(Json(DelayBody {
        delay_seconds: seconds,
    }))
}

/// Responds with the status `code`: a registered status from 200 to 599 (those
/// with a standard reason phrase; others get 400, so the route's series are bounded).
#[utoipa::path(get, path = "/status/{code}", tag = "demo",
    params(("code" = inline(ServedStatus), Path, description = "A registered HTTP status, 200 to 599")),
    responses(
        (status = "default", description = "The requested status", body = StatusBody),
        (status = 204, description = "No Content: no body"),
        (status = 205, description = "Reset Content: no body"),
        (status = 304, description = "Not Modified: no body"),
        (status = 400, description = "Not a registered status from 200 to 599", body = ErrorBody)))]
pub async fn status_get(code: Path<String>) -> Result<Response, ApiError> {
    status(code).await
}

/// Responds with the status `code`: a registered status from 200 to 599 (those
/// with a standard reason phrase; others get 400, so the route's series are bounded).
#[utoipa::path(post, path = "/status/{code}", tag = "demo",
    params(("code" = inline(ServedStatus), Path, description = "A registered HTTP status, 200 to 599")),
    responses(
        (status = "default", description = "The requested status", body = StatusBody),
        (status = 204, description = "No Content: no body"),
        (status = 205, description = "Reset Content: no body"),
        (status = 304, description = "Not Modified: no body"),
        (status = 400, description = "Not a registered status from 200 to 599", body = ErrorBody)))]
pub async fn status_post(code: Path<String>) -> Result<Response, ApiError> {
    status(code).await
}

/// Whether `/status/{code}` answers `status`: a final status (200 to 599) that
/// is registered (has a standard reason phrase), so that the codes a client can
/// ask for, and with them the `status` label values of this route, are a fixed
/// set of [`served_statuses`]`().count()` values.
pub fn is_served(status: StatusCode) -> bool {
    // A 1xx cannot end an HTTP exchange (hyper would turn it into a 500).
    !status.is_informational() && status.canonical_reason().is_some()
}

/// Every status `/status/{code}` answers.
pub fn served_statuses() -> impl Iterator<Item = StatusCode> {
    (200..=599)
        .filter_map(|code| StatusCode::from_u16(code).ok())
        .filter(|s| is_served(*s))
}

/// The schema of `{code}`: the [`served_statuses`], listed.
pub struct ServedStatus;

impl utoipa::PartialSchema for ServedStatus {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .enum_values(Some(served_statuses().map(|s| s.as_u16())))
            .into()
    }
}

impl ToSchema for ServedStatus {}

async fn status(Path(code): Path<String>) -> Result<Response, ApiError> {
    let status = code
        .parse::<u16>()
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
        .filter(|s| is_served(*s))
        .ok_or_else(|| {
            ApiError::invalid(
                "code",
                "code must be a registered HTTP status from 200 to 599 (e.g. 200, 404, 418, 503)",
            )
        })?;
    // 204, 205 and 304 responses carry no content (RFC 9110, 15.3.5, 15.3.6, 15.4.5).
    if matches!(
        status,
        StatusCode::NO_CONTENT | StatusCode::RESET_CONTENT | StatusCode::NOT_MODIFIED
    ) {
        return Ok(status.into_response());
    }
    Ok((
        status,
        Json(StatusBody {
            status: status.as_u16(),
            error: (status.is_client_error() || status.is_server_error())
                .then(|| status.canonical_reason())
                .flatten(),
        }),
    )
        .into_response())
}

/// Returns the item id and query.
#[utoipa::path(get, path = "/items/{item_id}", operation_id = "get_demo_item", tag = "demo",
    params(("item_id" = i64, Path, description = "Integer id"), ItemQuery),
    responses(
        (status = 200, description = "The item", body = ItemBody),
        (status = 400, description = "The id is not an integer", body = ErrorBody)))]
pub async fn item(
    Path(ItemId { item_id }): Path<ItemId>,
    Query(query): Query<ItemQuery>,
) -> Json<ItemBody> {
    Json(ItemBody {
        item_id,
        q: query.q,
    })
}

/// Echoes the request body with its content type.
#[utoipa::path(post, path = "/echo", tag = "demo",
    request_body(content = Option<serde_json::Value>, description = "Any body, or none", content_type = "*/*"),
    responses(
        (status = 200, description = "The same body", body = serde_json::Value, content_type = "*/*"),
        (status = 413, description = "Body too large", body = ErrorBody)))]
pub async fn echo(headers: HeaderMap, RawBody(body): RawBody) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

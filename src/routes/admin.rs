//! `/admin/runtime`: read and change the runtime settings of this process.
//!
//! For local use and drills; in a cluster the runtime ConfigMap is the durable
//! source (an admin change lasts until the ConfigMap changes or the pod restarts).
//! Restrict who reaches it with the chart's NetworkPolicy.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};

use crate::error::{ApiError, ErrorBody};
use crate::settings::{RuntimeSettings, SettingsPatch};

use crate::state::AppState;

/// The runtime settings in force.
#[utoipa::path(get, path = "/admin/runtime", tag = "admin", operation_id = "get_runtime_settings",
    responses((status = 200, description = "Settings in force", body = RuntimeSettings)))]
pub async fn get(State(state): State<AppState>) -> Json<RuntimeSettings> {
    Json((*state.settings.current()).clone())
}

/// Changes the named runtime settings; all of them or none.
#[utoipa::path(put, path = "/admin/runtime", tag = "admin", operation_id = "update_runtime_settings",
    request_body = SettingsPatch,
    responses(
        (status = 200, description = "Settings in force after the change", body = RuntimeSettings),
        (status = 400, description = "Rejected; the previous settings stay", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody)))]
pub async fn put(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<RuntimeSettings>, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(crate::extract::is_json_content_type);
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    match state.settings.update_from_json(&body) {
        Ok(settings) => Ok(Json((*settings).clone())),
        Err(err) => Err(ApiError::Validation {
            message: format!("runtime settings rejected, previous settings kept: {err}").into(),
            field: None,
        }),
    }
}

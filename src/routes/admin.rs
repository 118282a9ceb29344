//! `/admin/runtime`: read and change the runtime settings of this process.
//!
//! For local use and drills; in a cluster the runtime ConfigMap is the durable
//! source (an admin change lasts until the ConfigMap changes or the pod restarts).
//! Restrict who reaches it with the chart's NetworkPolicy.

use axum::Json;
use axum::extract::State;

use crate::error::{ApiError, ErrorBody};
use crate::extract;
use crate::settings::{RuntimeSettings, SettingsError, SettingsPatch};
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
        (status = 400, description = "Rejected (malformed JSON, not an object, unknown key, wrong type or value out of range); the previous settings stay", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody)))]
pub async fn put(
    State(state): State<AppState>,
    patch: Result<extract::Json<SettingsPatch>, ApiError>,
) -> Result<Json<RuntimeSettings>, ApiError> {
    let patch = match patch {
        Ok(extract::Json(patch)) => patch,
        Err(rejection) => {
            // A body that is not a patch is a rejected change too: counted and
            // published like an invalid value.
            state
                .settings
                .reject_update(&SettingsError::one(rejection.to_string()));
            // A wrong key or value, or a body that is not an object, is a rejected
            // change (400, naming the key), like a value out of range; a body that
            // is not JSON keeps its own status.
            return Err(match rejection {
                ApiError::Unprocessable { message, field } => ApiError::Validation {
                    message: format!(
                        "runtime settings rejected, previous settings kept: {message}"
                    )
                    .into(),
                    field,
                },
                other => other,
            });
        }
    };
    match state.settings.update(&patch) {
        Ok(settings) => Ok(Json((*settings).clone())),
        Err(err) => Err(ApiError::Validation {
            message: format!("runtime settings rejected, previous settings kept: {err}").into(),
            field: None,
        }),
    }
}

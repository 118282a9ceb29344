//! The legacy gauges: `/update?users=N` sets `app_active_users`, `/cpu?value=X`
//! sets `app_cpu_usage_percent`, for dashboards and alert drills driven by hand.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody};
use crate::extract::Query;
use crate::state::AppState;

/// The success answer of the legacy gauge endpoints.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusOk {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Query of `/update`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UpdateQuery {
    /// Active users, 0 or more.
    // Optional here and required by the handler, which can then name it.
    #[param(minimum = 0, required = true, value_type = i64)]
    pub users: Option<i64>,
}

/// Query of `/cpu`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CpuQuery {
    /// CPU usage in percent, 0 to 100.
    #[param(minimum = 0, maximum = 100, required = true, value_type = f64)]
    pub value: Option<f64>,
}

/// Sets `app_active_users`.
#[utoipa::path(get, path = "/update", operation_id = "set_active_users", tag = "legacy", params(UpdateQuery),
    responses(
        (status = 200, description = "Gauge set", body = StatusOk),
        (status = 400, description = "Missing, non-integer or negative", body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    Query(query): Query<UpdateQuery>,
) -> Result<Json<StatusOk>, ApiError> {
    let users = query
        .users
        .ok_or_else(|| ApiError::invalid("users", "users is required"))?;
    if users < 0 {
        return Err(ApiError::invalid("users", "Users cannot be negative"));
    }
    state.metrics.set_active_users(users);
    Ok(Json(StatusOk { status: "ok" }))
}

/// Sets `app_cpu_usage_percent`.
#[utoipa::path(get, path = "/cpu", operation_id = "set_cpu_usage", tag = "legacy", params(CpuQuery),
    responses(
        (status = 200, description = "Gauge set", body = StatusOk),
        (status = 400, description = "Missing, not a number or outside 0 to 100", body = ErrorBody)))]
pub async fn cpu(
    State(state): State<AppState>,
    Query(query): Query<CpuQuery>,
) -> Result<Json<StatusOk>, ApiError> {
    let value = query
        .value
        .ok_or_else(|| ApiError::invalid("value", "value is required"))?;
    // NaN fails `contains`, so it is rejected along with the out-of-range values.
    if !(0.0..=100.0).contains(&value) {
        return Err(ApiError::invalid("value", "CPU must be 0–100"));
    }
    state.metrics.set_cpu_usage(value);
    Ok(Json(StatusOk { status: "ok" }))
}

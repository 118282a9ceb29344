//! Fault injection for the API routes: random delays and random 500s.
//!
//! The configuration is read per request from the live settings, so a change made
//! through `PUT /admin/runtime` or the runtime ConfigMap applies to the next request.
//! Faults are decided before the handler runs, so an injected failure never
//! leaves a half-applied change behind. Probes and `/metrics` are never
//! affected: the layer is applied to the API sub-router only.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::Rng as _;

use crate::error::ApiError;
use crate::settings::LiveSettings;

/// Middleware: delays and/or fails the request according to the settings in force.
pub async fn inject(
    State(settings): State<Arc<LiveSettings>>,
    request: Request,
    next: Next,
) -> Response {
    let config = settings.faults();
    if !config.is_active() {
        return next.run(request).await;
    }
    // Draw both decisions up front: the RNG handle is not Send across awaits.
    let (delay, fail) = {
        let mut rng = rand::rng();
        let delay = if config.delay_max.is_zero() {
            Duration::ZERO
        } else {
            config.delay_max.mul_f64(rng.random::<f64>())
        };
        (delay, rng.random::<f64>() < config.error_rate)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if fail {
        return ApiError::Injected.into_response();
    }
    next.run(request).await
}

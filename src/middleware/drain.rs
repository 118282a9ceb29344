//! While shutting down, ask keep-alive clients to reconnect (`Connection: close`):
//! their next connection lands on another pod, and this one's connections finish
//! their current request and close, so the drain ends.
//!
//! A layer of its own, on every listener, whether or not the telemetry layer runs.
//! Pulse's listeners speak HTTP/1.1 only (`server::connections`), where this header
//! is how a server ends keep-alive.

use std::sync::Arc;

use axum::http::{HeaderValue, header};
use axum::response::Response;
use tower::util::MapResponseLayer;

use crate::readiness::Readiness;

/// The layer: one atomic load per response; no boxing, unlike `from_fn` middleware.
pub fn layer(readiness: Arc<Readiness>) -> MapResponseLayer<impl Fn(Response) -> Response + Clone> {
    MapResponseLayer::new(move |mut response: Response| {
        if readiness.is_shutting_down() {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    })
}

//! `--max-concurrency`: load shedding for the API routes.
//!
//! Beyond the limit a request is answered 503 with `Retry-After` at once rather
//! than queued: a queue only turns overload into latency for everyone, and a
//! fast 503 lets a load balancer or client retry elsewhere. Counted as
//! `api_errors_total{error_type="overloaded"}`. Probes and `/metrics` are not
//! limited: an overloaded pod must still answer its kubelet and its scraper.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// The permits of in-flight API requests.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimit(Arc<Semaphore>);

impl ConcurrencyLimit {
    /// At most `limit` requests at once.
    pub fn new(limit: usize) -> Self {
        Self(Arc::new(Semaphore::new(limit)))
    }
}

/// Middleware: serves the request if a permit is free, else answers 503.
pub async fn shed(State(limit): State<ConcurrencyLimit>, request: Request, next: Next) -> Response {
    // The permit is held until the handler has produced its response.
    match limit.0.try_acquire() {
        Ok(_permit) => next.run(request).await,
        Err(_) => ApiError::Overloaded.into_response(),
    }
}

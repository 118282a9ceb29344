//! `--max-concurrency`: load shedding for the API routes.
//!
//! Beyond the limit a request is answered 503 with `Retry-After` at once rather
//! than queued: a queue only turns overload into latency for everyone, and a
//! fast 503 lets a load balancer or client retry elsewhere. Counted as
//! `api_errors_total{error_type="overloaded"}`. Probes and `/metrics` are not
//! limited: an overloaded pod must still answer its kubelet and its scraper.
//!
//! Written here rather than `tower::limit::ConcurrencyLimit` + `tower::load_shed`:
//! those answer with an error that axum would need another layer to turn into
//! this response. A tower layer, not `from_fn`: no boxing per request.

use std::sync::Arc;

use axum::extract::Request;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::Layer;

use super::{Check, Checked};
use crate::error::ApiError;

/// The layer: at most `limit` API requests in flight, shared by every route it wraps.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimitLayer {
    permits: Arc<Semaphore>,
}

impl ConcurrencyLimitLayer {
    /// At most `limit` requests at once.
    pub fn new(limit: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit)),
        }
    }
}

impl<S> Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Checked::new(inner, self.clone())
    }
}

/// The service [`ConcurrencyLimitLayer`] makes: serves the request if a permit is
/// free, else answers 503.
pub type ConcurrencyLimit<S> = Checked<S, ConcurrencyLimitLayer>;

impl Check for ConcurrencyLimitLayer {
    type Pass = OwnedSemaphorePermit;

    fn check(&self, _request: &mut Request) -> Result<OwnedSemaphorePermit, ApiError> {
        self.permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Overloaded)
    }
}

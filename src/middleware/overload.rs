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

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures::future::{Either, Ready, ready};
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};

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
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Shed {
            inner,
            permits: self.permits.clone(),
        }
    }
}

/// The service [`ConcurrencyLimitLayer`] makes: serves the request if a permit is
/// free, else answers 503.
#[derive(Debug, Clone)]
pub struct Shed<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

impl<S> Service<Request> for Shed<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, Permitted<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Either::Right(Permitted {
                inner: self.inner.call(request),
                _permit: permit,
            }),
            Err(_) => Either::Left(ready(Ok(ApiError::Overloaded.into_response()))),
        }
    }
}

pin_project! {
    /// The inner response future, holding its permit until the response is made
    /// (or the request is abandoned).
    pub struct Permitted<F> {
        #[pin]
        inner: F,
        _permit: OwnedSemaphorePermit,
    }
}

impl<F: Future> Future for Permitted<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

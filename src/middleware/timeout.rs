//! `--request-timeout`: a request that takes longer is answered 503 with a JSON
//! error (and `Retry-After`), counted as `api_errors_total{error_type="timeout"}`.
//!
//! A tower layer rather than `from_fn` middleware: it runs on every request, and
//! `from_fn` clones and boxes the inner service and boxes its future each time.
//! `tower::timeout` is not used because it answers with an error, not a response.
//! Not a [`Check`](super::Check): every request reaches the inner service, and the
//! error comes from the inner future's running out of time.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::error::ApiError;

/// The layer: `limit` is `--request-timeout`.
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    limit: Duration,
}

impl TimeoutLayer {
    /// Bounds the time spent producing each response head to `limit`.
    pub fn new(limit: Duration) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout {
            inner,
            limit: self.limit,
        }
    }
}

/// The service [`TimeoutLayer`] makes.
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    limit: Duration,
}

impl<S> Service<Request> for Timeout<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        ResponseFuture {
            inner: tokio::time::timeout(self.limit, self.inner.call(request)),
            limit: self.limit,
        }
    }
}

pin_project! {
    /// The response of [`Timeout`]: the inner one, or the timeout's 503.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: tokio::time::Timeout<F>,
        limit: Duration,
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        Poll::Ready(match ready!(this.inner.poll(cx)) {
            Ok(response) => response,
            Err(_elapsed) => Ok(ApiError::Timeout(*this.limit).into_response()),
        })
    }
}

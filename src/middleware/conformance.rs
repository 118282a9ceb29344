//! Checks HTTP/1.1 asks of a server before any route runs (RFC 9112, RFC 9110):
//!
//! - a request must carry exactly one `Host` header (HTTP/1.1; an HTTP/1.0 client
//!   may send none, but never two): 400 otherwise;
//! - a body announced by `Content-Length` larger than `--max-body-bytes` is refused
//!   with 413 at once, before the body is read, so a client that sent
//!   `Expect: 100-continue` is not invited to upload it.
//!
//! A tower layer rather than `from_fn` middleware: it runs on every request, and
//! this way it costs a header lookup, not a boxed service and future.

use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{Version, header};
use axum::response::{IntoResponse, Response};
use futures::future::{Either, Ready, ready};
use tower::{Layer, Service};

use crate::error::ApiError;

/// The layer: `max_body_bytes` is `--max-body-bytes`.
#[derive(Debug, Clone, Copy)]
pub struct ConformanceLayer {
    max_body_bytes: usize,
}

impl ConformanceLayer {
    /// Refuses announced bodies larger than `max_body_bytes`.
    pub fn new(max_body_bytes: usize) -> Self {
        Self { max_body_bytes }
    }
}

impl<S> Layer<S> for ConformanceLayer {
    type Service = Conformance<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Conformance {
            inner,
            max_body_bytes: self.max_body_bytes,
        }
    }
}

/// The service [`ConformanceLayer`] makes.
#[derive(Debug, Clone)]
pub struct Conformance<S> {
    inner: S,
    max_body_bytes: usize,
}

impl<S> Service<Request> for Conformance<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match check(&request, self.max_body_bytes) {
            Ok(()) => Either::Right(self.inner.call(request)),
            Err(err) => Either::Left(ready(Ok(err.into_response()))),
        }
    }
}

fn check(request: &Request, max_body_bytes: usize) -> Result<(), ApiError> {
    let hosts = request.headers().get_all(header::HOST).iter().count();
    let required = usize::from(request.version() >= Version::HTTP_11);
    // HTTP/2 carries the authority in `:authority`; hyper maps it to the URI.
    if request.version() < Version::HTTP_2 && !(required..=1).contains(&hosts) {
        return Err(ApiError::invalid(
            "host",
            "an HTTP/1.1 request must have exactly one Host header",
        ));
    }
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > max_body_bytes as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    Ok(())
}

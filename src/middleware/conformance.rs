//! Checks HTTP/1.1 asks of a server before any route runs (RFC 9112, RFC 9110):
//!
//! - a request must carry exactly one `Host` header (HTTP/1.1; an HTTP/1.0 client
//!   may send none, but never two): 400 otherwise;
//! - a body announced by `Content-Length` larger than `--max-body-bytes` is refused
//!   with 413 at once, before the body is read, so a client that sent
//!   `Expect: 100-continue` is not invited to upload it;
//! - a request that has a body gets `--max-body-bytes` as axum's body limit
//!   (`DefaultBodyLimit`), which the extractors apply as they read it (413), so a
//!   chunked body is bounded too. Only then: the limit is an entry in the
//!   request's extensions, and on a request without a body (most of them: every
//!   `GET`) that entry was about 600 instructions of map growth for nothing.
//!
//! A tower layer rather than `from_fn` middleware: it runs on every request, and
//! this way it costs a header lookup, not a boxed service and future.

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{Version, header};
use http_body::Body as _;
use tower::Layer;

use super::{Check, Checked};
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
        Checked::new(inner, *self)
    }
}

/// The service [`ConformanceLayer`] makes.
pub type Conformance<S> = Checked<S, ConformanceLayer>;

impl Check for ConformanceLayer {
    type Pass = ();

    fn check(&self, request: &mut Request) -> Result<(), ApiError> {
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
        if announced.is_some_and(|len| len > self.max_body_bytes as u64) {
            return Err(ApiError::PayloadTooLarge);
        }
        // hyper's body is at its end from the start when the request has none
        // (no `Content-Length` or `Content-Length: 0`, and not chunked).
        if !request.body().is_end_stream() {
            DefaultBodyLimit::max(self.max_body_bytes).apply(request);
        }
        Ok(())
    }
}

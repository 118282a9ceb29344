//! Cross-cutting request handling, outermost first:
//! [`telemetry`] (span, metrics, access log) → [`drain`] (`Connection: close`
//! while shutting down) → [`conformance`] (`Host`, announced body size) →
//! [`timeout`] → [`overload`] → [`fault`] (the last two on API routes only).
//!
//! Connection-level limits (the header read timeout) live in `server::connections`.
//!
//! Each layer has tower's names: `XLayer` (the [`Layer`](tower::Layer)), `X<S>` (the
//! [`Service`] it makes) and a `ResponseFuture` (that service's future). The layers
//! that check a request before the inner service runs ([`conformance`], [`overload`])
//! implement [`Check`] and share one service, [`Checked`] (named `Conformance<S>`,
//! `ConcurrencyLimit<S>`), and one future, this module's [`ResponseFuture`]: the inner
//! service's future, or the [`ApiError`] the check answered; the others have
//! `x::ResponseFuture<F>`. [`fault`] answers through the same future unless it delays the request;
//! [`timeout`] answers its [`ApiError`] once the inner future has run too long, so it
//! keeps a future of its own. All are tower services rather than axum's `from_fn`,
//! which clones and boxes the inner service and boxes its future on every request.
//!
//! Why not tower-http (as its 0.6.11 and 0.7.1 sources read): its `TimeoutLayer`
//! answers a late request with an empty body (`B::default()`) and a bare status (408
//! unless `with_status_code` says otherwise), no `Retry-After`; `RequestBodyLimitLayer`
//! answers 413 with a `text/plain` "length limit exceeded"; it has no concurrency
//! limit, and tower's `ConcurrencyLimit` waits for a permit in `poll_ready` (it queues)
//! instead of answering at once. Pulse answers every refusal with its one JSON
//! [`ApiError`] body, which the telemetry layer counts in `api_errors_total` by the
//! error type the response carries. tower-http's `ValidateRequestHeaderLayer::custom`
//! has [`Check`]'s shape without the pass (overload's permit); not worth a direct
//! dependency for that.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tower::Service;

use crate::error::ApiError;

pub mod conformance;
pub mod drain;
pub mod fault;
pub mod overload;
pub mod telemetry;
pub mod timeout;

/// What a checking layer decides about each request before the inner service runs.
/// The layer itself implements it, so its settings are the check's.
pub trait Check {
    /// What a request that passed keeps until its response is ready (a concurrency
    /// permit); `()` when nothing.
    type Pass;

    /// Passes `request` on to the inner service (a check may mark it, in its
    /// extensions, for the extractors), or answers it with the error.
    fn check(&self, request: &mut Request) -> Result<Self::Pass, ApiError>;
}

/// The service of a [`Check`] layer: calls the inner service only if the check passes.
#[derive(Debug, Clone)]
pub struct Checked<S, C> {
    inner: S,
    check: C,
}

impl<S, C> Checked<S, C> {
    /// `inner`, behind `check`.
    fn new(inner: S, check: C) -> Self {
        Self { inner, check }
    }
}

impl<S, C> Service<Request> for Checked<S, C>
where
    S: Service<Request, Response = Response>,
    C: Check,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C::Pass>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        match self.check.check(&mut request) {
            Ok(pass) => ResponseFuture::inner(self.inner.call(request), pass),
            Err(error) => ResponseFuture::rejected(error),
        }
    }
}

pin_project! {
    /// The response of a checked request: the inner service's, with what the check
    /// let it keep (dropped with the future), or the check's error. No allocation.
    #[project = ResponseFutureProj]
    pub enum ResponseFuture<F, P> {
        /// The check passed: the inner service answers.
        Inner {
            #[pin]
            future: F,
            pass: P,
        },
        /// The check refused: its error's response, taken when polled.
        Rejected { response: Option<Response> },
    }
}

impl<F, P> ResponseFuture<F, P> {
    /// The inner service's response, `pass` kept until it is ready.
    fn inner(future: F, pass: P) -> Self {
        Self::Inner { future, pass }
    }

    /// `error`'s response, without calling the inner service.
    fn rejected(error: ApiError) -> Self {
        Self::Rejected {
            response: Some(error.into_response()),
        }
    }
}

impl<F, P, E> Future for ResponseFuture<F, P>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseFutureProj::Inner { future, .. } => future.poll(cx),
            ResponseFutureProj::Rejected { response } => {
                // A future is not polled again once ready (the `Future` contract).
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
        }
    }
}

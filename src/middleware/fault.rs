//! Fault injection for the API routes: random delays and random 500s.
//!
//! The configuration is read per request from the live settings, so a change made
//! through `PUT /admin/runtime` or the runtime ConfigMap applies to the next request.
//! Faults are decided before the handler runs, so an injected failure never
//! leaves a half-applied change behind. Probes and `/metrics` are never
//! affected: the layer is applied to the API sub-router only.
//!
//! A tower layer, not `from_fn`: with no fault configured (the default) a request
//! costs one atomic load here and nothing is boxed; only a delayed request boxes.
//! Not a [`Check`](super::Check): a delayed request calls the inner service later.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures::future::{BoxFuture, Either};
use rand::Rng as _;
use tower::{Layer, Service};

use crate::error::ApiError;
use crate::settings::{FaultConfig, LiveSettings};

/// The layer: faults as `settings` say at the time of each request.
#[derive(Debug, Clone)]
pub struct FaultLayer {
    settings: Arc<LiveSettings>,
}

impl FaultLayer {
    /// Injects the faults the live `settings` configure.
    pub fn new(settings: Arc<LiveSettings>) -> Self {
        Self { settings }
    }
}

impl<S> Layer<S> for FaultLayer {
    type Service = Fault<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Fault {
            inner,
            settings: self.settings.clone(),
        }
    }
}

/// The service [`FaultLayer`] makes: delays and/or fails the request according to
/// the settings in force.
#[derive(Debug, Clone)]
pub struct Fault<S> {
    inner: S,
    settings: Arc<LiveSettings>,
}

/// The response of [`Fault`]: at once, the inner one or the injected 500 (the checking
/// layers' future); after a delay, either of them, boxed.
pub type ResponseFuture<F> =
    Either<super::ResponseFuture<F, ()>, BoxFuture<'static, Result<Response, Infallible>>>;

impl<S> Service<Request> for Fault<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let config = self.settings.faults();
        let (delay, fail) = if config.is_active() {
            draw(&config)
        } else {
            (Duration::ZERO, false)
        };
        if delay.is_zero() {
            return Either::Left(if fail {
                super::ResponseFuture::rejected(ApiError::Injected)
            } else {
                super::ResponseFuture::inner(self.inner.call(request), ())
            });
        }
        // The service polled ready is the one to call, after the delay; a clone
        // takes its place here.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Either::Right(Box::pin(async move {
            tokio::time::sleep(delay).await;
            if fail {
                return Ok(ApiError::Injected.into_response());
            }
            inner.call(request).await
        }))
    }
}

/// The delay (uniform in `0..delay_max`) and whether to fail (with `error_rate`).
fn draw(config: &FaultConfig) -> (Duration, bool) {
    let mut rng = rand::rng();
    let delay = if config.delay_max.is_zero() {
        Duration::ZERO
    } else {
        config.delay_max.mul_f64(rng.random::<f64>())
    };
    (delay, rng.random::<f64>() < config.error_rate)
}

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
    type Service = Inject<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Inject {
            inner,
            settings: self.settings.clone(),
        }
    }
}

/// The service [`FaultLayer`] makes: delays and/or fails the request according to
/// the settings in force.
#[derive(Debug, Clone)]
pub struct Inject<S> {
    inner: S,
    settings: Arc<LiveSettings>,
}

impl<S> Service<Request> for Inject<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<BoxFuture<'static, Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let config = self.settings.faults();
        if !config.is_active() {
            return Either::Right(self.inner.call(request));
        }
        let (delay, fail) = draw(&config);
        if delay.is_zero() {
            return if fail {
                Either::Left(Box::pin(std::future::ready(Ok(
                    ApiError::Injected.into_response()
                ))))
            } else {
                Either::Right(self.inner.call(request))
            };
        }
        // The service polled ready is the one to call, after the delay; a clone
        // takes its place here.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Either::Left(Box::pin(async move {
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

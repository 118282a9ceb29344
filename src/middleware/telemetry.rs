//! Per-request telemetry: one server span, the `http_*` metrics, the access log,
//! and `traceparent` propagation in both directions.
//!
//! It runs per route (added with `Router::layer`), so the matched route template
//! is known: labels use the template, never the raw path, and requests that match
//! no route share `route="unmatched"`. No request can create a new series.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, ready};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{Version, header};
use axum::response::Response;
use http_body::Body as _;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{Status, TraceContextExt as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service};

use crate::error::ErrorType;
use crate::telemetry::Metrics;
use crate::telemetry::labels::HttpMethod;
use crate::telemetry::logs::{REQUEST, RequestIds};
use crate::telemetry::routes::{RouteTable, RouteTelemetry, UNMATCHED};
use crate::telemetry::spans::{self, TRACEPARENT, traceparent};

/// The telemetry layer (a tower [`Layer`]) and what it needs.
#[derive(Debug, Clone)]
pub struct HttpTelemetryLayer {
    /// Per-route handles (bound instruments, span names). `'static`, made once per
    /// router: axum clones the service for every request, and cloning an `Arc` here
    /// was a write to memory every worker shares (telemetry/routes.rs).
    routes: &'static RouteTable,
}

impl HttpTelemetryLayer {
    /// Telemetry recording into `metrics`; requests of the `unrecorded` route
    /// templates (probes, `/metrics`) get a debug-level span and no `http_*` series.
    pub fn new(metrics: Arc<Metrics>, unrecorded: BTreeSet<String>) -> Self {
        Self {
            routes: Box::leak(Box::new(RouteTable::new(metrics, unrecorded))),
        }
    }
}

impl<S> Layer<S> for HttpTelemetryLayer {
    type Service = HttpTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpTelemetry {
            inner,
            telemetry: self.clone(),
        }
    }
}

/// The service [`HttpTelemetryLayer`] makes: records one request.
///
/// A tower service rather than `from_fn` middleware: it runs on every request, and
/// `from_fn` clones and boxes the inner service and boxes its future each time.
///
/// The server span is made with the OpenTelemetry API directly: through
/// `tracing` and `tracing-opentelemetry` the same span cost several times as many
/// instructions (a `tracing` span, its field storage, a span builder rebuilt from
/// those fields), on every request. The request's OpenTelemetry context is current
/// while the handler runs, so a `tracing` span opened inside a handler (bridged by
/// `tracing-opentelemetry`) becomes its child.
#[derive(Debug, Clone)]
pub struct HttpTelemetry<S> {
    inner: S,
    telemetry: HttpTelemetryLayer,
}

impl<S> Service<Request> for HttpTelemetry<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let start = Instant::now();
        let t = &self.telemetry;
        let method = HttpMethod::from(request.method());
        let matched = request.extensions().get::<MatchedPath>();
        let route = t
            .routes
            .get(method, matched.map_or(UNMATCHED, |p| p.as_str()));

        // Probes and scrapes (unless recorded) get no span: they would drown the traces.
        let span = route.recorded.then(|| server_span(route, method, &request));
        let ids = span.as_ref().map_or(RequestIds::NONE, |cx| {
            let span = cx.span();
            let span = span.span_context();
            RequestIds {
                trace_id: span.trace_id(),
                span_id: span.span_id(),
            }
        });
        let request_size = body_size(request.body());
        if route.recorded {
            route.started();
        }
        ResponseFuture {
            // Every line logged while the request is handled carries its ids.
            inner: REQUEST.scope(ids, self.inner.call(request)),
            finish: Some(Finish {
                start,
                method,
                route,
                span,
                ids,
                request_size,
            }),
        }
    }
}

pin_project! {
    /// The response of [`HttpTelemetry`]: the inner one, with the span's context current
    /// while it is made, and recorded when it is ready.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: TaskLocalFuture<RequestIds, F>,
        finish: Option<Finish>,
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let polled = {
            let _current = this
                .finish
                .as_ref()
                .and_then(|f| f.span.clone())
                .map(Context::attach);
            this.inner.poll(cx)
        };
        let Ok(mut response) = ready!(polled);
        if let Some(finish) = this.finish.take() {
            finish.record(&mut response);
        }
        Poll::Ready(Ok(response))
    }
}

/// What a request's telemetry needs once its response is ready. Dropped without
/// [`Finish::record`] when the client goes away mid-request: the in-progress gauge
/// still goes down, and the span (dropped unended) is ended by the SDK.
struct Finish {
    start: Instant,
    method: HttpMethod,
    route: &'static RouteTelemetry,
    span: Option<Context>,
    ids: RequestIds,
    request_size: u64,
}

impl Finish {
    /// Records the request's metrics, ends its span, adds `traceparent` to the
    /// response and writes the access line.
    fn record(self, response: &mut Response) {
        let status = response.status();
        let elapsed = self.start.elapsed();
        let route = &self.route;
        if route.recorded {
            // Only a sampled request's trace can be looked up: the others are exemplars
            // of nothing.
            let sampled = self
                .span
                .as_ref()
                .is_some_and(|cx| cx.span().span_context().is_sampled())
                .then_some((self.ids.trace_id, self.ids.span_id));
            route.finished(
                status.as_u16(),
                (self.start, elapsed),
                sampled,
                self.request_size,
                body_size(response.body()),
            );
        }
        if let Some(error) = response.extensions().get::<ErrorType>() {
            route.metrics().api_error(error);
        }
        if let Some(cx) = &self.span {
            let span = cx.span();
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status.as_u16()),
            ));
            if status.is_server_error() {
                span.set_attribute(KeyValue::new("error.type", status.as_str().to_owned()));
                span.set_status(Status::error(""));
            }
            span.end();
            let context = span.span_context();
            if context.is_valid() {
                response
                    .headers_mut()
                    .insert(TRACEPARENT, traceparent(context));
            }
        }

        let duration_ms = whole_micros_as_ms(elapsed);
        let status = status.as_u16();
        let method = self.method.as_str();
        let route = route.route;
        // The access line, with the request's ids (added by the log layer).
        REQUEST.sync_scope(self.ids, || {
            if self.route.recorded {
                tracing::info!(method, route, status, duration_ms, "request");
            } else {
                tracing::debug!(method, route, status, duration_ms, "request");
            }
        });
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        if self.route.recorded {
            self.route.ended();
        }
    }
}

/// Starts the server span of `request`, child of the caller's `traceparent`, with
/// the stable HTTP server span attributes known before the handler runs: a request
/// that matched no route has no `http.route`, and only an unknown method has
/// `http.request.method_original`.
fn server_span(route: &RouteTelemetry, method: HttpMethod, request: &Request) -> Context {
    // W3C trace context, the one propagator Pulse installs, used directly: the
    // global one sits behind a lock taken on every request. Without a `traceparent`
    // the request starts a trace of its own: the propagator would read the thread's
    // current context (a thread-local and its clone) only to find nothing to continue
    // (about 900 instructions a request, in the benchmark's profile).
    let parent = if request.headers().contains_key(TRACEPARENT) {
        TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()))
    } else {
        Context::new()
    };
    let uri = request.uri();
    let mut attributes = Vec::with_capacity(9);
    attributes.push(KeyValue::new("http.request.method", method.as_str()));
    if method == HttpMethod::Other {
        attributes.push(KeyValue::new(
            "http.request.method_original",
            request.method().as_str().to_owned(),
        ));
    }
    if route.matched {
        attributes.push(KeyValue::new("http.route", route.route));
    }
    attributes.push(KeyValue::new(
        "network.protocol.version",
        protocol_version(request.version()),
    ));
    // A route without parameters is its own path: share the template, no copy.
    let path = uri.path();
    attributes.push(if route.matched && path == route.route {
        KeyValue::new("url.path", route.route)
    } else {
        KeyValue::new("url.path", path.to_owned())
    });
    if let Some(query) = uri.query() {
        attributes.push(KeyValue::new("url.query", query.to_owned()));
    }
    attributes.push(KeyValue::new("url.scheme", "http"));
    if let Some(agent) = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        attributes.push(KeyValue::new("user_agent.original", agent.to_owned()));
    }
    spans::start_server(route.span_name, attributes, &parent)
}

/// `network.protocol.version`: what the client spoke.
fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// Body size as announced by the body itself (its exact length for the
/// buffered bodies Pulse produces; the lower bound for streams).
fn body_size(body: &axum::body::Body) -> u64 {
    let hint = body.size_hint();
    hint.exact().unwrap_or(hint.lower())
}

/// `elapsed` in milliseconds, rounded to the microsecond: the access line's
/// `duration_ms`. The clock's nanoseconds times 1000 as an `f64` printed as
/// `1.0648170000000001` in text logs; a whole number of microseconds over 1000
/// prints with at most three decimals (`1.065`) in both log formats.
fn whole_micros_as_ms(elapsed: Duration) -> f64 {
    (elapsed.as_nanos() as f64 / 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_milliseconds_with_at_most_three_decimals() {
        for (nanos, text) in [
            (1_064_817, "1.065"),
            (49_230, "0.049"),
            (2_000_000_000, "2000"),
            (999, "0.001"),
            (300, "0"),
        ] {
            let ms = whole_micros_as_ms(Duration::from_nanos(nanos));
            assert_eq!(ms.to_string(), text, "{nanos} ns");
            // Text logs print fields with `{:?}`, which adds `.0` to a whole number.
            assert_eq!(format!("{ms:?}").trim_end_matches(".0"), text, "{nanos} ns");
        }
    }
}

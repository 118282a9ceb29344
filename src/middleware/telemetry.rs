//! Per-request telemetry: one server span, the `http_*` metrics, the access log,
//! and `traceparent` propagation in both directions.
//!
//! It runs per route (added with `Router::layer`), so the matched route template
//! is known: labels use the template, never the raw path, and requests that match
//! no route share `route="unmatched"`. No request can create a new series.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Version, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body::Body as _;
use opentelemetry::global;
use opentelemetry::trace::SpanContext;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_http::HeaderExtractor;
use tracing::Instrument as _;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::error::ErrorType;
use crate::telemetry::Metrics;
use crate::telemetry::labels::HttpMethod;
use crate::telemetry::logs::{REQUEST, RequestIds};
use crate::telemetry::routes::{RouteTable, RouteTelemetry, UNMATCHED};

/// What the telemetry middleware needs.
#[derive(Debug, Clone)]
pub struct HttpTelemetry {
    /// Where to record errors.
    metrics: Arc<Metrics>,
    /// Per-route handles (bound instruments, span names).
    routes: Arc<RouteTable>,
}

impl HttpTelemetry {
    /// Telemetry recording into `metrics`; requests of the `unrecorded` route
    /// templates (probes, `/metrics`) get a debug-level span and no `http_*` series.
    pub fn new(metrics: Arc<Metrics>, unrecorded: BTreeSet<String>) -> Self {
        Self {
            routes: Arc::new(RouteTable::new(metrics.clone(), unrecorded)),
            metrics,
        }
    }
}

/// Builds the request span at a level chosen at run time (the `span!` macro
/// needs a constant level).
macro_rules! request_span {
    ($level:expr, $($fields:tt)*) => {
        if $level {
            tracing::info_span!("HTTP request", $($fields)*)
        } else {
            tracing::debug_span!("HTTP request", $($fields)*)
        }
    };
}

/// Middleware: records one request.
pub async fn track(State(t): State<HttpTelemetry>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = HttpMethod::from(request.method());
    let matched = request.extensions().get::<MatchedPath>();
    let route = t
        .routes
        .get(method, matched.map_or(UNMATCHED, |p| p.as_str()));
    let instrumented = route.recorded;
    let other_method = method == HttpMethod::Other;
    let method = method.as_str();

    // The stable OpenTelemetry HTTP server span conventions: fields left `Empty`
    // and never recorded are not exported, so a request that matched no route has
    // no `http.route`, and only an unknown method has `http.request.method_original`.
    let span = request_span!(
        instrumented,
        otel.name = &*route.span_name,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.request.method_original = Empty,
        http.route = Empty,
        http.response.status_code = Empty,
        "error.type" = Empty,
        network.protocol.version = protocol_version(request.version()),
        url.path = request.uri().path(),
        url.query = Empty,
        url.scheme = "http",
        user_agent.original = request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    );
    if route.matched {
        span.record("http.route", &*route.route);
    }
    if other_method {
        span.record("http.request.method_original", request.method().as_str());
    }
    if let Some(query) = request.uri().query() {
        span.record("url.query", query);
    }
    let parent =
        global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(request.headers())));
    // Fails only when no OpenTelemetry layer is installed (library use, tests).
    let _ = span.set_parent(parent);
    let cx = span.context();
    // The ids stay binary until a log line that is actually written formats them.
    let span_context = cx.span().span_context().clone();

    let request_size = body_size(request.body());
    let _in_progress = instrumented.then(|| InProgress::start(route.clone()));

    let ids = RequestIds {
        trace_id: span_context.trace_id(),
        span_id: span_context.span_id(),
    };
    // Every line logged while the request is handled carries its ids.
    let mut response = REQUEST
        .scope(ids, next.run(request).instrument(span.clone()))
        .await;

    let status = response.status();
    let elapsed = start.elapsed();
    if instrumented {
        route.finished(
            status.as_u16(),
            elapsed.as_secs_f64(),
            request_size,
            body_size(response.body()),
        );
    }
    if let Some(ErrorType(kind)) = response.extensions().get::<ErrorType>() {
        t.metrics.api_error(*kind);
    }

    // An integer attribute: `tracing` hands an unsigned value to the OpenTelemetry
    // layer as text.
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
        span.record("error.type", status.as_str());
    }
    if span_context.is_valid() {
        response
            .headers_mut()
            .insert(TRACEPARENT, traceparent(&span_context));
    }

    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    let status = status.as_u16();
    let route = &*route.route;
    // The access line, with the request's ids (added by the log layer).
    REQUEST.sync_scope(ids, || {
        if instrumented {
            tracing::info!(parent: &span, method, route, status, duration_ms, "request");
        } else {
            tracing::debug!(parent: &span, method, route, status, duration_ms, "request");
        }
    });
    response
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

const TRACEPARENT: header::HeaderName = header::HeaderName::from_static("traceparent");

/// The W3C `traceparent` of `span`: `00-<trace id>-<span id>-<flags>`, written
/// without `format!` (this runs on every response; the propagator's version
/// allocates twice and was visible in the benchmark profile).
fn traceparent(span: &SpanContext) -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = *b"00-00000000000000000000000000000000-0000000000000000-00";
    let mut hex = |at: usize, bytes: &[u8]| {
        for (i, b) in bytes.iter().enumerate() {
            text[at + 2 * i] = HEX[usize::from(b >> 4)];
            text[at + 2 * i + 1] = HEX[usize::from(b & 0xf)];
        }
    };
    hex(3, &span.trace_id().to_bytes());
    hex(36, &span.span_id().to_bytes());
    hex(53, &[span.trace_flags().to_u8()]);
    HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Body size as announced by the body itself (its exact length for the
/// buffered bodies Pulse produces; the lower bound for streams).
fn body_size(body: &axum::body::Body) -> u64 {
    let hint = body.size_hint();
    hint.exact().unwrap_or(hint.lower())
}

/// Decrements `http_requests_in_progress` when dropped, so a request whose
/// client went away (and whose future was dropped) is not counted forever.
struct InProgress(Arc<RouteTelemetry>);

impl InProgress {
    fn start(route: Arc<RouteTelemetry>) -> Self {
        route.started();
        Self(route)
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.ended();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_the_w3c_format() {
        use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};
        let span = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        assert_eq!(
            traceparent(&span),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
    }
}

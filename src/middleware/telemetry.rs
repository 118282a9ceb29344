//! Per-request telemetry: one server span, the `http_*` metrics, the access log,
//! and `traceparent` propagation in both directions.
//!
//! It runs per route (added with `Router::layer`), so the matched route template
//! is known: labels use the template, never the raw path, and requests that match
//! no route share `route="unmatched"`. No request can create a new series.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, Version, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body::Body as _;
use opentelemetry::trace::SpanContext;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::{KeyValue, global};
use opentelemetry_http::HeaderExtractor;
use tracing::Instrument as _;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::error::ErrorType;
use crate::readiness::Readiness;
use crate::telemetry::Metrics;
use crate::telemetry::routes::{METHODS, RouteTable, RouteTelemetry};

/// Route label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// What the telemetry middleware needs.
#[derive(Debug, Clone)]
pub struct HttpTelemetry {
    /// Where to record errors.
    pub metrics: Arc<Metrics>,
    /// Per-route handles (bound instruments, span names).
    pub routes: Arc<RouteTable>,
    /// Read to close keep-alive connections while shutting down.
    pub readiness: Arc<Readiness>,
    /// Record probes and `/metrics` like any other route.
    pub instrument_probes: bool,
}

impl HttpTelemetry {
    /// Telemetry recording into `metrics`.
    pub fn new(metrics: Arc<Metrics>, readiness: Arc<Readiness>, instrument_probes: bool) -> Self {
        Self {
            routes: Arc::new(RouteTable::new(metrics.clone())),
            metrics,
            readiness,
            instrument_probes,
        }
    }
}

/// The index in [`METHODS`] of the `method` label: the standard name, or `_OTHER`
/// for anything else, so a client inventing methods cannot create series.
pub fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::CONNECT => 5,
        Method::OPTIONS => 6,
        Method::TRACE => 7,
        Method::PATCH => 8,
        _ => 9,
    }
}

/// Probes and scrapes: left out of `http_*` and `app_requests_total` by default,
/// because they would drown the workload's numbers.
pub fn is_probe_route(route: &str) -> bool {
    route == "/metrics"
        || route == "/healthz"
        || route.starts_with("/readyz")
        || route.starts_with("/health")
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
    let method_index = method_index(request.method());
    let method = METHODS[method_index];
    let matched = request.extensions().get::<MatchedPath>();
    let route = t
        .routes
        .get(method_index, matched.map_or(UNMATCHED, |p| p.as_str()));
    let instrumented = t.instrument_probes || !is_probe_route(&route.route);
    let http1 = request.version() <= Version::HTTP_11;

    let span = request_span!(
        instrumented,
        otel.name = &*route.span_name,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = &*route.route,
        http.response.status_code = Empty,
        url.path = request.uri().path(),
        url.scheme = "http",
        user_agent.original = request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    );
    let parent =
        global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(request.headers())));
    // Fails only when no OpenTelemetry layer is installed (library use, tests).
    let _ = span.set_parent(parent);
    let cx = span.context();
    // The ids stay binary until a log line that is actually written formats them.
    let span_context = cx.span().span_context().clone();

    let request_size = body_size(request.body());
    let _in_progress = instrumented.then(|| InProgress::start(route.clone()));

    let mut response = next.run(request).instrument(span.clone()).await;

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
    if let Some(ErrorType(error_type)) = response.extensions().get::<ErrorType>() {
        t.metrics
            .api_errors
            .add(1, &[KeyValue::new("error_type", *error_type)]);
    }

    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    if span_context.is_valid() {
        response
            .headers_mut()
            .insert(TRACEPARENT, traceparent(&span_context));
    }
    if http1 && t.readiness.is_shutting_down() {
        // Tell keep-alive clients to reconnect, which lands them on another pod.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }

    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    let status = status.as_u16();
    let (trace_id, span_id) = (span_context.trace_id(), span_context.span_id());
    let route = &*route.route;
    if instrumented {
        tracing::info!(parent: &span, method, route, status, duration_ms, %trace_id, %span_id, "request");
    } else {
        tracing::debug!(parent: &span, method, route, status, duration_ms, %trace_id, %span_id, "request");
    }
    response
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

    #[test]
    fn unknown_methods_collapse() {
        assert_eq!(METHODS[method_index(&Method::GET)], "GET");
        assert_eq!(METHODS[method_index(&Method::PATCH)], "PATCH");
        let custom = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(METHODS[method_index(&custom)], "_OTHER");
    }

    #[test]
    fn probes_are_recognised() {
        for route in [
            "/metrics",
            "/healthz",
            "/readyz",
            "/health",
            "/health/live",
            "/health/ready",
        ] {
            assert!(is_probe_route(route), "{route}");
        }
        for route in ["/", "/api/users", "/data", UNMATCHED] {
            assert!(!is_probe_route(route), "{route}");
        }
    }
}

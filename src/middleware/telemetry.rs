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
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::{KeyValue, global};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use tracing::Instrument as _;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::error::ErrorType;
use crate::readiness::Readiness;
use crate::telemetry::Metrics;

/// Route label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// What the telemetry middleware needs.
#[derive(Debug, Clone)]
pub struct HttpTelemetry {
    /// Where to record.
    pub metrics: Arc<Metrics>,
    /// Read to close keep-alive connections while shutting down.
    pub readiness: Arc<Readiness>,
    /// Record probes and `/metrics` like any other route.
    pub instrument_probes: bool,
}

/// The `method` label: the standard name, or `_OTHER` for anything else, so a
/// client inventing methods cannot create series.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
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
    let method = method_label(request.method());
    let route: Arc<str> = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| Arc::from(UNMATCHED), |p| Arc::from(p.as_str()));
    let instrumented = t.instrument_probes || !is_probe_route(&route);
    let http1 = request.version() <= Version::HTTP_11;

    let span = request_span!(
        instrumented,
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = %route,
        http.response.status_code = Empty,
        url.path = %request.uri().path(),
        url.scheme = "http",
        user_agent.original = request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
        trace_id = Empty,
        span_id = Empty,
    );
    let parent =
        global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(request.headers())));
    // Fails only when no OpenTelemetry layer is installed (library use, tests).
    let _ = span.set_parent(parent);
    let cx = span.context();
    let span_context = cx.span().span_context().clone();
    let (trace_id, span_id) = if span_context.is_valid() {
        let ids = (
            span_context.trace_id().to_string(),
            span_context.span_id().to_string(),
        );
        span.record("trace_id", ids.0.as_str());
        span.record("span_id", ids.1.as_str());
        ids
    } else {
        Default::default()
    };

    let labels = [
        KeyValue::new("method", method),
        KeyValue::new("route", route.clone()),
    ];
    let request_size = body_size(request.body());
    let _in_progress = instrumented.then(|| InProgress::start(&t.metrics, &labels));

    let mut response = next.run(request).instrument(span.clone()).await;

    let status = response.status();
    let elapsed = start.elapsed();
    let m = &t.metrics;
    if instrumented {
        let with_status = [
            labels[0].clone(),
            labels[1].clone(),
            KeyValue::new("status", i64::from(status.as_u16())),
        ];
        m.http_requests.add(1, &with_status);
        m.http_duration.record(elapsed.as_secs_f64(), &labels);
        m.http_request_size.record(request_size, &labels);
        m.http_response_size
            .record(body_size(response.body()), &with_status);
        m.app_requests.add(1, &[]);
    }
    if let Some(ErrorType(error_type)) = response.extensions().get::<ErrorType>() {
        m.api_errors
            .add(1, &[KeyValue::new("error_type", *error_type)]);
    }

    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    if span_context.is_valid() {
        global::get_text_map_propagator(|p| {
            p.inject_context(&cx, &mut HeaderInjector(response.headers_mut()));
        });
        // The propagator writes `tracestate` even when there is none to pass on.
        let headers = response.headers_mut();
        if headers.get("tracestate").is_some_and(|v| v.is_empty()) {
            headers.remove("tracestate");
        }
    }
    if http1 && t.readiness.is_shutting_down() {
        // Tell keep-alive clients to reconnect, which lands them on another pod.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }

    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    let status = status.as_u16();
    if instrumented {
        tracing::info!(parent: &span, method, route = %route, status, duration_ms, trace_id, span_id, "request");
    } else {
        tracing::debug!(parent: &span, method, route = %route, status, duration_ms, trace_id, span_id, "request");
    }
    response
}

/// Body size as announced by the body itself (its exact length for the
/// buffered bodies Pulse produces; the lower bound for streams).
fn body_size(body: &axum::body::Body) -> u64 {
    let hint = body.size_hint();
    hint.exact().unwrap_or(hint.lower())
}

/// Decrements `http_requests_in_progress` when dropped, so a request whose
/// client went away (and whose future was dropped) is not counted forever.
struct InProgress {
    metrics: Arc<Metrics>,
    labels: [KeyValue; 2],
}

impl InProgress {
    fn start(metrics: &Arc<Metrics>, labels: &[KeyValue; 2]) -> Self {
        metrics.http_in_progress.add(1, labels);
        Self {
            metrics: Arc::clone(metrics),
            labels: labels.clone(),
        }
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.metrics.http_in_progress.add(-1, &self.labels);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_collapse() {
        assert_eq!(method_label(&Method::GET), "GET");
        let custom = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&custom), "_OTHER");
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

//! Where every span Pulse starts comes from, server and client alike, and the one
//! writer of the W3C `traceparent` header.
//!
//! Spans are started with the SDK tracer itself rather than the global one: the
//! global tracer is a `BoxedTracer` whose every span is one more heap allocation
//! and dynamic call, on every request.

use std::borrow::Cow;
use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::trace::{
    SpanContext, SpanKind, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

/// The tracer [`super::init_tracing`] installs.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// The `traceparent` header (W3C trace context).
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The `tracestate` header that travels with it.
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Installs `tracer` as the one spans start with; false when one was already in use.
pub(super) fn install(tracer: SdkTracer) -> bool {
    TRACER.set(tracer).is_ok()
}

/// The tracer spans start with: the SDK tracer [`super::init_tracing`] installed,
/// or, where nothing installed one (a router built in a test), a tracer exporting
/// nowhere, so spans still get real ids.
fn tracer() -> &'static SdkTracer {
    TRACER.get_or_init(|| SdkTracerProvider::builder().build().tracer("pulse"))
}

/// Starts the SERVER span of a request, child of `parent` (the caller's context, or
/// a new trace); the context that holds it.
pub fn start_server(
    name: impl Into<Cow<'static, str>>,
    attributes: Vec<KeyValue>,
    parent: &Context,
) -> Context {
    start(name, SpanKind::Server, attributes, parent)
}

/// Starts a CLIENT span (a call Pulse makes: the backend, the database), child of
/// the current context (the request's server span); the context that holds it.
pub fn start_client(
    name: impl Into<Cow<'static, str>>,
    attributes: impl IntoIterator<Item = KeyValue>,
) -> Context {
    start(name, SpanKind::Client, attributes, &Context::current())
}

fn start(
    name: impl Into<Cow<'static, str>>,
    kind: SpanKind,
    attributes: impl IntoIterator<Item = KeyValue>,
    parent: &Context,
) -> Context {
    let tracer = tracer();
    let span = tracer
        .span_builder(name)
        .with_kind(kind)
        .with_attributes(attributes)
        .start_with_context(tracer, parent);
    parent.with_span(span)
}

/// Writes the W3C trace context of `cx`'s span into `headers` (an outgoing call):
/// `traceparent`, and `tracestate` when the trace carries one.
pub fn inject(cx: &Context, headers: &mut HeaderMap) {
    let span = cx.span();
    let span = span.span_context();
    if !span.is_valid() {
        return;
    }
    headers.insert(TRACEPARENT, traceparent(span));
    let state = span.trace_state().header();
    if !state.is_empty()
        && let Ok(value) = HeaderValue::from_str(&state)
    {
        headers.insert(TRACESTATE, value);
    }
}

/// The W3C `traceparent` of `span`: `00-<trace id>-<span id>-<flags>`, written
/// without `format!` (this runs on every response; the propagator's version
/// allocates twice and was visible in the benchmark profile).
pub fn traceparent(span: &SpanContext) -> HeaderValue {
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
    HeaderValue::from_bytes(&text).expect("hex digits and dashes are a valid header value")
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

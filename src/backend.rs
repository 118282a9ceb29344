//! The backend: the downstream Pulse `GET /api/backend` calls, so a request can
//! cross services (in the spirit of podinfo's `--backend-url`).
//!
//! Each call is an OpenTelemetry CLIENT span, child of the request's server span,
//! whose context travels in the W3C `traceparent` header: the downstream's server
//! span becomes its child, and one trace spans both processes. Each call is also
//! recorded in `http_client_request_duration_seconds`. A hop counter travels in
//! [`HOP_HEADER`], so a backend URL that points back at a caller ends in a 508
//! instead of recursing.

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::HeaderInjector;
use opentelemetry_sdk::propagation::TraceContextPropagator;

use crate::config::ServeArgs;
use crate::telemetry::metrics::{ClientCall, ClientOutcome};
use crate::telemetry::{Metrics, server_tracer};

/// The request header that counts how many Pulses a chain of backend calls has
/// crossed: absent at the first, then one more at each call.
pub const HOP_HEADER: HeaderName = HeaderName::from_static("x-pulse-hop");

/// The path the call goes to on the backend: the same route, so a chain of
/// Pulses can be any length.
pub const PATH: &str = "/api/backend";

/// Largest backend answer read: a chain's answers are small JSON, and a backend
/// that sends more must not grow this process's memory.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Why a backend call gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// No answer within the timeout (connecting included).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Could not connect, or the connection broke.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The URL called.
        url: String,
        /// What the client said.
        reason: String,
    },
    /// The backend answered 508: the chain is at its hop limit further down.
    #[error("the backend reports its hop limit")]
    HopLimit,
    /// The backend answered with an error status.
    #[error("the backend answered {0}")]
    Status(u16),
    /// The answer was not JSON, or larger than [`MAX_ANSWER_BYTES`].
    #[error("the backend's answer is unusable: {0}")]
    Body(String),
}

/// Where the backend is, and how to call it.
#[derive(Debug, Clone)]
pub struct Backend {
    target: Option<Target>,
    /// Longest a call may take, answer included.
    pub timeout: Duration,
    /// Longest chain of calls: a request arriving with this many hops gets 508.
    pub max_hops: u32,
}

/// The configured backend: the URL called, the parts its telemetry names, and
/// the client that calls it.
#[derive(Debug, Clone)]
struct Target {
    url: String,
    host: String,
    port: u16,
    /// The HTTP client, or why it could not be built (then every call fails as
    /// unreachable, with that reason, instead of the process failing to start).
    client: Result<reqwest::Client, String>,
}

impl Backend {
    /// The backend `--backend-url` names (none: `GET /api/backend` answers itself,
    /// and no client is built).
    pub fn new(args: &ServeArgs) -> Self {
        let target = args.backend_url.as_ref().map(|url| Target {
            url: format!("{}{PATH}", url.base),
            host: url.host.clone(),
            port: url.port,
            // Connections are kept and reused: a chain under load would otherwise
            // open one per request.
            client: reqwest::Client::builder()
                .build()
                .map_err(|e| error_chain(&e)),
        });
        Self {
            target,
            timeout: args.backend_timeout,
            max_hops: args.backend_max_hops,
        }
    }

    /// Calls the backend as hop `hop` of the chain, within the request's trace
    /// (the current OpenTelemetry context), and returns its JSON answer.
    /// `Ok(None)` when no backend is configured.
    pub async fn call(
        &self,
        hop: u32,
        metrics: &Metrics,
    ) -> Result<Option<serde_json::Value>, BackendError> {
        let Some(target) = &self.target else {
            return Ok(None);
        };
        let tracer = server_tracer();
        let parent = Context::current();
        let span = tracer
            .span_builder("GET")
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("server.address", target.host.clone()),
                KeyValue::new("server.port", i64::from(target.port)),
                KeyValue::new("url.full", target.url.clone()),
                KeyValue::new("network.protocol.version", "1.1"),
            ])
            .start_with_context(tracer, &parent);
        let cx = parent.with_span(span);
        let mut headers = HeaderMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(&mut headers));
        headers.insert(HOP_HEADER, HeaderValue::from(hop));

        let started = Instant::now();
        let answer = self.fetch(target, headers).await;
        let outcome = match &answer {
            Ok(_) => ClientOutcome::Answered(200),
            Err(BackendError::HopLimit) => ClientOutcome::Answered(508),
            Err(BackendError::Status(status)) => ClientOutcome::Answered(*status),
            Err(BackendError::Timeout(_)) => ClientOutcome::Failed("timeout"),
            Err(BackendError::Unreachable { .. }) => ClientOutcome::Failed("connect"),
            // A 200 whose body could not be read as JSON.
            Err(BackendError::Body(_)) => ClientOutcome::Answered(200),
        };
        metrics.client_request(
            &ClientCall {
                method: "GET",
                server_address: &target.host,
                server_port: target.port,
                outcome,
            },
            started.elapsed().as_secs_f64(),
        );
        let span = cx.span();
        match outcome {
            ClientOutcome::Answered(status) => {
                span.set_attribute(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status),
                ));
                // A client span is an error for any 4xx or 5xx (semantic conventions).
                if status >= 400 {
                    span.set_attribute(KeyValue::new("error.type", status.to_string()));
                }
            }
            ClientOutcome::Failed(error) => span.set_attribute(KeyValue::new("error.type", error)),
        }
        if let Err(err) = &answer {
            span.set_status(Status::error(err.to_string()));
        }
        span.end();
        answer.map(Some)
    }

    async fn fetch(
        &self,
        target: &Target,
        headers: HeaderMap,
    ) -> Result<serde_json::Value, BackendError> {
        let failed = |err: reqwest::Error| {
            if err.is_timeout() {
                BackendError::Timeout(self.timeout)
            } else {
                BackendError::Unreachable {
                    url: target.url.clone(),
                    reason: error_chain(&err),
                }
            }
        };
        let client = target
            .client
            .as_ref()
            .map_err(|reason| BackendError::Unreachable {
                url: target.url.clone(),
                reason: format!("the HTTP client could not start: {reason}"),
            })?;
        let mut response = client
            .get(&target.url)
            .headers(headers)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(failed)?;
        match response.status().as_u16() {
            200 => {}
            508 => return Err(BackendError::HopLimit),
            status => return Err(BackendError::Status(status)),
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(BackendError::Body(format!(
                    "larger than {MAX_ANSWER_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| BackendError::Body(e.to_string()))
    }
}

/// An error and its causes in one line: reqwest's own message is only "error
/// sending request", the cause (connection refused, ...) is in its sources.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

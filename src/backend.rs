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
use opentelemetry::KeyValue;
use opentelemetry::trace::{Status, TraceContextExt as _};
use serde_json::value::RawValue;

use crate::config::ServeArgs;
use crate::telemetry::Metrics;
use crate::telemetry::metrics::{ClientCall, ClientOutcome};
use crate::telemetry::spans;

/// The request header that counts how many Pulses a chain of backend calls has
/// crossed: absent at the first, then one more at each call.
pub const HOP_HEADER: HeaderName = HeaderName::from_static("x-pulse-hop");

/// The path the call goes to on the backend: the same route, so a chain of
/// Pulses can be any length.
const PATH: &str = "/api/backend";

/// Largest backend answer read: a chain's answers are small JSON (about 100
/// bytes a hop, at most 32 hops), and a backend that sends more, or sends for
/// ever, must not grow this process's memory.
///
/// A call holds the answer read so far (never a buffer larger than this: see
/// `AnswerBuffer`) and the HTTP client's read buffer (hyper's, up to about
/// 400 KiB, not configurable through reqwest); the answer is checked and passed
/// on as text, never as a tree of values (which can take many times its size).
/// With this bound a call stays under [`MAX_CALL_BYTES`].
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// What one backend call may hold in memory at most (tests/integration/backend.rs measures it).
pub const MAX_CALL_BYTES: usize = 1024 * 1024;

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
    /// The backend answered with a redirect, which is not followed: the chain's
    /// backends are named by `--backend-url`, not by what a backend answers (and
    /// following would send the request's `traceparent` wherever `Location` points).
    #[error("the backend answered {0}, a redirect, which Pulse does not follow")]
    Redirect(u16),
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
    client: Result<reqwest::Client, std::sync::Arc<reqwest::Error>>,
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
                // A redirect is an answer (a 502 that says so), not a new target.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(std::sync::Arc::new),
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
    ) -> Result<Option<Box<RawValue>>, BackendError> {
        let Some(target) = &self.target else {
            return Ok(None);
        };
        let cx = spans::start_client(
            "GET",
            [
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("server.address", target.host.clone()),
                KeyValue::new("server.port", i64::from(target.port)),
                KeyValue::new("url.full", target.url.clone()),
                KeyValue::new("network.protocol.version", "1.1"),
            ],
        );
        let mut headers = HeaderMap::new();
        spans::inject(&cx, &mut headers);
        headers.insert(HOP_HEADER, HeaderValue::from(hop));

        let started = Instant::now();
        let answer = self.fetch(target, headers).await;
        let outcome = match &answer {
            Ok(_) => ClientOutcome::Answered(200),
            Err(BackendError::HopLimit) => ClientOutcome::Answered(508),
            Err(BackendError::Status(status) | BackendError::Redirect(status)) => {
                ClientOutcome::Answered(*status)
            }
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
    ) -> Result<Box<RawValue>, BackendError> {
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
            .map_err(|err| BackendError::Unreachable {
                url: target.url.clone(),
                reason: format!(
                    "the HTTP client could not start: {}",
                    error_chain(err.as_ref())
                ),
            })?;
        let mut response = client
            .get(&target.url)
            .headers(headers)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(failed)?;
        match response.status() {
            status if status == reqwest::StatusCode::OK => {}
            status if status.is_redirection() => {
                return Err(BackendError::Redirect(status.as_u16()));
            }
            status if status.as_u16() == 508 => return Err(BackendError::HopLimit),
            status => return Err(BackendError::Status(status.as_u16())),
        }
        let too_large = || BackendError::Body(format!("larger than {MAX_ANSWER_BYTES} bytes"));
        // An announced size over the bound is refused before anything is read.
        if response
            .content_length()
            .is_some_and(|len| len > MAX_ANSWER_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = AnswerBuffer::default();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if !body.push(&chunk) {
                return Err(too_large());
            }
        }
        // Checked as JSON in place: the text is what is passed on.
        let text = String::from_utf8(body.0).map_err(|e| BackendError::Body(e.to_string()))?;
        RawValue::from_string(text).map_err(|e| BackendError::Body(e.to_string()))
    }
}

/// The answer read so far: at most [`MAX_ANSWER_BYTES`], and never a buffer
/// larger than that. A `Vec` that grows by doubling would reserve up to twice the
/// bound, and copy as it grows; this one grows the same way but stops at it.
#[derive(Debug, Default)]
struct AnswerBuffer(Vec<u8>);

impl AnswerBuffer {
    /// Appends `chunk`; `false` (and nothing appended) when that would pass the bound.
    fn push(&mut self, chunk: &[u8]) -> bool {
        let needed = self.0.len() + chunk.len();
        if needed > MAX_ANSWER_BYTES {
            return false;
        }
        if needed > self.0.capacity() {
            let grown = (self.0.capacity() * 2).clamp(needed, MAX_ANSWER_BYTES);
            self.0.reserve_exact(grown - self.0.len());
        }
        self.0.extend_from_slice(chunk);
        true
    }
}

impl BackendError {
    /// What the client is told: what failed, without the backend's address or
    /// the operating system's words (those are in the log line of the failure).
    pub fn public_message(&self) -> String {
        match self {
            Self::Unreachable { .. } => "the backend could not be reached".to_owned(),
            Self::Body(_) => format!(
                "the backend's answer is unusable (not JSON, or larger than {MAX_ANSWER_BYTES} bytes)"
            ),
            other => other.to_string(),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_buffer_never_holds_more_than_the_bound() {
        let mut buffer = AnswerBuffer::default();
        let chunk = [b'x'; 16 * 1024 + 7];
        while buffer.push(&chunk) {
            assert!(
                buffer.0.capacity() <= MAX_ANSWER_BYTES,
                "{}",
                buffer.0.capacity()
            );
        }
        assert!(buffer.0.len() + chunk.len() > MAX_ANSWER_BYTES);
        assert!(buffer.push(&[b'x'; MAX_ANSWER_BYTES][..MAX_ANSWER_BYTES - buffer.0.len()]));
        assert_eq!(buffer.0.len(), MAX_ANSWER_BYTES);
        assert!(!buffer.push(b"x"));
    }

    #[test]
    fn public_messages_name_no_address_and_no_os_error() {
        let err = BackendError::Unreachable {
            url: "http://10.0.0.7:8080/api/backend".into(),
            reason: "error sending request: Connection refused (os error 111)".into(),
        };
        let message = err.public_message();
        assert!(
            !message.contains("10.0.0.7") && !message.contains("os error"),
            "{message}"
        );
        assert!(
            BackendError::Redirect(302)
                .public_message()
                .contains("redirect")
        );
    }
}

//! The one error type every handler returns, and how it becomes an HTTP response.
//!
//! Every failure a client can cause maps to a 4xx with the JSON body
//! `{"error": "...", "field": "..."}`. The response also carries an [`ErrorType`]
//! extension, which the telemetry middleware turns into
//! `api_errors_total{error_type}`: counting happens in one place, for every route,
//! including the rejections axum produces before a handler runs.

use std::borrow::Cow;

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;
use crate::telemetry::labels::MetricLabel;

/// An error answered to a client. Each variant is counted under an
/// `error_type` label of `api_errors_total` ([`MetricLabel`]), written beside its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is well-formed but a value is out of range or malformed (400).
    #[error("{message}")]
    Validation {
        /// Human sentence shown to the client.
        message: Cow<'static, str>,
        /// The offending field, when there is one.
        field: Option<Cow<'static, str>>,
    },
    /// The JSON body parsed but does not have the expected shape (422).
    #[error("{message}")]
    Unprocessable {
        /// Human sentence shown to the client.
        message: Cow<'static, str>,
        /// The offending field, when it can be named.
        field: Option<Cow<'static, str>>,
    },
    /// No such route or no such resource (404).
    #[error("{0}")]
    NotFound(Cow<'static, str>),
    /// The route exists but not for this method (405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The body is larger than `--max-body-bytes` (413).
    #[error("request body is larger than the server accepts (--max-body-bytes)")]
    PayloadTooLarge,
    /// The body is not JSON where JSON is required (415).
    #[error("expected a request with `Content-Type: application/json`")]
    UnsupportedMediaType,
    /// `/api/error`: the demo's deliberate failure (500).
    #[error("simulated error")]
    Simulated,
    /// A failure injected by `--fault-error-rate` (500).
    #[error("injected fault")]
    Injected,
    /// The handler did not finish within `--request-timeout` (503).
    #[error("the request did not complete within {0:?}")]
    Timeout(std::time::Duration),
    /// The store is at `--max-store-bytes`; nothing was written (507).
    #[error("the store is full (--max-store-bytes); delete something first")]
    StoreFull,
    /// `--max-concurrency` requests are already being served (503).
    #[error("the server is at its concurrency limit; retry shortly")]
    Overloaded,
    /// `GET /api/backend`: the backend could not be reached, or answered with an
    /// error or something that is not Pulse's JSON (502).
    #[error("the backend failed: {0}")]
    BadGateway(Cow<'static, str>),
    /// `GET /api/backend`: the backend did not answer within `--backend-timeout` (504).
    #[error("the backend did not answer within {0:?} (--backend-timeout)")]
    GatewayTimeout(std::time::Duration),
    /// `GET /api/backend`: the chain of backend calls is `--backend-max-hops` deep (508).
    #[error(
        "the chain of backend calls reached its limit of {0} hops (--backend-max-hops): does a backend URL point back at a caller?"
    )]
    LoopDetected(u32),
    /// The database (`--database-url`) did not answer in time or failed (503,
    /// `Retry-After`); a write that got this was not acknowledged.
    #[error("the database is unavailable; retry shortly")]
    DatabaseUnavailable,
    /// A bug or a broken dependency (500). The detail is logged, not returned.
    #[error("internal error")]
    Internal(String),
}

/// The `error_type` label of an error response, left in the response extensions
/// for the telemetry middleware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorType(pub &'static str);

impl MetricLabel for ErrorType {
    fn metric_label(&self) -> &'static str {
        self.0
    }
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, as a sentence.
    #[schema(example = "Users cannot be negative")]
    pub error: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "users")]
    pub field: Option<String>,
}

impl ApiError {
    /// A 400 about one field.
    pub fn invalid(field: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::Validation {
            message: message.into(),
            field: Some(Cow::Borrowed(field)),
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation { .. } => StatusCode::BAD_REQUEST,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Simulated | Self::Injected | Self::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Self::Timeout(_) | Self::Overloaded | Self::DatabaseUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::StoreFull => StatusCode::INSUFFICIENT_STORAGE,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::LoopDetected(_) => StatusCode::LOOP_DETECTED,
        }
    }

    /// A 422 about one field of a JSON body.
    pub fn unprocessable(field: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::Unprocessable {
            message: message.into(),
            field: Some(Cow::Borrowed(field)),
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Self::Validation { field, .. } | Self::Unprocessable { field, .. } => field.as_deref(),
            _ => None,
        }
    }
}

impl MetricLabel for ApiError {
    /// How `api_errors_total` counts this error.
    fn metric_label(&self) -> &'static str {
        match self {
            Self::Validation { .. } | Self::Unprocessable { .. } => "validation",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Simulated => "simulated",
            Self::Injected => "injected",
            Self::Timeout(_) => "timeout",
            Self::Overloaded => "overloaded",
            Self::StoreFull => "store_full",
            Self::BadGateway(_) => "backend",
            Self::GatewayTimeout(_) => "backend_timeout",
            Self::LoopDetected(_) => "hop_limit",
            Self::DatabaseUnavailable => "database",
            Self::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(detail) = &self {
            // The client gets a generic sentence; operators get the cause.
            tracing::error!(error = %detail, "internal error");
        }
        let status = self.status();
        let body = ErrorBody {
            error: self.to_string(),
            field: self.field().map(str::to_owned),
        };
        let mut response = (status, axum::Json(body)).into_response();
        response
            .extensions_mut()
            .insert(ErrorType(self.metric_label()));
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The body is not read, so the connection cannot carry another request:
            // say so, or a client would send its next request into a closing socket.
            response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        // Worth retrying shortly: an overload, a timeout, a backend that failed.
        if matches!(
            status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
        ) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Full { .. } => Self::StoreFull,
            StoreError::Unavailable => Self::DatabaseUnavailable,
            StoreError::Corrupt(detail) => Self::Internal(detail),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::Validation {
                message: rejection.body_text().into(),
                field: None,
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
            JsonRejection::BytesRejection(inner) => inner.into(),
            JsonRejection::JsonDataError(err) => ApiError::Unprocessable {
                field: serde_field(&err),
                message: err.body_text().into(),
            },
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            other => ApiError::Validation {
                message: other.body_text().into(),
                field: None,
            },
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        let field = match &rejection {
            QueryRejection::FailedToDeserializeQueryString(err) => serde_field(err),
            _ => None,
        };
        ApiError::Validation {
            message: rejection.body_text().into(),
            field,
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        use axum::extract::path::ErrorKind;
        match rejection {
            PathRejection::FailedToDeserializePathParams(err) => {
                let field = match err.kind() {
                    ErrorKind::ParseErrorAtKey { key, .. }
                    | ErrorKind::DeserializeError { key, .. } => Some(Cow::Owned(key.clone())),
                    _ => None,
                };
                ApiError::Validation {
                    message: err.body_text().into(),
                    field,
                }
            }
            other => ApiError::Internal(other.body_text()),
        }
    }
}

/// Names the field a serde error is about: the path serde_path_to_error
/// recorded (axum's extractors deserialise through it). A missing field is
/// reported at its parent, so required fields are checked by the handlers,
/// which name them.
fn serde_field(err: &(dyn std::error::Error + 'static)) -> Option<Cow<'static, str>> {
    let mut source = err.source();
    while let Some(cause) = source {
        let path = cause
            .downcast_ref::<serde_path_to_error::Error<serde_json::Error>>()
            .map(|e| e.path().to_string())
            .or_else(|| {
                cause
                    .downcast_ref::<serde_path_to_error::Error<serde_urlencoded::de::Error>>()
                    .map(|e| e.path().to_string())
            });
        if let Some(path) = path.filter(|p| p != ".") {
            return Some(Cow::Owned(path));
        }
        source = cause.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_type_has_a_4xx_or_a_documented_5xx() {
        let client_errors = [
            ApiError::invalid("x", "bad"),
            ApiError::NotFound("nope".into()),
            ApiError::MethodNotAllowed,
            ApiError::PayloadTooLarge,
            ApiError::UnsupportedMediaType,
        ];
        for err in client_errors {
            assert!(err.status().is_client_error(), "{err:?}");
        }
    }
}

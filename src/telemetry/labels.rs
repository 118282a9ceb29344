//! The label vocabularies of Pulse's metrics: closed sets, so no request can
//! invent a label value (and with it a series).

use axum::http::Method;
use opentelemetry::KeyValue;

/// The `method` label (and `http.request.method`): the standard methods, or
/// `_OTHER` for anything else, as the OpenTelemetry HTTP conventions say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpMethod {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// CONNECT
    Connect,
    /// OPTIONS
    Options,
    /// TRACE
    Trace,
    /// PATCH
    Patch,
    /// Any other method.
    Other,
}

impl HttpMethod {
    /// Every value, in [`HttpMethod::index`] order.
    pub const ALL: [Self; 10] = [
        Self::Get,
        Self::Head,
        Self::Post,
        Self::Put,
        Self::Delete,
        Self::Connect,
        Self::Options,
        Self::Trace,
        Self::Patch,
        Self::Other,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
            Self::Options => "OPTIONS",
            Self::Trace => "TRACE",
            Self::Patch => "PATCH",
            Self::Other => "_OTHER",
        }
    }

    /// Position in [`HttpMethod::ALL`], for tables indexed by method.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl From<&Method> for HttpMethod {
    fn from(method: &Method) -> Self {
        match *method {
            Method::GET => Self::Get,
            Method::HEAD => Self::Head,
            Method::POST => Self::Post,
            Method::PUT => Self::Put,
            Method::DELETE => Self::Delete,
            Method::CONNECT => Self::Connect,
            Method::OPTIONS => Self::Options,
            Method::TRACE => Self::Trace,
            Method::PATCH => Self::Patch,
            _ => Self::Other,
        }
    }
}

/// The `error_type` label of `api_errors_total`: every kind of failure Pulse
/// answers or closes a connection for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A value out of range or malformed (400, 422).
    Validation,
    /// No such route or resource (404).
    NotFound,
    /// The route exists, not for this method (405).
    MethodNotAllowed,
    /// The body is over `--max-body-bytes` (413).
    PayloadTooLarge,
    /// Not JSON where JSON is required (415).
    UnsupportedMediaType,
    /// `/api/error` (500).
    Simulated,
    /// Fault injection (500).
    Injected,
    /// Over `--request-timeout` (503).
    Timeout,
    /// Over `--max-concurrency` (503).
    Overloaded,
    /// The store is at `--max-store-bytes` (507).
    StoreFull,
    /// A bug (500).
    Internal,
    /// The backend failed or answered an error (502).
    Backend,
    /// The backend did not answer within `--backend-timeout` (504).
    BackendTimeout,
    /// The chain of backend calls is `--backend-max-hops` deep (508).
    HopLimit,
    /// The database did not answer in time or failed (503).
    Database,
    /// A request head not complete within `--header-read-timeout` (connection closed).
    HeaderTimeout,
    /// A request hyper could not parse (it answers 400, 414 or 431 itself).
    MalformedRequest,
    /// A response write that made no progress within `--write-timeout` (connection closed).
    WriteTimeout,
}

impl ErrorKind {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Validation => "validation",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Simulated => "simulated",
            Self::Injected => "injected",
            Self::Timeout => "timeout",
            Self::Overloaded => "overloaded",
            Self::StoreFull => "store_full",
            Self::Internal => "internal",
            Self::Backend => "backend",
            Self::BackendTimeout => "backend_timeout",
            Self::HopLimit => "hop_limit",
            Self::Database => "database",
            Self::HeaderTimeout => "header_timeout",
            Self::MalformedRequest => "malformed_request",
            Self::WriteTimeout => "write_timeout",
        }
    }
}

/// The `result` label of `pulse_config_reloads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// New settings are in force.
    Applied,
    /// The change was refused; the previous settings stay.
    Rejected,
}

impl ReloadResult {
    /// Every value.
    pub const ALL: [Self; 2] = [Self::Applied, Self::Rejected];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Rejected => "rejected",
        }
    }

    /// As an attribute.
    pub fn label(self) -> KeyValue {
        KeyValue::new("result", self.as_str())
    }
}

/// The `operation` label of `pulse_kube_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KubeOperation {
    /// Building a client from the in-cluster config or kubeconfig.
    Connect,
    /// Watching the runtime ConfigMap.
    Watch,
    /// Publishing an Event.
    Event,
}

impl KubeOperation {
    /// Every value.
    pub const ALL: [Self; 3] = [Self::Connect, Self::Watch, Self::Event];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Watch => "watch",
            Self::Event => "event",
        }
    }

    /// As an attribute.
    pub fn label(self) -> KeyValue {
        KeyValue::new("operation", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_index_their_table_and_unknown_ones_collapse() {
        for (i, m) in HttpMethod::ALL.iter().enumerate() {
            assert_eq!(m.index(), i);
        }
        assert_eq!(HttpMethod::from(&Method::PATCH).as_str(), "PATCH");
        let custom = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(HttpMethod::from(&custom).as_str(), "_OTHER");
    }
}

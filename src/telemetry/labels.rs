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

/// A failure counted in `api_errors_total`, under its `error_type` label.
///
/// Each error type says its own label, next to its variants (controller-rs's
/// `metric_label()`): the answers a client gets (`crate::error::ApiError`) and the
/// connections closed before any route ran (`server/connections.rs`). The labels
/// are `&'static str` from those matches alone, so the set stays closed.
pub trait MetricLabel {
    /// The `error_type` label value.
    fn metric_label(&self) -> &'static str;
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

/// The `entity` label of the cache's series: what was looked up or invalidated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheEntity {
    /// One user (`GET /api/users/{id}`).
    User,
    /// The users list.
    Users,
    /// One item (`GET /data/{key}`).
    Item,
    /// The items list.
    Items,
}

impl CacheEntity {
    /// Every value.
    pub const ALL: [Self; 4] = [Self::User, Self::Users, Self::Item, Self::Items];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Users => "users",
            Self::Item => "item",
            Self::Items => "items",
        }
    }

    /// As an attribute.
    pub fn label(self) -> KeyValue {
        KeyValue::new("entity", self.as_str())
    }
}

/// The `result` label of `pulse_cache_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheResult {
    /// Served from Redis.
    Hit,
    /// Not in Redis: read from PostgreSQL (and stored, unless a write intervened).
    Miss,
    /// Redis failed or was too slow, or held an unreadable value: read from PostgreSQL.
    Error,
}

impl CacheResult {
    /// Every value.
    pub const ALL: [Self; 3] = [Self::Hit, Self::Miss, Self::Error];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Error => "error",
        }
    }

    /// As an attribute.
    pub fn label(self) -> KeyValue {
        KeyValue::new("result", self.as_str())
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

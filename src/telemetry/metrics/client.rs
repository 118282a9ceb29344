//! Calls to the backend: `http_client_request_duration_seconds`.

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter};

use super::super::native_series::{Labels, NativeFamily, SeriesKey};
use super::super::schema::DURATION_BUCKETS;

/// An HTTP client call, as `http_client_request_duration_seconds` labels it.
#[derive(Debug, Clone, Copy)]
pub struct ClientCall<'a> {
    /// `http.request.method`.
    pub method: &'static str,
    /// `server.address`: the backend's host.
    pub server_address: &'a str,
    /// `server.port`.
    pub server_port: u16,
    /// How it ended.
    pub outcome: ClientOutcome,
}

/// How a client call ended: the status it got, or why it got none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientOutcome {
    /// `http.response.status_code`.
    Answered(u16),
    /// `error.type`: `timeout`, `connect`, or another short name of the failure.
    Failed(&'static str),
}

/// A series of `http_client_request_duration_seconds`, as its native histogram is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientSeries {
    method: &'static str,
    address: String,
    port: u16,
    outcome: ClientOutcome,
}

impl SeriesKey for ClientSeries {
    fn labels(&self) -> Labels {
        let outcome = match self.outcome {
            ClientOutcome::Answered(status) => ("http_response_status_code", status.to_string()),
            ClientOutcome::Failed(error) => ("error_type", error.to_owned()),
        };
        vec![
            ("http_request_method".to_owned(), self.method.to_owned()),
            ("server_address".to_owned(), self.address.clone()),
            ("server_port".to_owned(), self.port.to_string()),
            (outcome.0.to_owned(), outcome.1),
        ]
    }
}

/// `http_client_request_duration_seconds{http_request_method, server_address,
/// server_port, http_response_status_code | error_type}`: calls to the backend.
pub struct ClientMetrics {
    duration: Histogram<f64>,
    /// Its native histograms, per series (one key copy per call: a network call's
    /// cost dwarfs it).
    pub(in crate::telemetry) native: NativeFamily<ClientSeries>,
}

impl ClientMetrics {
    /// Creates its instrument on `meter`.
    pub(super) fn new(meter: &Meter) -> Self {
        Self {
            // OpenTelemetry's `http.client.request.duration`, as the exporter names it.
            duration: meter
                .f64_histogram("http_client_request_duration")
                .with_unit("s")
                .with_description(
                    "Duration of HTTP client requests (calls to the backend) in seconds",
                )
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            native: NativeFamily::default(),
        }
    }

    /// One call to the backend.
    pub(super) fn record(&self, call: &ClientCall<'_>, seconds: f64) {
        let mut attributes = Vec::with_capacity(4);
        attributes.push(KeyValue::new("http.request.method", call.method));
        attributes.push(KeyValue::new(
            "server.address",
            call.server_address.to_owned(),
        ));
        attributes.push(KeyValue::new("server.port", i64::from(call.server_port)));
        match call.outcome {
            ClientOutcome::Answered(status) => {
                attributes.push(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status),
                ));
            }
            ClientOutcome::Failed(error) => attributes.push(KeyValue::new("error.type", error)),
        }
        let series = ClientSeries {
            method: call.method,
            address: call.server_address.to_owned(),
            port: call.server_port,
            outcome: call.outcome,
        };
        // Native first: the protobuf encoder reads it after the SDK's (protobuf.rs).
        self.native.record(&series, seconds);
        self.duration.record(seconds, &attributes);
    }
}

//! The database clients' telemetry, as the OpenTelemetry database conventions name
//! it: a CLIENT span per operation (`db.system.name`, `db.operation.name`,
//! `db.collection.name` where there is one, the server; never the query's
//! parameters, keys or values), `db_client_operation_duration_seconds` (labelled
//! with `db_system_name`: `postgresql` for the store, `redis` for the cache), and
//! the connection pool's gauges.

use std::time::Duration;

use opentelemetry::trace::{Status, TraceContextExt as _};
use opentelemetry::{Context, KeyValue};

use super::Metrics;
use super::metrics::DbSeries;
use super::native_series::NativeFamily;

pub use super::metrics::PoolState;

/// Spans and the duration histogram of one database server's operations.
#[derive(Debug)]
pub struct DbTelemetry {
    duration: opentelemetry::metrics::Histogram<f64>,
    /// The native histograms of the duration (telemetry/native.rs).
    native: std::sync::Arc<NativeFamily<DbSeries>>,
    system: &'static str,
    address: String,
    port: u16,
}

impl DbTelemetry {
    /// For PostgreSQL operations on `server` (host, port), recorded into `metrics`.
    pub fn new(metrics: &Metrics, server: (String, u16)) -> Self {
        Self::of("postgresql", metrics, server)
    }

    /// For Redis commands on `server` (host, port), recorded into `metrics`.
    pub fn redis(metrics: &Metrics, server: (String, u16)) -> Self {
        Self::of("redis", metrics, server)
    }

    fn of(system: &'static str, metrics: &Metrics, (address, port): (String, u16)) -> Self {
        Self {
            duration: metrics.db.duration.clone(),
            native: metrics.db.native.clone(),
            system,
            address,
            port,
        }
    }

    /// Starts the CLIENT span of an operation on `collection`, child of the current
    /// request's span.
    pub fn start(&self, operation: &'static str, collection: &'static str) -> Context {
        let mut attributes = self.server(operation);
        attributes.push(KeyValue::new("db.collection.name", collection));
        super::spans::start_client(format!("{operation} {collection}"), attributes)
    }

    /// Starts the CLIENT span of a command that names no collection (a Redis
    /// command: its keys are data, never an attribute); the span is named after
    /// the command, as the conventions say when there is no target.
    pub fn start_command(&self, operation: &'static str) -> Context {
        super::spans::start_client(operation, self.server(operation))
    }

    fn server(&self, operation: &'static str) -> Vec<KeyValue> {
        vec![
            KeyValue::new("db.system.name", self.system),
            KeyValue::new("db.operation.name", operation),
            KeyValue::new("server.address", self.address.clone()),
            KeyValue::new("server.port", i64::from(self.port)),
        ]
    }

    /// Ends the operation: its span (with `error.type` when it failed) and its
    /// duration.
    pub fn end(
        &self,
        span: Context,
        operation: &'static str,
        collection: &'static str,
        took: Duration,
        error: Option<&'static str>,
    ) {
        self.finish(span, operation, Some(collection), took, error);
    }

    /// Ends a command started with [`DbTelemetry::start_command`].
    pub fn end_command(
        &self,
        span: Context,
        operation: &'static str,
        took: Duration,
        error: Option<&'static str>,
    ) {
        self.finish(span, operation, None, took, error);
    }

    fn finish(
        &self,
        span: Context,
        operation: &'static str,
        collection: Option<&'static str>,
        took: Duration,
        error: Option<&'static str>,
    ) {
        let mut attributes = vec![
            KeyValue::new("db.system.name", self.system),
            KeyValue::new("db.operation.name", operation),
        ];
        if let Some(collection) = collection {
            attributes.push(KeyValue::new("db.collection.name", collection));
        }
        let span = span.span();
        if let Some(error) = error {
            span.set_attribute(KeyValue::new("error.type", error));
            span.set_status(Status::error(""));
            attributes.push(KeyValue::new("error.type", error));
        }
        span.end();
        let seconds = took.as_secs_f64();
        let series = DbSeries {
            system: self.system,
            operation,
            collection,
            error,
        };
        // Native first: the protobuf encoder reads it after the SDK's (protobuf.rs).
        self.native.record(&series, seconds);
        self.duration.record(seconds, &attributes);
    }
}

//! The database client's telemetry, as the OpenTelemetry database conventions name
//! it: a CLIENT span per store operation (`db.system.name`, `db.operation.name`,
//! `db.collection.name`, the server; never the query's parameters),
//! `db_client_operation_duration_seconds`, and the connection pool's gauges.

use std::time::Duration;

use opentelemetry::trace::{Status, TraceContextExt as _};
use opentelemetry::{Context, KeyValue};

use super::Metrics;

pub use super::metrics::PoolState;

/// Spans and the duration histogram of one database server's operations.
#[derive(Debug)]
pub struct DbTelemetry {
    duration: opentelemetry::metrics::Histogram<f64>,
    address: String,
    port: u16,
}

impl DbTelemetry {
    /// For operations on `server` (host, port), recorded into `metrics`.
    pub fn new(metrics: &Metrics, (address, port): (String, u16)) -> Self {
        Self {
            duration: metrics.db.duration.clone(),
            address,
            port,
        }
    }

    /// Starts the CLIENT span of an operation, child of the current request's span.
    pub fn start(&self, operation: &'static str, collection: &'static str) -> Context {
        super::spans::start_client(
            format!("{operation} {collection}"),
            [
                KeyValue::new("db.system.name", "postgresql"),
                KeyValue::new("db.operation.name", operation),
                KeyValue::new("db.collection.name", collection),
                KeyValue::new("server.address", self.address.clone()),
                KeyValue::new("server.port", i64::from(self.port)),
            ],
        )
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
        let mut attributes = vec![
            KeyValue::new("db.operation.name", operation),
            KeyValue::new("db.collection.name", collection),
        ];
        let span = span.span();
        if let Some(error) = error {
            span.set_attribute(KeyValue::new("error.type", error));
            span.set_status(Status::error(""));
            attributes.push(KeyValue::new("error.type", error));
        }
        span.end();
        self.duration.record(took.as_secs_f64(), &attributes);
    }
}

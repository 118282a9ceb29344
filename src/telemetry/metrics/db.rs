//! The database clients' instruments: the operation duration of the PostgreSQL
//! store and the Redis cache (recorded by `telemetry/db.rs`) and, at scrape time,
//! the pool's state.

use opentelemetry::metrics::{Histogram, Meter};

use super::super::schema::DURATION_BUCKETS;

/// The pool's state at one scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    /// Connections handed out.
    pub used: u64,
    /// Connections open and idle.
    pub idle: u64,
    /// `--database-pool-size`.
    pub max: u64,
    /// Operations waiting for a connection.
    pub pending: u64,
}

/// `db_client_operation_duration_seconds{db_system_name, db_operation_name, db_collection_name}`.
pub struct DbMetrics {
    pub(in crate::telemetry) duration: Histogram<f64>,
}

impl DbMetrics {
    /// Creates its instrument on `meter`.
    pub(super) fn new(meter: &Meter) -> Self {
        Self {
            // OpenTelemetry's `db.client.operation.duration`, as the exporter names it.
            duration: meter
                .f64_histogram("db_client_operation_duration")
                .with_unit("s")
                .with_description(
                    "Duration of database operations (the PostgreSQL store, the Redis cache) in seconds",
                )
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
        }
    }
}

//! The database clients' instruments: the operation duration of the PostgreSQL
//! store and the Redis cache (recorded by `telemetry/db.rs`) and, at scrape time,
//! the pool's state.

use std::sync::Arc;

use opentelemetry::metrics::{Histogram, Meter};

use super::super::native_series::{Labels, NativeFamily, SeriesKey};
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

/// A series of `db_client_operation_duration_seconds`, as its native histogram is
/// kept: the values it is recorded with, all Pulse's own names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DbSeries {
    /// `db_system_name`.
    pub system: &'static str,
    /// `db_operation_name`.
    pub operation: &'static str,
    /// `db_collection_name`, where there is one.
    pub collection: Option<&'static str>,
    /// `error_type`, when it failed.
    pub error: Option<&'static str>,
}

impl SeriesKey for DbSeries {
    fn labels(&self) -> Labels {
        let mut labels = vec![
            ("db_system_name".to_owned(), self.system.to_owned()),
            ("db_operation_name".to_owned(), self.operation.to_owned()),
        ];
        if let Some(collection) = self.collection {
            labels.push(("db_collection_name".to_owned(), collection.to_owned()));
        }
        if let Some(error) = self.error {
            labels.push(("error_type".to_owned(), error.to_owned()));
        }
        labels
    }
}

/// `db_client_operation_duration_seconds{db_system_name, db_operation_name, db_collection_name}`.
pub struct DbMetrics {
    pub(in crate::telemetry) duration: Histogram<f64>,
    /// Its native histograms, per series; shared with each `DbTelemetry`.
    pub(in crate::telemetry) native: Arc<NativeFamily<DbSeries>>,
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
            native: Arc::default(),
        }
    }
}

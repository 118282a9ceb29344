//! The gauges and counters read at scrape time: their sources are known only after
//! start-up (the store, the log queue, the listeners, the span exporter, the
//! database pool), and they cost nothing between scrapes.

use std::sync::Arc;

use opentelemetry::KeyValue;

use super::super::export::SpanCounts;
use super::Metrics;
use super::db::PoolState;

impl Metrics {
    /// `pulse_users` and `pulse_data_items`: read from the store when scraped, so
    /// they are always what the store holds and cost handlers nothing.
    pub fn observe_stored(
        &self,
        users: impl Fn() -> u64 + Send + Sync + 'static,
        items: impl Fn() -> u64 + Send + Sync + 'static,
    ) {
        self.meter
            .u64_observable_gauge("pulse_users")
            .with_description("Users currently stored")
            .with_callback(move |observer| observer.observe(users(), &[]))
            .build();
        self.meter
            .u64_observable_gauge("pulse_data_items")
            .with_description("Key-value items currently stored")
            .with_callback(move |observer| observer.observe(items(), &[]))
            .build();
    }

    /// `pulse_log_lines_dropped_total`: log lines stdout did not take in time.
    pub fn observe_dropped_log_lines(&self, dropped: impl Fn() -> u64 + Send + Sync + 'static) {
        self.meter
            .u64_observable_counter("pulse_log_lines_dropped")
            .with_description(
                "Log lines dropped because stdout did not keep up (the queue was full)",
            )
            .with_callback(move |observer| observer.observe(dropped(), &[]))
            .build();
    }

    /// `pulse_connections_open` and `pulse_connections_rejected_total`: TCP
    /// connections open now, and those closed at once because
    /// `--max-connections` were open (server/connections.rs).
    pub fn observe_connections(
        &self,
        open: impl Fn() -> u64 + Send + Sync + 'static,
        rejected: impl Fn() -> u64 + Send + Sync + 'static,
    ) {
        self.meter
            .u64_observable_gauge("pulse_connections_open")
            .with_description("TCP connections open (all listeners)")
            .with_callback(move |observer| observer.observe(open(), &[]))
            .build();
        self.meter
            .u64_observable_counter("pulse_connections_rejected")
            .with_description(
                "TCP connections closed as soon as accepted because --max-connections were open",
            )
            .with_callback(move |observer| observer.observe(rejected(), &[]))
            .build();
    }

    /// `pulse_spans_exported_total` and `pulse_spans_dropped_total{reason}`: where
    /// the finished spans went (telemetry/export.rs).
    pub fn observe_span_export(&self, counts: Arc<SpanCounts>) {
        let exported = Arc::clone(&counts);
        self.meter
            .u64_observable_counter("pulse_spans_exported")
            .with_description("Spans the OTLP collector accepted")
            .with_callback(move |observer| observer.observe(exported.exported(), &[]))
            .build();
        self.meter
            .u64_observable_counter("pulse_spans_dropped")
            .with_description(
                "Spans lost before reaching the OTLP collector: the export queue was full \
                 (queue_full) or the export failed (export_failed)",
            )
            .with_callback(move |observer| {
                observer.observe(
                    counts.queue_full(),
                    &[KeyValue::new("reason", "queue_full")],
                );
                observer.observe(
                    counts.export_failed(),
                    &[KeyValue::new("reason", "export_failed")],
                );
            })
            .build();
    }

    /// `pulse_database_available`: 1 while the database answers (the readiness
    /// check), 0 while it does not. Scraped from unready pods too, so an outage stays
    /// visible after the Service stops sending them the requests that would count it.
    pub fn observe_database_available(&self, available: impl Fn() -> bool + Send + Sync + 'static) {
        self.meter
            .u64_observable_gauge("pulse_database_available")
            .with_description(
                "1 while the PostgreSQL store's database answers, 0 while it does not",
            )
            .with_callback(move |observer| observer.observe(u64::from(available()), &[]))
            .build();
    }

    /// The database pool's gauges, read at scrape time: `db_client_connection_count{
    /// db_client_connection_state="used"|"idle"}`, `db_client_connection_max`,
    /// `db_client_connection_pending_requests`.
    pub fn observe_db_pool(&self, state: impl Fn() -> PoolState + Send + Sync + 'static) {
        let state = Arc::new(state);
        let count = Arc::clone(&state);
        self.meter
            .u64_observable_gauge("db_client_connection_count")
            .with_description("Database connections open, by state (used or idle)")
            .with_callback(move |observer| {
                let now = count();
                observer.observe(
                    now.used,
                    &[KeyValue::new("db.client.connection.state", "used")],
                );
                observer.observe(
                    now.idle,
                    &[KeyValue::new("db.client.connection.state", "idle")],
                );
            })
            .build();
        let max = Arc::clone(&state);
        self.meter
            .u64_observable_gauge("db_client_connection_max")
            .with_description("Most database connections the pool may open (--database-pool-size)")
            .with_callback(move |observer| observer.observe(max().max, &[]))
            .build();
        self.meter
            .u64_observable_gauge("db_client_connection_pending_requests")
            .with_description("Store operations waiting for a free database connection")
            .with_callback(move |observer| observer.observe(state().pending, &[]))
            .build();
    }
}

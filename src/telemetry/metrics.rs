//! Pulse's metrics: OpenTelemetry instruments exported in Prometheus format.
//!
//! Instruments are recorded through the OTel metrics API; `opentelemetry-prometheus`
//! exposes them through one [`prometheus::Registry`] that also holds the process
//! collector, so `/metrics` is a single `gather()`. The exporter derives the
//! exported name from the instrument: counters gain `_total`, unit `s` gains
//! `_seconds` and `By` gains `_bytes`. Instruments are therefore named so that
//! the *exported* names are exactly the contract names (asserted by tests).

use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter, MeterProvider as _, UpDownCounter};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Encoder as _, TextEncoder};

use super::TelemetryError;
use super::exemplars::ExemplarStore;
use super::export::SpanCounts;
use super::labels::{ErrorKind, KubeOperation, ReloadResult};
use crate::BuildInfo;

/// `Content-Type` of `/metrics`. Prometheus 3 refuses a scrape without a version.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub use super::schema::{DURATION_BUCKETS, HTTP_DURATION_FAMILY, SIZE_BUCKETS};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientOutcome {
    /// `http.response.status_code`.
    Answered(u16),
    /// `error.type`: `timeout`, `connect`, or another short name of the failure.
    Failed(&'static str),
}

/// Every instrument Pulse records, and the registry they are exported through.
///
/// Recording goes through methods named for what happened (`api_error`,
/// `config_reload`, ...) that take typed label values ([`super::labels`]), so
/// label names and values are written in one place. The per-request HTTP
/// instruments are bound per route by [`super::routes`].
pub struct Metrics {
    registry: prometheus::Registry,
    provider: SdkMeterProvider,
    /// Kept to register observable gauges whose source is known only later.
    meter: Meter,
    /// `http_requests_total{method, route, status}`
    pub(super) http_requests: Counter<u64>,
    /// `http_request_duration_seconds{method, route}`
    pub(super) http_duration: Histogram<f64>,
    /// `http_requests_in_progress{method, route}`
    pub(super) http_in_progress: UpDownCounter<i64>,
    /// `http_request_size_bytes{method, route}`
    pub(super) http_request_size: Histogram<u64>,
    /// `http_response_size_bytes{method, route, status}`
    pub(super) http_response_size: Histogram<u64>,
    /// `app_requests_total`: API requests, probes and `/metrics` excluded.
    pub(super) app_requests: Counter<u64>,
    /// `api_errors_total{error_type}`
    api_errors: Counter<u64>,
    /// `app_active_users`, set by `/update`.
    active_users: Gauge<i64>,
    /// `app_cpu_usage_percent`, set by `/cpu`.
    cpu_usage_percent: Gauge<f64>,
    /// `pulse_config_reloads_total{result}`: runtime-settings changes applied or rejected.
    config_reloads: Counter<u64>,
    /// `pulse_kube_errors_total{operation}`: failed Kubernetes API calls.
    kube_errors: Counter<u64>,
    /// `pulse_runtime_settings{setting}`: the numeric runtime settings in force.
    runtime_settings: Gauge<f64>,
    /// `http_client_request_duration_seconds{http_request_method, server_address,
    /// server_port, http_response_status_code | error_type}`: calls to the backend.
    client_duration: Histogram<f64>,
    /// The exemplars of `http_request_duration_seconds`, per series.
    pub(super) exemplars: ExemplarStore,
    /// `db_client_operation_duration_seconds{db_operation_name, db_collection_name}`:
    /// the PostgreSQL store's operations (telemetry/db.rs).
    pub(super) db_duration: Histogram<f64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Creates the registry, the exporter and every instrument.
    ///
    /// `started` is the process start, the origin of `process_uptime_seconds`.
    pub fn new(
        resource: Resource,
        build: &BuildInfo,
        started: Instant,
    ) -> Result<Arc<Self>, TelemetryError> {
        let registry = prometheus::Registry::new();
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .map_err(|e| TelemetryError::Metrics(e.to_string()))?;

        // with_registry is required: without it the exporter writes to a private
        // registry and nothing reaches /metrics.
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .scope_info_enabled(false)
            .build()
            .map_err(|e| TelemetryError::Metrics(e.to_string()))?;
        let provider = SdkMeterProvider::builder()
            .with_reader(exporter)
            .with_resource(resource)
            .build();
        let meter = provider.meter("pulse");
        let metrics = Self::instruments(registry, provider.clone(), meter);
        metrics.register_info(build, started);
        Ok(Arc::new(metrics))
    }

    fn instruments(
        registry: prometheus::Registry,
        provider: SdkMeterProvider,
        meter: Meter,
    ) -> Self {
        Self {
            registry,
            provider,
            http_requests: meter
                .u64_counter("http_requests")
                .with_description("Total HTTP requests by method, route template and status")
                .build(),
            http_duration: meter
                .f64_histogram("http_request_duration")
                .with_unit("s")
                .with_description("HTTP request latency in seconds")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            http_in_progress: meter
                .i64_up_down_counter("http_requests_in_progress")
                .with_description("HTTP requests currently being served")
                .build(),
            // OpenTelemetry's `http.client.request.duration`, as the exporter names it.
            client_duration: meter
                .f64_histogram("http_client_request_duration")
                .with_unit("s")
                .with_description(
                    "Duration of HTTP client requests (calls to the backend) in seconds",
                )
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            http_request_size: meter
                .u64_histogram("http_request_size")
                .with_unit("By")
                .with_description("HTTP request body size in bytes")
                .with_boundaries(SIZE_BUCKETS.to_vec())
                .build(),
            http_response_size: meter
                .u64_histogram("http_response_size")
                .with_unit("By")
                .with_description("HTTP response body size in bytes")
                .with_boundaries(SIZE_BUCKETS.to_vec())
                .build(),
            api_errors: meter
                .u64_counter("api_errors")
                .with_description("API errors answered, by error type")
                .build(),
            app_requests: meter
                .u64_counter("app_requests")
                .with_description("Total API requests (probes and /metrics excluded)")
                .build(),
            active_users: meter
                .i64_gauge("app_active_users")
                .with_description("Active users online, as last set by /update")
                .build(),
            cpu_usage_percent: meter
                .f64_gauge("app_cpu_usage_percent")
                .with_description("Simulated CPU usage, as last set by /cpu")
                .build(),
            config_reloads: meter
                .u64_counter("pulse_config_reloads")
                .with_description("Runtime settings changes, by result (applied or rejected)")
                .build(),
            kube_errors: meter
                .u64_counter("pulse_kube_errors")
                .with_description("Failed Kubernetes API operations, by operation")
                .build(),
            runtime_settings: meter
                .f64_gauge("pulse_runtime_settings")
                .with_description("Numeric runtime settings in force, by setting")
                .build(),
            exemplars: ExemplarStore::default(),
            // OpenTelemetry's `db.client.operation.duration`, as the exporter names it.
            db_duration: meter
                .f64_histogram("db_client_operation_duration")
                .with_unit("s")
                .with_description(
                    "Duration of database operations (the PostgreSQL store) in seconds",
                )
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            meter,
        }
    }

    /// Build info and uptime: values that exist from the first scrape on.
    fn register_info(&self, build: &BuildInfo, started: Instant) {
        self.meter
            .u64_gauge("pulse_build_info")
            .with_description("Always 1; labelled with the running version and revision")
            .build()
            .record(
                1,
                &[
                    KeyValue::new("version", build.version),
                    KeyValue::new("revision", build.revision),
                ],
            );
        // An observable gauge is computed at scrape time, so it costs nothing between scrapes.
        self.meter
            .f64_observable_gauge("process_uptime")
            .with_unit("s")
            .with_description("Seconds since the process started")
            .with_callback(move |observer| {
                observer.observe(started.elapsed().as_secs_f64(), &[]);
            })
            .build();
        // The legacy gauges start at 0 rather than being absent.
        self.active_users.record(0, &[]);
        self.cpu_usage_percent.record(0.0, &[]);
        // Zero-valued series from the start, so `increase()` sees the first change.
        for result in ReloadResult::ALL {
            self.config_reloads.add(0, &[result.label()]);
        }
    }

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
    pub fn observe_db_pool(
        &self,
        state: impl Fn() -> super::db::PoolState + Send + Sync + 'static,
    ) {
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

    /// One error answered (or connection closed): `api_errors_total{error_type}`.
    pub fn api_error(&self, kind: ErrorKind) {
        self.api_errors
            .add(1, &[KeyValue::new("error_type", kind.as_str())]);
    }

    /// One call to the backend: `http_client_request_duration_seconds`.
    pub fn client_request(&self, call: &ClientCall<'_>, seconds: f64) {
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
        self.client_duration.record(seconds, &attributes);
    }

    /// `/update`: `app_active_users`.
    pub fn set_active_users(&self, users: i64) {
        self.active_users.record(users, &[]);
    }

    /// `/cpu`: `app_cpu_usage_percent`.
    pub fn set_cpu_usage(&self, percent: f64) {
        self.cpu_usage_percent.record(percent, &[]);
    }

    /// A runtime-settings change applied or rejected.
    pub fn config_reload(&self, result: ReloadResult) {
        self.config_reloads.add(1, &[result.label()]);
    }

    /// The numeric runtime settings now in force: `pulse_runtime_settings{setting}`.
    pub fn runtime_settings(
        &self,
        fault_error_rate: f64,
        fault_delay_max: Duration,
        force_unready: bool,
    ) {
        let g = &self.runtime_settings;
        g.record(
            fault_error_rate,
            &[KeyValue::new("setting", "fault_error_rate")],
        );
        g.record(
            fault_delay_max.as_secs_f64(),
            &[KeyValue::new("setting", "fault_delay_max_seconds")],
        );
        g.record(
            f64::from(u8::from(force_unready)),
            &[KeyValue::new("setting", "force_unready")],
        );
    }

    /// Zero-valued `pulse_kube_errors_total` series, once the Kubernetes side starts.
    pub fn kube_errors_start(&self) {
        for operation in KubeOperation::ALL {
            self.kube_errors.add(0, &[operation.label()]);
        }
    }

    /// One failed Kubernetes API call.
    pub fn kube_error(&self, operation: KubeOperation) {
        self.kube_errors.add(1, &[operation.label()]);
    }

    /// Encodes every metric in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> Result<Vec<u8>, TelemetryError> {
        let mut buffer = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .map_err(|e| TelemetryError::Metrics(e.to_string()))?;
        Ok(buffer)
    }

    /// Encodes every metric in OpenMetrics 1.0.0, with the request duration's
    /// exemplars (telemetry/openmetrics.rs).
    pub fn encode_openmetrics(&self) -> Vec<u8> {
        super::openmetrics::encode(&self.registry.gather(), &self.exemplars).into_bytes()
    }

    /// Flushes and stops the meter provider (at exit).
    pub fn shutdown(&self, timeout: Duration) {
        if let Err(err) = self.provider.shutdown_with_timeout(timeout) {
            tracing::warn!(error = %err, "meter provider shutdown failed");
        }
    }
}

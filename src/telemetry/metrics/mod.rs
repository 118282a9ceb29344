//! Pulse's metrics: OpenTelemetry instruments exported in Prometheus format.
//!
//! Instruments are recorded through the OTel metrics API; `opentelemetry-prometheus`
//! exposes them through one [`prometheus::Registry`] that also holds the process
//! collector, so `/metrics` is a single `gather()`. The exporter derives the
//! exported name from the instrument: counters gain `_total`, unit `s` gains
//! `_seconds` and `By` gains `_bytes`. Instruments are therefore named so that
//! the *exported* names are exactly the contract names (asserted by tests).
//!
//! Each concern owns its instruments and creates them itself (`http.rs`, `app.rs`,
//! `control.rs`, `client.rs`, `db.rs`); the scrape-time gauges are in
//! `observed.rs`. [`Metrics`] holds them all with the registry and records through
//! methods named for what happened, with typed label values.

mod app;
mod cache;
mod client;
mod control;
mod db;
mod http;
mod observed;
mod totals;

use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Encoder as _, TextEncoder};

pub use self::app::AppMetrics;
pub use self::cache::CacheMetrics;
pub use self::client::{ClientCall, ClientMetrics, ClientOutcome};
pub use self::control::ControlMetrics;
pub use self::db::{DbMetrics, DbSeries, PoolState};
pub use self::http::{HttpMetrics, HttpSeries};
pub use self::totals::RequestTotals;

use super::TelemetryError;
use super::labels::{CacheEntity, CacheResult, KubeOperation, MetricLabel, ReloadResult};
use super::native_series::NativeIndex;
use super::schema::{CLIENT_DURATION_FAMILY, DB_DURATION_FAMILY, HTTP_DURATION_FAMILY};
use crate::BuildInfo;

/// `Content-Type` of `/metrics`. Prometheus 3 refuses a scrape without a version.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every instrument Pulse records, by concern, and the registry they are exported
/// through.
pub struct Metrics {
    registry: prometheus::Registry,
    provider: SdkMeterProvider,
    /// Kept to register the scrape-time gauges whose source is known only later.
    meter: Meter,
    /// The per-request series, bound per route by `telemetry/routes.rs`.
    pub(super) http: HttpMetrics,
    app: AppMetrics,
    control: ControlMetrics,
    client: ClientMetrics,
    /// Recorded by `telemetry/db.rs`.
    pub(super) db: DbMetrics,
    cache: CacheMetrics,
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
        let metrics = Self {
            registry,
            provider,
            http: HttpMetrics::new(&meter),
            app: AppMetrics::new(&meter),
            control: ControlMetrics::new(&meter),
            client: ClientMetrics::new(&meter),
            db: DbMetrics::new(&meter),
            cache: CacheMetrics::new(&meter),
            meter,
        };
        metrics.register_info(build, started);
        Ok(Arc::new(metrics))
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
        self.meter
            .f64_observable_gauge("process_uptime")
            .with_unit("s")
            .with_description("Seconds since the process started")
            .with_callback(move |observer| {
                observer.observe(started.elapsed().as_secs_f64(), &[]);
            })
            .build();
    }

    /// One error answered (or connection closed): `api_errors_total{error_type}`.
    pub fn api_error(&self, error: &dyn MetricLabel) {
        self.app.api_error(error);
    }

    /// One call to the backend: `http_client_request_duration_seconds`.
    pub fn client_request(&self, call: &ClientCall<'_>, seconds: f64) {
        self.client.record(call, seconds);
    }

    /// `/update`: `app_active_users`.
    pub fn set_active_users(&self, users: i64) {
        self.app.set_active_users(users);
    }

    /// `/cpu`: `app_cpu_usage_percent`.
    pub fn set_cpu_usage(&self, percent: f64) {
        self.app.set_cpu_usage(percent);
    }

    /// A runtime-settings change applied or rejected.
    pub fn config_reload(&self, result: ReloadResult) {
        self.control.config_reload(result);
    }

    /// The numeric runtime settings now in force: `pulse_runtime_settings{setting}`.
    pub fn runtime_settings(
        &self,
        fault_error_rate: f64,
        fault_delay_max: Duration,
        force_unready: bool,
    ) {
        self.control
            .runtime_settings(fault_error_rate, fault_delay_max, force_unready);
    }

    /// Zero-valued `pulse_kube_errors_total` series, once the Kubernetes side starts.
    pub fn kube_errors_start(&self) {
        self.control.kube_errors_start();
    }

    /// One failed Kubernetes API call.
    pub fn kube_error(&self, operation: KubeOperation) {
        self.control.kube_error(operation);
    }

    /// Zero-valued cache series, once `--redis-url` made a cache.
    pub fn cache_start(&self) {
        self.cache.start();
    }

    /// One cache lookup: `pulse_cache_requests_total{entity, result}`.
    pub fn cache_request(&self, entity: CacheEntity, result: CacheResult) {
        self.cache.request(entity, result);
    }

    /// A record read after a miss that could not be stored:
    /// `pulse_cache_fill_failures_total{entity}`.
    pub fn cache_fill_failure(&self, entity: CacheEntity) {
        self.cache.fill_failure(entity);
    }

    /// A write whose invalidation failed: `pulse_cache_invalidation_failures_total{entity}`.
    pub fn cache_invalidation_failure(&self, entity: CacheEntity) {
        self.cache.invalidation_failure(entity);
    }

    /// Encodes every metric in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> Result<Vec<u8>, TelemetryError> {
        let mut buffer = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .map_err(|e| TelemetryError::Metrics(e.to_string()))?;
        Ok(buffer)
    }

    /// The totals of `http_requests_total` now. Gathers every family, as a scrape
    /// does: for a caller that asks every few seconds, never per request.
    pub fn request_totals(&self) -> RequestTotals {
        RequestTotals::from_families(&self.registry.gather())
    }

    /// Encodes every metric in OpenMetrics 1.0.0, with the request duration's
    /// exemplars (telemetry/openmetrics.rs).
    pub fn encode_openmetrics(&self) -> Vec<u8> {
        super::openmetrics::encode(&self.registry.gather(), &self.http.exemplars).into_bytes()
    }

    /// Encodes every metric in the Prometheus protobuf exposition, the latency
    /// histograms with their native histograms (telemetry/protobuf.rs).
    pub fn encode_protobuf(&self) -> Vec<u8> {
        let native = NativeIndex::default()
            .with(HTTP_DURATION_FAMILY, &self.http.native)
            .with(CLIENT_DURATION_FAMILY, &self.client.native)
            .with(DB_DURATION_FAMILY, &self.db.native);
        super::protobuf::encode(&self.registry.gather(), &self.http.exemplars, &native)
    }

    /// Flushes and stops the meter provider (at exit).
    pub fn shutdown(&self, timeout: Duration) {
        if let Err(err) = self.provider.shutdown_with_timeout(timeout) {
            tracing::warn!(error = %err, "meter provider shutdown failed");
        }
    }
}

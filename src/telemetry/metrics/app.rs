//! What the API answers besides the HTTP series: its errors, and the legacy gauges
//! `/update` and `/cpu` set.

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Meter};

use super::super::labels::MetricLabel;

/// `api_errors_total`, `app_active_users`, `app_cpu_usage_percent`.
pub struct AppMetrics {
    api_errors: Counter<u64>,
    active_users: Gauge<i64>,
    cpu_usage_percent: Gauge<f64>,
}

impl AppMetrics {
    /// Creates its instruments on `meter`; the gauges start at 0 rather than absent.
    pub(super) fn new(meter: &Meter) -> Self {
        let metrics = Self {
            api_errors: meter
                .u64_counter("api_errors")
                .with_description("API errors answered, by error type")
                .build(),
            active_users: meter
                .i64_gauge("app_active_users")
                .with_description("Active users online, as last set by /update")
                .build(),
            cpu_usage_percent: meter
                .f64_gauge("app_cpu_usage_percent")
                .with_description("Simulated CPU usage, as last set by /cpu")
                .build(),
        };
        metrics.active_users.record(0, &[]);
        metrics.cpu_usage_percent.record(0.0, &[]);
        metrics
    }

    pub(super) fn api_error(&self, error: &dyn MetricLabel) {
        self.api_errors
            .add(1, &[KeyValue::new("error_type", error.metric_label())]);
    }

    pub(super) fn set_active_users(&self, users: i64) {
        self.active_users.record(users, &[]);
    }

    pub(super) fn set_cpu_usage(&self, percent: f64) {
        self.cpu_usage_percent.record(percent, &[]);
    }
}

//! The process's control side: runtime-settings changes and the settings in force,
//! and the Kubernetes API calls that failed.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Meter};

use super::super::labels::{KubeOperation, ReloadResult};

/// `pulse_config_reloads_total`, `pulse_runtime_settings`, `pulse_kube_errors_total`.
pub struct ControlMetrics {
    config_reloads: Counter<u64>,
    runtime_settings: Gauge<f64>,
    kube_errors: Counter<u64>,
}

impl ControlMetrics {
    /// Creates its instruments on `meter`, the reload series at zero (so
    /// `increase()` sees the first change).
    pub(super) fn new(meter: &Meter) -> Self {
        let metrics = Self {
            config_reloads: meter
                .u64_counter("pulse_config_reloads")
                .with_description("Runtime settings changes, by result (applied or rejected)")
                .build(),
            runtime_settings: meter
                .f64_gauge("pulse_runtime_settings")
                .with_description("Numeric runtime settings in force, by setting")
                .build(),
            kube_errors: meter
                .u64_counter("pulse_kube_errors")
                .with_description("Failed Kubernetes API operations, by operation")
                .build(),
        };
        for result in ReloadResult::ALL {
            metrics.config_reloads.add(0, &[result.label()]);
        }
        metrics
    }

    pub(super) fn config_reload(&self, result: ReloadResult) {
        self.config_reloads.add(1, &[result.label()]);
    }

    pub(super) fn runtime_settings(
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

    pub(super) fn kube_errors_start(&self) {
        for operation in KubeOperation::ALL {
            self.kube_errors.add(0, &[operation.label()]);
        }
    }

    pub(super) fn kube_error(&self, operation: KubeOperation) {
        self.kube_errors.add(1, &[operation.label()]);
    }
}

//! The per-request HTTP instruments, bound per route by `telemetry/routes.rs`.

use std::sync::Arc;

use opentelemetry::metrics::{Counter, Histogram, Meter, UpDownCounter};

use super::super::exemplars::ExemplarStore;
use super::super::native_series::{Labels, NativeFamily, SeriesKey};
use super::super::schema::{DURATION_BUCKETS, SIZE_BUCKETS};

/// A series of `http_request_duration_seconds`, as its native histogram is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpSeries {
    /// The `method` label.
    pub method: &'static str,
    /// The `route` label (a template, kept for the life of the process by
    /// `telemetry/routes.rs`).
    pub route: &'static str,
}

impl SeriesKey for HttpSeries {
    fn labels(&self) -> Labels {
        vec![
            ("method".to_owned(), self.method.to_owned()),
            ("route".to_owned(), self.route.to_owned()),
        ]
    }
}

/// `http_*` and `app_requests_total`, with the duration histogram's exemplars and
/// native histograms.
pub struct HttpMetrics {
    /// `http_requests_total{method, route, status}`
    pub(in crate::telemetry) requests: Counter<u64>,
    /// `http_request_duration_seconds{method, route}`
    pub(in crate::telemetry) duration: Histogram<f64>,
    /// `http_requests_in_progress{method, route}`
    pub(in crate::telemetry) in_progress: UpDownCounter<i64>,
    /// `http_request_size_bytes{method, route}`
    pub(in crate::telemetry) request_size: Histogram<u64>,
    /// `http_response_size_bytes{method, route, status}`
    pub(in crate::telemetry) response_size: Histogram<u64>,
    /// The exemplars of `http_request_duration_seconds`, per series.
    pub(in crate::telemetry) exemplars: ExemplarStore,
    /// The native histograms of `http_request_duration_seconds`, per series; their
    /// total count is also `app_requests_total`.
    pub(in crate::telemetry) native: Arc<NativeFamily<HttpSeries>>,
}

impl HttpMetrics {
    /// Creates its instruments on `meter`.
    pub(super) fn new(meter: &Meter) -> Self {
        let native = Arc::new(NativeFamily::default());
        // `app_requests_total` counts the requests recorded in the `http_*` series
        // (probes and `/metrics` excluded unless recorded): the requests the duration
        // histograms count, so it is read from them when scraped instead of being one
        // more counter every request writes, shared by all routes and so by every
        // worker (docs/performance.md).
        let recorded = Arc::clone(&native);
        meter
            .u64_observable_counter("app_requests")
            .with_description("Total API requests (probes and /metrics excluded)")
            .with_callback(move |observer| observer.observe(recorded.count(), &[]))
            .build();
        Self {
            requests: meter
                .u64_counter("http_requests")
                .with_description("Total HTTP requests by method, route template and status")
                .build(),
            duration: meter
                .f64_histogram("http_request_duration")
                .with_unit("s")
                .with_description("HTTP request latency in seconds")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            in_progress: meter
                .i64_up_down_counter("http_requests_in_progress")
                .with_description("HTTP requests currently being served")
                .build(),
            request_size: meter
                .u64_histogram("http_request_size")
                .with_unit("By")
                .with_description("HTTP request body size in bytes")
                .with_boundaries(SIZE_BUCKETS.to_vec())
                .build(),
            response_size: meter
                .u64_histogram("http_response_size")
                .with_unit("By")
                .with_description("HTTP response body size in bytes")
                .with_boundaries(SIZE_BUCKETS.to_vec())
                .build(),
            exemplars: ExemplarStore::default(),
            native,
        }
    }
}

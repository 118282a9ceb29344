//! Totals of the request counter, for the page `GET /` answers a browser and the
//! `GET /stats` it polls.
//!
//! Read from the same gathered families `/metrics` encodes, when asked: the
//! request path records nothing more for them (the counters it already
//! increments are the source), so an open page costs a gather every couple of
//! seconds and the requests nothing.

use prometheus::proto::MetricFamily;
use serde::Serialize;
use utoipa::ToSchema;

use super::super::schema::HTTP_REQUESTS_FAMILY;

/// What `http_requests_total` adds up to: every recorded request, and those
/// answered 5xx (what the dashboards and alerts count as errors).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct RequestTotals {
    /// Requests answered since start (probes, `/metrics` and `/stats` excluded
    /// unless `--instrument-probes`).
    pub requests_total: u64,
    /// Of those, answered with a 5xx status.
    pub server_errors_total: u64,
}

impl RequestTotals {
    /// The sums over the series of `http_requests_total` in `families`.
    pub fn from_families(families: &[MetricFamily]) -> Self {
        let mut totals = Self::default();
        let Some(family) = families.iter().find(|f| f.name() == HTTP_REQUESTS_FAMILY) else {
            return totals;
        };
        for series in family.get_metric() {
            // Counters are whole numbers held in an f64; far below 2^53 in any process.
            let count = series.get_counter().get_value() as u64;
            totals.requests_total += count;
            let server_error = series
                .get_label()
                .iter()
                .any(|pair| pair.name() == "status" && pair.value().starts_with('5'));
            if server_error {
                totals.server_errors_total += count;
            }
        }
        totals
    }
}

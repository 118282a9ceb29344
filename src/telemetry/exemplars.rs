//! Exemplars of `http_request_duration_seconds`: for each series (method, route)
//! and each bucket, the latest sampled request that landed in it.
//!
//! `opentelemetry_sdk` 0.33 collects no exemplars (its aggregators leave them
//! empty), so Pulse keeps its own next to the histogram it records: the HTTP layer
//! offers each sampled request's duration and ids to its route's
//! [`BucketExemplars`], and the OpenMetrics encoder (`openmetrics.rs`) writes them
//! on the bucket lines. One slot per bucket and series, overwritten by the next
//! request in that bucket, so memory is bounded by the series count and a request
//! pays for a bucket search and one uncontended lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::trace::{SpanId, TraceId};

use super::schema::DURATION_BUCKETS;

/// One request, as an exemplar: its ids, its duration and when it ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exemplar {
    /// The request's trace.
    pub trace_id: TraceId,
    /// The request's server span.
    pub span_id: SpanId,
    /// The observed duration in seconds.
    pub value: f64,
    /// When the request ended (monotonic; see [`Exemplar::timestamp`]).
    pub at: Instant,
}

impl Exemplar {
    /// When the request ended, in seconds since the Unix epoch.
    ///
    /// Derived from the monotonic end time and one wall-clock reading taken once
    /// (at the first use), so recording reads no clock of its own; a wall-clock step after
    /// start-up shifts exemplar times by as much, which is harmless for finding a
    /// trace near a point on a graph.
    pub fn timestamp(&self) -> f64 {
        let (instant, wall) = anchor();
        let since_epoch = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let wall_at = if self.at >= instant {
            since_epoch + self.at.duration_since(instant)
        } else {
            since_epoch.saturating_sub(instant.duration_since(self.at))
        };
        wall_at.as_secs_f64()
    }
}

/// The wall clock at one monotonic instant, read once.
fn anchor() -> (Instant, SystemTime) {
    static ANCHOR: OnceLock<(Instant, SystemTime)> = OnceLock::new();
    *ANCHOR.get_or_init(|| (Instant::now(), SystemTime::now()))
}

/// Buckets of the duration histogram, `+Inf` included.
pub const BUCKETS: usize = DURATION_BUCKETS.len() + 1;

/// The bucket (not cumulative) `seconds` falls in: the first bound it does not
/// exceed, as Prometheus' `le` counts, or the `+Inf` bucket past the last one.
fn bucket_of(seconds: f64) -> usize {
    DURATION_BUCKETS.partition_point(|&bound| bound < seconds)
}

/// The latest exemplar of each bucket of one series.
#[derive(Debug, Default)]
pub struct BucketExemplars {
    slots: [Mutex<Option<Exemplar>>; BUCKETS],
}

impl BucketExemplars {
    /// Keeps the request that started at `start` and took `elapsed` as the latest
    /// exemplar of its bucket.
    ///
    /// Never inlined, so that a profile shows what recording costs per request
    /// (`make profile` prints it; the target is at most ~500 instructions).
    #[inline(never)]
    pub fn record(&self, trace_id: TraceId, span_id: SpanId, start: Instant, elapsed: Duration) {
        self.offer(Exemplar {
            trace_id,
            span_id,
            value: elapsed.as_secs_f64(),
            at: start + elapsed,
        });
    }

    /// Keeps `exemplar` as the latest of its bucket.
    pub fn offer(&self, exemplar: Exemplar) {
        let slot = &self.slots[bucket_of(exemplar.value)];
        *crate::sync::lock(slot) = Some(exemplar);
    }

    /// The latest exemplar of bucket `index` (0 is the first bound, [`BUCKETS`]` - 1`
    /// is `+Inf`), if a sampled request landed there.
    pub fn get(&self, index: usize) -> Option<Exemplar> {
        let slot = self.slots.get(index)?;
        *crate::sync::lock(slot)
    }
}

/// Every series' exemplars, found by the series' labels when `/metrics` is encoded.
/// Keyed by method, then route, so a scrape looks them up without building a key.
#[derive(Debug, Default)]
pub struct ExemplarStore {
    by_series: RwLock<HashMap<String, HashMap<String, Arc<BucketExemplars>>>>,
}

impl ExemplarStore {
    /// The exemplars of the series `{method, route}`, created on first use (when
    /// the series itself is; the route table is bounded, so this is too).
    pub fn series(&self, method: &str, route: &str) -> Arc<BucketExemplars> {
        if let Some(found) = self.find(method, route) {
            return found;
        }
        let mut all = crate::sync::write(&self.by_series);
        let routes = all.entry(method.to_owned()).or_default();
        Arc::clone(routes.entry(route.to_owned()).or_default())
    }

    /// The exemplars of `{method, route}`, if that series exists.
    pub fn find(&self, method: &str, route: &str) -> Option<Arc<BucketExemplars>> {
        let all = crate::sync::read(&self.by_series);
        all.get(method)?.get(route).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exemplar(value: f64, span: u64) -> Exemplar {
        Exemplar {
            trace_id: TraceId::from(7u128),
            span_id: SpanId::from(span),
            value,
            at: Instant::now(),
        }
    }

    #[test]
    fn a_value_lands_in_the_bucket_prometheus_counts_it_in() {
        // `le` is inclusive: 0.005 is in the first bucket, just above it in the second.
        assert_eq!(bucket_of(0.0), 0);
        assert_eq!(bucket_of(0.005), 0);
        assert_eq!(bucket_of(0.0051), 1);
        assert_eq!(bucket_of(10.0), DURATION_BUCKETS.len() - 1);
        assert_eq!(bucket_of(10.5), BUCKETS - 1);
    }

    #[test]
    fn each_bucket_keeps_its_latest_exemplar() {
        let series = BucketExemplars::default();
        series.offer(exemplar(0.3, 1));
        series.offer(exemplar(0.4, 2));
        series.offer(exemplar(3.0, 3));
        let half_second = bucket_of(0.5);
        assert_eq!(
            series.get(half_second).map(|e| e.span_id),
            Some(SpanId::from(2u64))
        );
        assert_eq!(series.get(bucket_of(5.0)).map(|e| e.value), Some(3.0));
        assert_eq!(series.get(0), None);
        assert_eq!(series.get(BUCKETS), None, "past the last bucket");
    }

    #[test]
    fn a_series_exemplars_take_under_a_kibibyte() {
        // The README's bound on the memory exemplars take per series.
        assert!(std::mem::size_of::<BucketExemplars>() <= 1024);
    }

    #[test]
    fn timestamps_are_wall_clock_seconds() {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let ts = exemplar(0.1, 1).timestamp();
        assert!((ts - now).abs() < 1.0, "{ts} vs {now}");
    }

    #[test]
    fn the_store_finds_a_series_by_its_labels() {
        let store = ExemplarStore::default();
        let series = store.series("GET", "/api/users");
        series.offer(exemplar(0.01, 9));
        let found = store.find("GET", "/api/users").unwrap();
        assert_eq!(
            found.get(bucket_of(0.01)).map(|e| e.span_id),
            Some(SpanId::from(9u64))
        );
        assert!(store.find("POST", "/api/users").is_none());
    }
}

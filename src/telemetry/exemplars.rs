//! Exemplars of `http_request_duration_seconds`: for each series (method, route)
//! and each bucket, the latest sampled request that landed in it.
//!
//! `opentelemetry_sdk` 0.33 collects no exemplars (its aggregators leave them
//! empty), so Pulse keeps its own next to the histogram it records: the HTTP layer
//! offers each sampled request's duration and ids to its route's
//! [`BucketExemplars`], and the OpenMetrics encoder (`openmetrics.rs`) writes them
//! on the bucket lines. One slot per bucket and series, overwritten by the next
//! request in that bucket, so memory is bounded by the series count.
//!
//! A request replaces its bucket's exemplar only if that one ended at least
//! [`MIN_GAP`] earlier: at saturation every worker would otherwise take the same
//! slot's lock on every request, moving its cache line between the cores each time
//! (docs/performance.md), for exemplars nobody reads (Prometheus keeps one per
//! scrape, seconds apart). Most requests then pay a bucket search and a read of a
//! word that rarely changes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// How much later than the kept exemplar a request must end to replace it (in
/// [`BucketExemplars::record`]): the kept one is at most this much older than the
/// latest sampled request of its bucket.
pub const MIN_GAP: Duration = Duration::from_millis(1);

/// The bucket (not cumulative) `seconds` falls in: the first bound it does not
/// exceed, as Prometheus' `le` counts, or the `+Inf` bucket past the last one.
fn bucket_of(seconds: f64) -> usize {
    DURATION_BUCKETS.partition_point(|&bound| bound < seconds)
}

/// The latest exemplar of each bucket of one series.
#[derive(Debug, Default)]
pub struct BucketExemplars {
    slots: [Mutex<Option<Exemplar>>; BUCKETS],
    /// When each slot's exemplar ended, in microseconds since the anchor plus one
    /// (0: empty): read without the lock by [`BucketExemplars::record`].
    kept_at: [AtomicU64; BUCKETS],
}

impl BucketExemplars {
    /// Keeps the request that started at `start` and took `elapsed` as the latest
    /// exemplar of its bucket, unless the kept one ended less than [`MIN_GAP`]
    /// before it.
    ///
    /// Never inlined, so that a profile shows what recording costs per request
    /// (`make profile` prints it; the target is at most ~500 instructions).
    #[inline(never)]
    pub fn record(&self, trace_id: TraceId, span_id: SpanId, start: Instant, elapsed: Duration) {
        let value = elapsed.as_secs_f64();
        let bucket = bucket_of(value);
        let at = start + elapsed;
        let at_micros = micros_since_anchor(at);
        let kept = &self.kept_at[bucket];
        let previous = kept.load(Ordering::Relaxed);
        if previous != 0 && at_micros < previous.saturating_add(MIN_GAP.as_micros() as u64) {
            return;
        }
        self.offer(Exemplar {
            trace_id,
            span_id,
            value,
            at,
        });
    }

    /// Keeps `exemplar` as the latest of its bucket.
    pub fn offer(&self, exemplar: Exemplar) {
        let bucket = bucket_of(exemplar.value);
        *crate::sync::lock(&self.slots[bucket]) = Some(exemplar);
        self.kept_at[bucket].store(micros_since_anchor(exemplar.at), Ordering::Relaxed);
    }

    /// The latest exemplar of bucket `index` (0 is the first bound, [`BUCKETS`]` - 1`
    /// is `+Inf`), if a sampled request landed there.
    pub fn get(&self, index: usize) -> Option<Exemplar> {
        let slot = self.slots.get(index)?;
        *crate::sync::lock(slot)
    }
}

/// `at` in microseconds since the anchor's instant, plus one so that 0 means "none".
fn micros_since_anchor(at: Instant) -> u64 {
    let micros = at.saturating_duration_since(anchor().0).as_micros();
    u64::try_from(micros).unwrap_or(u64::MAX - 1) + 1
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
    fn a_request_replaces_its_buckets_exemplar_only_a_gap_after_it() {
        let series = BucketExemplars::default();
        let start = Instant::now();
        let elapsed = Duration::from_millis(2);
        let span = |e: Option<Exemplar>| e.map(|e| e.span_id);
        let bucket = bucket_of(elapsed.as_secs_f64());
        let ids = |n: u64| (TraceId::from(u128::from(n)), SpanId::from(n));

        let (trace, span_id) = ids(1);
        series.record(trace, span_id, start, elapsed);
        assert_eq!(span(series.get(bucket)), Some(SpanId::from(1u64)));
        // Ending within the gap: the first one stays.
        let (trace, span_id) = ids(2);
        series.record(trace, span_id, start + MIN_GAP / 2, elapsed);
        assert_eq!(span(series.get(bucket)), Some(SpanId::from(1u64)));
        // A gap later: replaced.
        let (trace, span_id) = ids(3);
        series.record(trace, span_id, start + MIN_GAP, elapsed);
        assert_eq!(span(series.get(bucket)), Some(SpanId::from(3u64)));
        // Other buckets are apart.
        let (trace, span_id) = ids(4);
        series.record(trace, span_id, start, Duration::from_secs(3));
        assert_eq!(span(series.get(bucket)), Some(SpanId::from(3u64)));
        assert_eq!(span(series.get(bucket_of(3.0))), Some(SpanId::from(4u64)));
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

//! Native (exponential-bucket) histograms of the latency series, kept beside the
//! classic histograms the OpenTelemetry SDK records.
//!
//! `opentelemetry-prometheus` exports through the `prometheus` crate, whose model
//! has no native histograms, and the SDK's exponential aggregation cannot be asked
//! for beside the explicit-bucket one on the same instrument. So, as with the
//! exemplars (`exemplars.rs`), Pulse keeps its own per series and the protobuf
//! encoder (`protobuf.rs`) writes it into the same `Histogram` message as the
//! classic buckets.
//!
//! The layout is Prometheus' (and OpenTelemetry's base-2 exponential): schema
//! [`SCHEMA`] = 3, so bucket `i` holds the values in `(2^((i-1)/8), 2^(i/8)]`,
//! each bucket 2^(1/8) ≈ 1.09 times wider than the previous: a quantile read from
//! it is within about 4.4 % of the true value. Only positive buckets exist
//! (durations are never negative), over a fixed range: bucket [`MIN_INDEX`]
//! (just above the zero threshold, 2^-20 s ≈ 0.95 µs) to bucket [`MAX_INDEX`]
//! (up to 2^7 = 128 s), 216 counters. Values at or below the zero threshold go to
//! the zero bucket; values above 128 s are counted in the last bucket (a request
//! that slow is past every timeout Pulse has; the sum, which the SDK keeps, stays
//! exact). Recording is one index computation from the value's bits (exponent and
//! a search of an 8-entry table, as the Go client does) and one relaxed atomic
//! add: no lock, no allocation.

use std::sync::atomic::{AtomicU64, Ordering};

/// The resolution: 2^3 = 8 buckets per power of two.
pub const SCHEMA: i32 = 3;

/// Values at or below this many seconds (2^-20, about 0.95 µs) count in the zero bucket.
pub const ZERO_THRESHOLD: f64 = 1.0 / 1_048_576.0;

/// The first bucket: `(2^(-160/8), 2^(-159/8)]`, just above [`ZERO_THRESHOLD`].
pub const MIN_INDEX: i32 = -159;

/// The last bucket: `(2^(55/8), 2^(56/8)]` = up to 128 s; slower values count here too.
pub const MAX_INDEX: i32 = 56;

/// Buckets per series.
pub const BUCKETS: usize = (MAX_INDEX - MIN_INDEX + 1) as usize;

/// `2^(j/8) / 2` for j in 0..8: the upper bounds, within one power of two, of the
/// buckets of schema 3, as fractions in `[0.5, 1)` (what `frexp` returns). The
/// values of the Go client's `nativeHistogramBounds[3]`.
const BOUNDS: [f64; 8] = [
    0.5,
    0.545_253_866_332_628_8,
    0.594_603_557_501_360_5,
    0.648_419_777_325_504_8,
    std::f64::consts::FRAC_1_SQRT_2,
    0.771_105_412_703_970_4,
    0.840_896_415_253_714_4,
    0.917_004_043_204_671_1,
];

/// The schema-3 bucket index of a positive, finite `value`: the `i` with
/// `2^((i-1)/8) < value <= 2^(i/8)`.
pub fn bucket_index(value: f64) -> i32 {
    let bits = value.to_bits();
    // frexp: value = fraction * 2^exponent with fraction in [0.5, 1) (normal numbers;
    // subnormals are far below the zero threshold and never get here).
    let exponent = ((bits >> 52) & 0x7ff) as i32 - 1022;
    let fraction = f64::from_bits((bits & ((1 << 52) - 1)) | (1022 << 52));
    let within = BOUNDS.partition_point(|&bound| bound < fraction) as i32;
    within + (exponent - 1) * 8
}

/// Where `seconds` is counted: `None` for the zero bucket, else the slot in the
/// bucket array (clamped to the range).
fn slot(seconds: f64) -> Option<usize> {
    // Also sends NaN and negatives to the zero bucket (a clock never gives them).
    if seconds.partial_cmp(&ZERO_THRESHOLD) != Some(std::cmp::Ordering::Greater) {
        return None;
    }
    let index = bucket_index(seconds).clamp(MIN_INDEX, MAX_INDEX);
    Some((index - MIN_INDEX) as usize)
}

/// One series' native histogram: the zero bucket and the positive buckets.
/// About 1.7 KiB.
#[derive(Debug)]
pub struct NativeHistogram {
    zero: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

impl Default for NativeHistogram {
    fn default() -> Self {
        Self {
            zero: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// A native histogram as the protobuf exposition carries it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NativeSnapshot {
    /// Observations in all buckets: the zero bucket's plus the positive ones'.
    pub count: u64,
    /// Observations in the zero bucket.
    pub zero_count: u64,
    /// (offset, length) of each run of non-empty buckets: the first offset is the
    /// index of the first bucket, the others the gap after the previous run.
    pub spans: Vec<(i32, u32)>,
    /// The count of each bucket in the spans, as a difference from the previous one
    /// (the first from zero).
    pub deltas: Vec<i64>,
}

impl NativeHistogram {
    /// Counts one observation of `seconds`.
    ///
    /// Never inlined, so that a profile shows what recording costs per request
    /// (`make profile` prints it; the budget is 150 instructions with the call).
    #[inline(never)]
    pub fn record(&self, seconds: f64) {
        let counter = match slot(seconds) {
            Some(slot) => &self.buckets[slot],
            None => &self.zero,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Observations in all buckets, the zero bucket's included.
    pub fn count(&self) -> u64 {
        let zero = self.zero.load(Ordering::Relaxed);
        self.buckets
            .iter()
            .fold(zero, |sum, bucket| sum + bucket.load(Ordering::Relaxed))
    }

    /// The counts now. Each counter is read once, so the snapshot is consistent with
    /// itself (its count is the sum of its buckets) though not an atomic cut across
    /// concurrent recordings.
    pub fn snapshot(&self) -> NativeSnapshot {
        let zero_count = self.zero.load(Ordering::Relaxed);
        let mut snapshot = NativeSnapshot {
            count: zero_count,
            zero_count,
            ..NativeSnapshot::default()
        };
        let (mut previous_count, mut previous_index) = (0_i64, None::<i32>);
        for (slot, bucket) in self.buckets.iter().enumerate() {
            let count = bucket.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let index = slot as i32 + MIN_INDEX;
            match (previous_index, snapshot.spans.last_mut()) {
                (Some(previous), Some(span)) if previous + 1 == index => span.1 += 1,
                (Some(previous), _) => snapshot.spans.push((index - previous - 1, 1)),
                (None, _) => snapshot.spans.push((index, 1)),
            }
            snapshot.count += count;
            let count = count as i64;
            snapshot.deltas.push(count - previous_count);
            (previous_count, previous_index) = (count, Some(index));
        }
        snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_i_ends_at_two_to_the_i_over_eight() {
        for index in [-159, -80, -9, -8, -7, -1, 0, 1, 7, 8, 9, 20, 55, 56] {
            let upper = 2f64.powf(f64::from(index) / 8.0);
            // Just below the bound is in the bucket, just above it in the next one
            // (a relative 1e-12: `powf` and the table may differ in the last bit).
            assert_eq!(bucket_index(upper * (1.0 - 1e-12)), index, "2^({index}/8)");
            assert_eq!(
                bucket_index(upper * (1.0 + 1e-12)),
                index + 1,
                "2^({index}/8)"
            );
        }
        // Powers of two are exact: the bound itself is in the bucket (upper bounds
        // are inclusive, as Prometheus reads them).
        for power in [-19, -3, -1, 0, 1, 6, 7] {
            assert_eq!(bucket_index(2f64.powi(power)), power * 8, "2^{power}");
        }
        assert_eq!(bucket_index(1.0), 0);
        assert_eq!(bucket_index(0.5), -8);
        assert_eq!(bucket_index(0.001), -79); // 2^(-80/8) < 1 ms <= 2^(-79/8)
        assert_eq!(bucket_index(0.1), -26); // 2^(-27/8) < 100 ms <= 2^(-26/8)
    }

    #[test]
    fn the_table_is_the_schema_3_bounds() {
        for (j, bound) in BOUNDS.iter().enumerate() {
            assert!(
                (bound - 2f64.powf(j as f64 / 8.0) / 2.0).abs() < 1e-15,
                "{j}"
            );
        }
    }

    #[test]
    fn the_range_ends_at_the_zero_threshold_and_128_seconds() {
        assert_eq!(2f64.powf(f64::from(MIN_INDEX - 1) / 8.0), ZERO_THRESHOLD);
        assert_eq!(2f64.powf(f64::from(MAX_INDEX) / 8.0), 128.0);
        assert_eq!(slot(ZERO_THRESHOLD), None);
        assert_eq!(slot(0.0), None);
        assert_eq!(slot(ZERO_THRESHOLD * 1.000_001), Some(0));
        assert_eq!(slot(128.0), Some(BUCKETS - 1));
        assert_eq!(slot(1e9), Some(BUCKETS - 1), "clamped into the last bucket");
    }

    #[test]
    fn a_snapshot_has_spans_and_deltas_of_the_counts() {
        let histogram = NativeHistogram::default();
        for value in [0.0, 1.0, 1.0, 1.05, 1.1, 4.0, 4.0, 4.0] {
            histogram.record(value);
        }
        // 1.0 is bucket 0 (twice), 1.05 bucket 1, 1.1 bucket 2; 4.0 bucket 16.
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.zero_count, 1);
        assert_eq!(snapshot.count, 8);
        assert_eq!(snapshot.spans, vec![(0, 3), (13, 1)]);
        assert_eq!(snapshot.deltas, vec![2, -1, 0, 2]);
    }

    #[test]
    fn an_empty_histogram_has_no_spans() {
        let snapshot = NativeHistogram::default().snapshot();
        assert_eq!(snapshot, NativeSnapshot::default());
    }
}

//! The Prometheus protobuf exposition for `/metrics`: length-delimited
//! `io.prometheus.client.MetricFamily` messages (`proto.rs`), the format a
//! Prometheus with native histograms turned on asks for first.
//!
//! Written from the same families as the text and OpenMetrics answers (names,
//! help, labels and values unchanged), so every series they carry is here too.
//! The latency histograms also carry their native histogram (`native.rs`) in the
//! same `Histogram` message as the classic buckets, so a Prometheus that keeps both
//! kinds (`scrape_classic_histograms`, or Prometheus 3's
//! `always_scrape_classic_histograms`) serves every classic query unchanged.
//! Exemplars go on the classic buckets and, for Prometheus versions that read
//! them there, in `Histogram.exemplars`.
//!
//! Prometheus rejects a native histogram whose count is not its zero count plus
//! its bucket counts, so `sample_count` comes from the native snapshot. The classic
//! buckets and sum come from the SDK, read a moment apart: under traffic the two
//! may differ by the requests that finished in between (idle, they are equal).
//! Each request is counted in the native histogram before the SDK's, and the
//! snapshot is read after the SDK's families, so the count (the classic `+Inf`
//! bucket) is never below a classic bucket.

use prometheus::proto::{Metric, MetricFamily, MetricType};
use prost::Message as _;

use super::exemplars::{BucketExemplars, Exemplar};
use super::native::{NativeSnapshot, SCHEMA, ZERO_THRESHOLD};
use super::openmetrics::ExemplarSource;
use super::proto;

/// `Content-Type` of the protobuf answer.
pub const CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// Where the encoder finds a series' native histogram.
pub trait NativeSource {
    /// The native histogram of the series `labels` of family `family`, if it has one.
    fn native(&self, family: &str, labels: &Metric) -> Option<NativeSnapshot>;
}

/// Encodes `families` as length-delimited `MetricFamily` messages.
pub fn encode(
    families: &[MetricFamily],
    exemplars: &dyn ExemplarSource,
    native: &dyn NativeSource,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 * 1024);
    for family in families {
        let message = convert(family, exemplars, native);
        // Writing into a Vec cannot run out of room.
        let _ = message.encode_length_delimited(&mut out);
    }
    out
}

fn convert(
    family: &MetricFamily,
    exemplars: &dyn ExemplarSource,
    native: &dyn NativeSource,
) -> proto::MetricFamily {
    let name = family.name();
    let metric_type = match family.get_field_type() {
        MetricType::COUNTER => proto::MetricType::Counter,
        MetricType::GAUGE => proto::MetricType::Gauge,
        MetricType::SUMMARY => proto::MetricType::Summary,
        MetricType::UNTYPED => proto::MetricType::Untyped,
        MetricType::HISTOGRAM => proto::MetricType::Histogram,
    };
    let metric = family
        .get_metric()
        .iter()
        .map(|series| {
            let mut out = proto::Metric {
                label: series
                    .get_label()
                    .iter()
                    .map(|pair| label(pair.name(), pair.value()))
                    .collect(),
                timestamp_ms: Some(series.timestamp_ms()).filter(|&ms| ms != 0),
                ..proto::Metric::default()
            };
            match metric_type {
                proto::MetricType::Counter => {
                    out.counter = Some(proto::Counter {
                        value: Some(series.get_counter().get_value()),
                        ..proto::Counter::default()
                    });
                }
                proto::MetricType::Gauge | proto::MetricType::GaugeHistogram => {
                    out.gauge = Some(proto::Gauge {
                        value: Some(series.get_gauge().get_value()),
                    });
                }
                // Nothing Pulse registers is untyped (the `prometheus` crate keeps the
                // type only for its protobuf model, hence deprecated), but a family of
                // that type is written rather than dropped.
                #[allow(deprecated)]
                proto::MetricType::Untyped => {
                    out.untyped = Some(proto::Untyped {
                        value: Some(series.get_untyped().get_value()),
                    });
                }
                proto::MetricType::Summary => out.summary = Some(summary(series)),
                proto::MetricType::Histogram => {
                    let kept = exemplars.exemplars(name, series);
                    let snapshot = native.native(name, series);
                    out.histogram = Some(histogram(series, kept.as_deref(), snapshot));
                }
            }
            out
        })
        .collect();
    proto::MetricFamily {
        name: Some(name.to_owned()),
        help: Some(family.help().to_owned()).filter(|help| !help.is_empty()),
        r#type: Some(metric_type as i32),
        metric,
        unit: None,
    }
}

fn histogram(
    series: &Metric,
    exemplars: Option<&BucketExemplars>,
    native: Option<NativeSnapshot>,
) -> proto::Histogram {
    let classic = series.get_histogram();
    let exemplar_of = |index: usize| exemplars.and_then(|e| e.get(index)).map(exemplar);
    let mut bucket: Vec<proto::Bucket> = classic
        .get_bucket()
        .iter()
        .enumerate()
        .map(|(index, b)| proto::Bucket {
            cumulative_count: Some(b.cumulative_count()),
            upper_bound: Some(b.upper_bound()),
            exemplar: exemplar_of(index),
            ..proto::Bucket::default()
        })
        .collect();
    // The `+Inf` bucket is implicit (the count), as the Go client writes it, unless
    // it has an exemplar to carry, as the Go client does too.
    let infinite = bucket.len();
    let has_infinite = bucket
        .last()
        .is_some_and(|b| b.upper_bound == Some(f64::INFINITY));
    if let Some(exemplar) = exemplar_of(infinite).filter(|_| !has_infinite) {
        bucket.push(proto::Bucket {
            cumulative_count: Some(classic.get_sample_count()),
            upper_bound: Some(f64::INFINITY),
            exemplar: Some(exemplar),
            ..proto::Bucket::default()
        });
    }
    let mut out = proto::Histogram {
        sample_count: Some(classic.get_sample_count()),
        sample_sum: Some(classic.get_sample_sum()),
        ..proto::Histogram::default()
    };
    if let Some(native) = native {
        out.sample_count = Some(native.count);
        out.schema = Some(SCHEMA);
        out.zero_threshold = Some(ZERO_THRESHOLD);
        out.zero_count = Some(native.zero_count);
        out.positive_span = native
            .spans
            .iter()
            .map(|&(offset, length)| proto::BucketSpan {
                offset: Some(offset),
                length: Some(length),
            })
            .collect();
        out.positive_delta = native.deltas;
        out.exemplars = bucket.iter().filter_map(|b| b.exemplar.clone()).collect();
    }
    out.bucket = bucket;
    out
}

fn summary(series: &Metric) -> proto::Summary {
    let summary = series.get_summary();
    proto::Summary {
        sample_count: Some(summary.sample_count()),
        sample_sum: Some(summary.sample_sum()),
        quantile: summary
            .get_quantile()
            .iter()
            .map(|q| proto::Quantile {
                quantile: Some(q.quantile()),
                value: Some(q.value()),
            })
            .collect(),
        created_timestamp: None,
    }
}

fn label(name: &str, value: &str) -> proto::LabelPair {
    proto::LabelPair {
        name: Some(name.to_owned()),
        value: Some(value.to_owned()),
    }
}

/// An exemplar with the same labels as in OpenMetrics: `trace_id` and `span_id`.
fn exemplar(kept: Exemplar) -> proto::Exemplar {
    let at = kept.timestamp();
    let seconds = at.floor();
    proto::Exemplar {
        label: vec![
            label("trace_id", &kept.trace_id.to_string()),
            label("span_id", &kept.span_id.to_string()),
        ],
        value: Some(kept.value),
        timestamp: Some(proto::Timestamp {
            seconds: seconds as i64,
            nanos: ((at - seconds) * 1e9) as i32,
        }),
    }
}

#[cfg(test)]
mod tests {
    use prometheus::proto::{Bucket, Histogram};

    use super::super::native::NativeHistogram;
    use super::*;

    /// A classic histogram read a moment after its native one: a request finished in between.
    fn classic(count: u64) -> Metric {
        let mut bucket = Bucket::default();
        bucket.set_upper_bound(0.005);
        bucket.set_cumulative_count(count);
        let mut histogram = Histogram::default();
        histogram.set_sample_count(count);
        histogram.set_sample_sum(0.01);
        histogram.set_bucket(vec![bucket]);
        let mut series = Metric::default();
        series.set_histogram(histogram);
        series
    }

    #[test]
    fn the_count_is_the_native_buckets_sum_whatever_the_classic_count() {
        let native = NativeHistogram::default();
        for seconds in [0.0, 0.001, 0.002, 0.002] {
            native.record(seconds);
        }
        let out = histogram(&classic(5), None, Some(native.snapshot()));
        // Prometheus refuses a native histogram whose count is not its buckets' sum.
        assert_eq!(out.sample_count, Some(4));
        assert_eq!(out.zero_count, Some(1));
        assert_eq!(out.positive_delta.iter().sum::<i64>(), 2, "last bucket: 2");
        assert_eq!(
            (out.schema, out.zero_threshold),
            (Some(3), Some(ZERO_THRESHOLD))
        );
        // The classic buckets and sum stay the SDK's.
        assert_eq!(out.bucket[0].cumulative_count, Some(5));
        assert_eq!(out.sample_sum, Some(0.01));
    }

    #[test]
    fn without_a_native_store_the_histogram_stays_classic() {
        let out = histogram(&classic(5), None, None);
        assert_eq!(out.sample_count, Some(5));
        assert_eq!((out.schema, out.zero_threshold), (None, None));
        assert!(out.positive_span.is_empty());
    }
}

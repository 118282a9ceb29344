//! The OpenMetrics 1.0 text format for `/metrics`, with exemplars (which format
//! a scraper gets is decided in `format.rs`).
//!
//! The metric families come from the OpenTelemetry SDK through
//! `opentelemetry-prometheus`, which writes only the 0.0.4 text format (it cannot
//! carry exemplars). The `prometheus` crate has no OpenMetrics encoder either, so
//! this one is Pulse's: it writes the same families, names, labels and values as
//! the text encoder (label values and `le` bounds formatted the same way, so a
//! scraper sees the same series in either format), adds the exemplars of
//! [`super::exemplars`] to the bucket lines of `http_request_duration_seconds`,
//! and ends with `# EOF`.

use std::fmt::Write as _;

use prometheus::proto::{Metric, MetricFamily, MetricType};

use super::exemplars::{BucketExemplars, Exemplar, ExemplarStore};
use super::schema::HTTP_DURATION_FAMILY;

/// `Content-Type` of the OpenMetrics answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Where the encoder finds a series' exemplars: the family name and the series'
/// labels in, the exemplars of that series (if it has any) out.
pub trait ExemplarSource {
    /// The exemplars of the series `labels` of family `family`.
    fn exemplars(&self, family: &str, labels: &Metric) -> Option<std::sync::Arc<BucketExemplars>>;
}

/// The exemplars Pulse keeps: those of `http_request_duration_seconds` series.
impl ExemplarSource for ExemplarStore {
    fn exemplars(&self, family: &str, series: &Metric) -> Option<std::sync::Arc<BucketExemplars>> {
        if family != HTTP_DURATION_FAMILY {
            return None;
        }
        let label = |name: &str| {
            series
                .get_label()
                .iter()
                .find(|pair| pair.name() == name)
                .map(|pair| pair.value())
        };
        self.find(label("method")?, label("route")?)
    }
}

/// Encodes `families` in OpenMetrics 1.0.0.
pub fn encode(families: &[MetricFamily], exemplars: &dyn ExemplarSource) -> String {
    let mut out = String::with_capacity(32 * 1024);
    for family in families {
        let name = family.name();
        let metric_type = family.get_field_type();
        // OpenMetrics names a counter's family without `_total` and its sample with
        // it. The SDK's counters all end in `_total`; one that did not would keep
        // its name as an `unknown` family, so the sample names stay the text format's.
        let (family_name, type_name) = match metric_type {
            MetricType::COUNTER => match name.strip_suffix("_total") {
                Some(stem) => (stem, "counter"),
                None => (name, "unknown"),
            },
            MetricType::GAUGE => (name, "gauge"),
            MetricType::HISTOGRAM => (name, "histogram"),
            MetricType::SUMMARY => (name, "summary"),
            // Nothing Pulse registers is untyped (the text encoder cannot write one either).
            MetricType::UNTYPED => continue,
        };
        let _ = writeln!(out, "# TYPE {family_name} {type_name}");
        if !family.help().is_empty() {
            out.push_str("# HELP ");
            out.push_str(family_name);
            out.push(' ');
            push_escaped(&mut out, family.help());
            out.push('\n');
        }
        for metric in family.get_metric() {
            match metric_type {
                MetricType::COUNTER => sample(
                    &mut out,
                    name,
                    metric,
                    None,
                    metric.get_counter().get_value(),
                ),
                MetricType::GAUGE => {
                    sample(&mut out, name, metric, None, metric.get_gauge().get_value())
                }
                MetricType::UNTYPED => {}
                MetricType::HISTOGRAM => {
                    let series = exemplars.exemplars(name, metric);
                    histogram(&mut out, name, metric, series.as_deref());
                }
                MetricType::SUMMARY => summary(&mut out, name, metric),
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

fn histogram(out: &mut String, name: &str, metric: &Metric, exemplars: Option<&BucketExemplars>) {
    let histogram = metric.get_histogram();
    let bucket_name = format!("{name}_bucket");
    let mut saw_infinity = false;
    for (index, bucket) in histogram.get_bucket().iter().enumerate() {
        let bound = bucket.upper_bound();
        saw_infinity |= bound == f64::INFINITY;
        let le = le_label(bound);
        sample_line(
            out,
            &bucket_name,
            metric,
            Some(("le", &le)),
            bucket.cumulative_count() as f64,
        );
        if let Some(exemplar) = exemplars.and_then(|e| e.get(index)) {
            push_exemplar(out, &exemplar);
        }
        out.push('\n');
    }
    if !saw_infinity {
        let index = histogram.get_bucket().len();
        sample_line(
            out,
            &bucket_name,
            metric,
            Some(("le", "+Inf")),
            histogram.get_sample_count() as f64,
        );
        if let Some(exemplar) = exemplars.and_then(|e| e.get(index)) {
            push_exemplar(out, &exemplar);
        }
        out.push('\n');
    }
    sample(
        out,
        &format!("{name}_sum"),
        metric,
        None,
        histogram.get_sample_sum(),
    );
    sample(
        out,
        &format!("{name}_count"),
        metric,
        None,
        histogram.get_sample_count() as f64,
    );
}

fn summary(out: &mut String, name: &str, metric: &Metric) {
    let summary = metric.get_summary();
    for quantile in summary.get_quantile() {
        let q = quantile.quantile().to_string();
        sample(out, name, metric, Some(("quantile", &q)), quantile.value());
    }
    sample(
        out,
        &format!("{name}_sum"),
        metric,
        None,
        summary.sample_sum(),
    );
    sample(
        out,
        &format!("{name}_count"),
        metric,
        None,
        summary.sample_count() as f64,
    );
}

/// A bucket bound as the text encoder writes it (`0.005`, `1`, `+Inf`), so the
/// series are the same in both formats.
///
/// A deliberate deviation: OpenMetrics asks for canonical numbers in `le` (`1.0`).
/// Prometheus 2 stores `le` as written, so `le="1.0"` from an OpenMetrics scrape
/// and `le="1"` from a text scrape (promtool, an older scraper, a fallback) would
/// be two series, and every `histogram_quantile` over a format change would break.
/// Prometheus 3 normalises `le` either way; parsers accept both.
fn le_label(bound: f64) -> String {
    if bound == f64::INFINITY {
        "+Inf".to_owned()
    } else {
        bound.to_string()
    }
}

fn sample(out: &mut String, name: &str, metric: &Metric, extra: Option<(&str, &str)>, value: f64) {
    sample_line(out, name, metric, extra, value);
    out.push('\n');
}

/// `name{labels} value [timestamp]`, without the line end (an exemplar may follow).
fn sample_line(
    out: &mut String,
    name: &str,
    metric: &Metric,
    extra: Option<(&str, &str)>,
    value: f64,
) {
    out.push_str(name);
    let labels = metric.get_label();
    if !labels.is_empty() || extra.is_some() {
        let mut separator = '{';
        for pair in labels {
            out.push(separator);
            push_label(out, pair.name(), pair.value());
            separator = ',';
        }
        if let Some((label, value)) = extra {
            out.push(separator);
            push_label(out, label, value);
        }
        out.push('}');
    }
    out.push(' ');
    push_number(out, value);
    let timestamp_ms = metric.timestamp_ms();
    if timestamp_ms != 0 {
        // OpenMetrics timestamps are seconds.
        let _ = write!(out, " {}", timestamp_ms as f64 / 1000.0);
    }
}

/// ` # {trace_id="…",span_id="…"} value timestamp`
fn push_exemplar(out: &mut String, exemplar: &Exemplar) {
    let _ = write!(
        out,
        " # {{trace_id=\"{}\",span_id=\"{}\"}} ",
        exemplar.trace_id, exemplar.span_id
    );
    push_number(out, exemplar.value);
    let _ = write!(out, " {:.3}", exemplar.timestamp());
}

fn push_label(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str("=\"");
    push_escaped(out, value);
    out.push('"');
}

/// OpenMetrics escapes backslash, newline and double quote, in label values and HELP.
fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// A value as the text encoder writes it, except the special values, which
/// OpenMetrics spells `+Inf`, `-Inf` and `NaN`.
fn push_number(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_openmetrics_escapes() {
        let mut out = String::new();
        push_escaped(&mut out, "a\\b\n\"c\"");
        assert_eq!(out, r#"a\\b\n\"c\""#);
    }

    #[test]
    fn numbers_are_written_as_openmetrics_spells_them() {
        for (value, text) in [
            (1.0, "1"),
            (0.005, "0.005"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ] {
            let mut out = String::new();
            push_number(&mut out, value);
            assert_eq!(out, text);
        }
        assert_eq!(le_label(2.5), "2.5");
        assert_eq!(le_label(f64::INFINITY), "+Inf");
    }
}

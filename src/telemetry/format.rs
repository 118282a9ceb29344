//! Which exposition format `/metrics` answers in: what the scraper's `Accept`
//! header prefers among the three Pulse writes.

use mime::Mime;

/// The exposition formats `/metrics` can answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4: curl, promtool, older scrapers.
    Text,
    /// OpenMetrics 1.0.0, with exemplars: what Prometheus asks for first.
    OpenMetrics,
    /// The Prometheus protobuf exposition (delimited `MetricFamily` messages), with
    /// native histograms: what Prometheus asks for first with native histograms on.
    Protobuf,
}

/// The protobuf media type's `proto` parameter: the only message Pulse writes.
const PROTOBUF_MESSAGE: &str = "io.prometheus.client.MetricFamily";

/// The format an `Accept` header asks for: the entry of highest quality among
/// `application/vnd.google.protobuf` (`proto=io.prometheus.client.MetricFamily;
/// encoding=delimited`), `application/openmetrics-text` (version 1.0.0, or none)
/// and the text format (`text/plain`, `text/*`, `*/*`). At equal quality the
/// earlier entry wins, except that the text format yields to the other two (a
/// wildcard never selects protobuf). The text format without a header, when
/// nothing matches, and for entries of quality 0; entries that do not parse are skipped.
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Text;
    };
    let (mut best, mut best_quality) = (Format::Text, 0.0_f32);
    for entry in accept.split(',') {
        let Ok(media) = entry.trim().parse::<Mime>() else {
            continue;
        };
        let Some(format) = offered(&media) else {
            continue;
        };
        let quality = media
            .get_param("q")
            .and_then(|q| q.as_str().parse::<f32>().ok())
            .unwrap_or(1.0);
        let better = quality > best_quality
            || (quality == best_quality && best == Format::Text && format != Format::Text);
        if quality > 0.0 && better {
            (best, best_quality) = (format, quality);
        }
    }
    best
}

/// The format a media range names, if Pulse writes it.
fn offered(media: &Mime) -> Option<Format> {
    let param = |name: &str| media.get_param(name).map(|v| v.as_str().to_owned());
    match (media.type_().as_str(), media.subtype().as_str()) {
        ("application", "vnd.google.protobuf")
            if param("proto").as_deref() == Some(PROTOBUF_MESSAGE)
                && param("encoding").as_deref() == Some("delimited") =>
        {
            Some(Format::Protobuf)
        }
        ("application", "openmetrics-text")
            if param("version").as_deref().is_none_or(|v| v == "1.0.0") =>
        {
            Some(Format::OpenMetrics)
        }
        ("text", "plain") | ("text", "*") | ("*", "*") => Some(Format::Text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROTOBUF: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited";

    #[test]
    fn prometheus_gets_openmetrics_and_everyone_else_the_text_format() {
        // What Prometheus 2.42 sends.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(
            negotiate(Some("application/openmetrics-text")),
            Format::OpenMetrics
        );
        for text in [
            None,
            Some("*/*"),
            Some("text/plain"),
            Some("text/plain;version=0.0.4"),
            // Only a version Pulse does not write.
            Some("application/openmetrics-text;version=0.0.1"),
            // Preferred less than the text format.
            Some("application/openmetrics-text;q=0.2,text/plain;q=0.9"),
            Some("application/openmetrics-text;q=0"),
            Some("not a media type"),
        ] {
            assert_eq!(negotiate(text), Format::Text, "{text:?}");
        }
    }

    #[test]
    fn protobuf_only_when_asked_for_first_or_preferred() {
        // What Prometheus 2.42 sends with `--enable-feature=native-histograms`.
        let native = format!(
            "{PROTOBUF},application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;\
             version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        );
        assert_eq!(negotiate(Some(&native)), Format::Protobuf);
        assert_eq!(negotiate(Some(PROTOBUF)), Format::Protobuf);
        // Preferred by quality though listed later.
        let later = format!("application/openmetrics-text;q=0.5,{PROTOBUF};q=0.9");
        assert_eq!(negotiate(Some(&later)), Format::Protobuf);
        // Equal quality: the first listed.
        let tie = format!("application/openmetrics-text,{PROTOBUF}");
        assert_eq!(negotiate(Some(&tie)), Format::OpenMetrics);
        let tie = format!("{PROTOBUF},application/openmetrics-text");
        assert_eq!(negotiate(Some(&tie)), Format::Protobuf);
        // Asked for less than another format.
        let less = format!("{PROTOBUF};q=0.3,application/openmetrics-text;q=0.8");
        assert_eq!(negotiate(Some(&less)), Format::OpenMetrics);
        let less = format!("{PROTOBUF};q=0.3,text/plain");
        assert_eq!(negotiate(Some(&less)), Format::Text);
        for not_ours in [
            // Another message, another encoding, or no parameters at all.
            "application/vnd.google.protobuf;proto=io.prometheus.client.Metric;encoding=delimited",
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text",
            "application/vnd.google.protobuf",
            "application/*",
        ] {
            assert_eq!(negotiate(Some(not_ours)), Format::Text, "{not_ours}");
        }
        assert_eq!(negotiate(Some(&format!("{PROTOBUF};q=0"))), Format::Text);
    }
}

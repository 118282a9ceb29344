//! JSON log lines, written off the request path.
//!
//! One object per line: `timestamp`, `level`, `target`, the event's fields at the
//! top level, and, for every line written while a request is handled, that
//! request's `trace_id` and `span_id` (so a log store can join lines to traces).
//!
//! Written by our own layer rather than `tracing-subscriber`'s JSON formatter: the
//! benchmark profile showed that formatter as most of the telemetry's cost per
//! request (it serialises span fields again on every `record` and every event,
//! through `serde_json` values), while a line here is a handful of appends to a
//! reused buffer. Lines go to a bounded buffer that a background thread writes to
//! stdout (`log_queue.rs`): a slow or stalled stdout never stalls a request;
//! when the buffer is full, lines are dropped and counted
//! (`pulse_log_lines_dropped_total`). It is written out at exit.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::time::SystemTime;

use opentelemetry::trace::{SpanId, TraceId};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};

use super::json_text::{Escaped, needs_escape, push_hex, push_str};

/// The trace and span of the request being handled, for the lines it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestIds {
    /// The request's trace.
    pub trace_id: TraceId,
    /// The request's server span.
    pub span_id: SpanId,
}

impl RequestIds {
    /// A request without a span (a probe): its lines carry no ids.
    pub const NONE: Self = Self {
        trace_id: TraceId::INVALID,
        span_id: SpanId::INVALID,
    };
}

tokio::task_local! {
    /// Set by the HTTP telemetry layer while a request is handled.
    pub static REQUEST: RequestIds;
}

/// Says once, on stderr and in the log, that lines are being dropped: the metric
/// counts them, but someone reading the log should learn why it has gaps.
pub async fn report_dropped_lines(dropped: impl Fn() -> u64) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        if dropped() > 0 {
            let warning = "stdout is not keeping up: log lines are being dropped \
                           (pulse_log_lines_dropped_total counts them)";
            eprintln!("pulse: {warning}");
            tracing::warn!("{warning}");
            return;
        }
    }
}

/// The JSON lines layer, writing through `writer`.
#[derive(Debug)]
pub struct JsonLines<W> {
    writer: W,
}

impl<W> JsonLines<W> {
    /// Lines written with `writer` (a non-blocking stdout in the binary).
    pub fn new(writer: W) -> Self {
        Self { writer }
    }
}

thread_local! {
    /// One line's buffer per thread, reused: no allocation per line once warm.
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(512));
}

impl<S, W> Layer<S> for JsonLines<W>
where
    S: Subscriber,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        LINE.with(|cell| {
            let Ok(mut line) = cell.try_borrow_mut() else {
                // Re-entered from inside a write (an event about logging itself): drop it.
                return;
            };
            line.clear();
            format_line(&mut line, event, REQUEST.try_with(|ids| *ids).ok());
            let mut writer = self.writer.make_writer_for(event.metadata());
            // One write per line: the queue keeps lines whole and in order.
            let _ = writer.write_all(line.as_bytes());
        });
    }
}

/// Appends `event` as one JSON line (with its newline) to `line`.
fn format_line(line: &mut String, event: &Event<'_>, ids: Option<RequestIds>) {
    let meta = event.metadata();
    line.push_str("{\"timestamp\":\"");
    push_timestamp(line, SystemTime::now());
    line.push_str("\",\"level\":\"");
    line.push_str(meta.level().as_str());
    line.push_str("\",\"target\":");
    push_str(line, meta.target());
    event.record(&mut Fields { line });
    // A request without a span (a probe, unless probes are recorded) has no ids to join.
    if let Some(ids) = ids.filter(|ids| ids.trace_id != TraceId::INVALID) {
        line.push_str(",\"trace_id\":\"");
        push_hex(line, &ids.trace_id.to_bytes());
        line.push_str("\",\"span_id\":\"");
        push_hex(line, &ids.span_id.to_bytes());
        line.push('"');
    }
    line.push_str("}\n");
}

thread_local! {
    /// The RFC 3339 text of the last second a line was written in, up to the
    /// seconds (`2026-12-02T10:04:23`): the calendar arithmetic runs once a second
    /// per thread, not once a line.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Appends `now` as RFC 3339 UTC with microseconds: `2026-12-02T10:04:23.123456Z`.
fn push_timestamp(line: &mut String, now: SystemTime) {
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since.as_secs();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != seconds {
            let whole = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
            let text = humantime::format_rfc3339_seconds(whole).to_string();
            // `…T10:04:23Z`: keep everything before the zone.
            cached.1 = text.trim_end_matches('Z').to_owned();
            cached.0 = seconds;
        }
        line.push_str(&cached.1);
    });
    let micros = since.subsec_micros();
    let mut digits = *b".000000Z";
    let mut rest = micros;
    for digit in digits[1..7].iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    // ASCII digits: always valid UTF-8.
    line.push_str(std::str::from_utf8(&digits).unwrap_or(".000000Z"));
}

/// Writes each field as `,"name":value`.
struct Fields<'a> {
    line: &'a mut String,
}

impl Fields<'_> {
    fn key(&mut self, field: &Field) {
        let name = field.name();
        // A field name is nearly always an identifier: appended as it is.
        if needs_escape(name.as_bytes()) {
            self.line.push(',');
            push_str(self.line, name);
            self.line.push(':');
        } else {
            self.line.push_str(",\"");
            self.line.push_str(name);
            self.line.push_str("\":");
        }
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_str(self.line, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.line.push_str(if value { "true" } else { "false" });
    }

    // Numbers through `itoa` and `ryu` (what serde_json uses): the access line has
    // two on every request, and `core::fmt` showed in its profile.
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        self.line.push_str(itoa::Buffer::new().format(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        self.line.push_str(itoa::Buffer::new().format(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            self.line.push_str(ryu::Buffer::new().format_finite(value));
        } else {
            // JSON has no NaN or infinity.
            self.line.push_str("null");
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        self.line.push('"');
        let _ = write!(Escaped(self.line), "{value:?}");
        self.line.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        use std::time::Duration;
        let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_205_863);
        // Within one second (the cached prefix), across seconds, and a new day.
        for offset in [0, 1, 999_999, 1_000_000, 1_000_001, 86_400_000_007] {
            let at = base + Duration::from_micros(offset);
            let mut line = String::new();
            push_timestamp(&mut line, at);
            assert_eq!(line, humantime::format_rfc3339_micros(at).to_string());
        }
    }

    #[test]
    fn a_line_is_one_json_object_with_the_request_ids() {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::layer::SubscriberExt as _;
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber =
            tracing_subscriber::registry().with(JsonLines::new(move || writer.clone()));
        let ids = RequestIds {
            trace_id: TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            span_id: SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        };
        tracing::subscriber::with_default(subscriber, || {
            REQUEST.sync_scope(ids, || {
                tracing::info!(user.id = 7, ratio = 0.5, name = "a \"b\"", "user created");
            });
            tracing::warn!(error = %"bad\nthing", "outside a request");
            REQUEST.sync_scope(RequestIds::NONE, || tracing::debug!("a probe, no span"));
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0]["message"], "user created");
        assert_eq!(lines[0]["user.id"], 7);
        assert_eq!(lines[0]["ratio"], 0.5);
        assert_eq!(lines[0]["name"], "a \"b\"");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(lines[0]["span_id"], "00f067aa0ba902b7");
        assert_eq!(lines[1]["error"], "bad\nthing");
        assert!(lines[1].get("trace_id").is_none());
        assert!(
            lines[2].get("trace_id").is_none(),
            "no all-zero ids: {}",
            lines[2]
        );
    }
}

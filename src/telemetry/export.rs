//! Span export with its losses counted: `pulse_spans_exported_total` and
//! `pulse_spans_dropped_total{reason}`.
//!
//! The SDK's `BatchSpanProcessor` drops a span when its queue is full and keeps the
//! count to itself (it is logged once, at shutdown); a failed export is not counted
//! at all. Two thin wrappers make both visible without replacing the SDK's batching:
//!
//! - [`CountingProcessor`] sits in front of the batch processor and admits a span
//!   only if it can reserve one of the queue's `capacity` slots for it, in one
//!   atomic step. A slot is held while the span is *in flight*: queued, or in the
//!   batch being exported; [`CountingExporter`] gives the batch's slots back when
//!   its export ends. The batch processor's channel (of the same capacity) never
//!   holds more spans than are in flight, so its own `try_send`, which drops
//!   without counting, never fails; every span that gets no slot is counted here
//!   as `queue_full`. The price: the batch being exported takes room in the queue,
//!   so `OTEL_BSP_MAX_QUEUE_SIZE` bounds queued plus exporting spans.
//! - [`CountingExporter`] wraps the OTLP exporter and counts each batch as exported
//!   or `export_failed` (a collector down, silent past the export timeout, or
//!   answering an error).
//!
//! So every finished span ends in exactly one of the three counts, and the request
//! path pays one atomic add for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_MAX_QUEUE_SIZE_DEFAULT, Span, SpanData, SpanExporter,
    SpanProcessor,
};

/// Where finished spans went, since start.
#[derive(Debug, Default)]
pub struct SpanCounts {
    /// Spans holding a queue slot: admitted, their export not yet ended.
    in_flight: AtomicU64,
    exported: AtomicU64,
    failed: AtomicU64,
    queue_full: AtomicU64,
}

impl SpanCounts {
    /// Spans the collector accepted.
    pub fn exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }

    /// Spans lost because an export failed.
    pub fn export_failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Spans lost because the export queue was full.
    pub fn queue_full(&self) -> u64 {
        self.queue_full.load(Ordering::Relaxed)
    }

    /// Takes a queue slot, unless all `capacity` are held.
    fn reserve(&self, capacity: u64) -> bool {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < capacity).then_some(held + 1)
            })
            .is_ok()
    }

    /// Gives back the slots of `spans` whose export ended.
    fn release(&self, spans: u64) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                Some(held.saturating_sub(spans))
            });
    }
}

/// The batch queue's capacity: `OTEL_BSP_MAX_QUEUE_SIZE`, else the SDK's default.
///
/// Read here (the SDK reads the same variable) because the batch processor keeps it
/// private and [`CountingProcessor`] must admit no more than it holds.
pub fn queue_capacity() -> usize {
    std::env::var(OTEL_BSP_MAX_QUEUE_SIZE)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(OTEL_BSP_MAX_QUEUE_SIZE_DEFAULT)
}

/// The exporter, counting each batch as exported or failed.
#[derive(Debug)]
pub struct CountingExporter<E> {
    inner: E,
    counts: Arc<SpanCounts>,
}

impl<E> CountingExporter<E> {
    /// Wraps `inner`; results go to `counts`.
    pub fn new(inner: E, counts: Arc<SpanCounts>) -> Self {
        Self { inner, counts }
    }
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let spans = batch.len() as u64;
        let counts = Arc::clone(&self.counts);
        let export = self.inner.export(batch);
        async move {
            let result = export.await;
            let counter = if result.is_ok() {
                &counts.exported
            } else {
                &counts.failed
            };
            counter.fetch_add(spans, Ordering::Relaxed);
            counts.release(spans);
            result
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The span processor in front of the batch processor: admits a finished span only
/// while the queue has room for it, and counts the rest.
#[derive(Debug)]
pub struct CountingProcessor<P> {
    inner: P,
    capacity: u64,
    counts: Arc<SpanCounts>,
}

impl<P> CountingProcessor<P> {
    /// Wraps `inner`, whose queue holds `capacity` spans.
    pub fn new(inner: P, capacity: usize, counts: Arc<SpanCounts>) -> Self {
        Self {
            inner,
            capacity: capacity as u64,
            counts,
        }
    }
}

impl<P: SpanProcessor> SpanProcessor for CountingProcessor<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if !self.counts.reserve(self.capacity) {
            self.counts.queue_full.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::error::OTelSdkError;
    use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
    use std::sync::Mutex;

    /// An exporter that fails every batch, or blocks until told to go on.
    #[derive(Debug, Clone, Default)]
    struct Stub {
        fail: bool,
        gate: Arc<Mutex<()>>,
    }

    impl SpanExporter for Stub {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            let _wait = self.gate.lock();
            if self.fail {
                Err(OTelSdkError::InternalFailure("collector said 503".into()))
            } else {
                Ok(())
            }
        }
    }

    fn provider(stub: Stub, capacity: usize, counts: &Arc<SpanCounts>) -> SdkTracerProvider {
        let exporter = CountingExporter::new(stub, Arc::clone(counts));
        let batch = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(capacity)
                    .with_max_export_batch_size(capacity)
                    .build(),
            )
            .build();
        SdkTracerProvider::builder()
            .with_span_processor(CountingProcessor::new(batch, capacity, Arc::clone(counts)))
            .build()
    }

    fn end_spans(provider: &SdkTracerProvider, n: usize) {
        let tracer = provider.tracer("test");
        for _ in 0..n {
            tracer.in_span("request", |_| {});
        }
    }

    #[test]
    fn every_span_is_exported_or_counted_as_lost() {
        for fail in [false, true] {
            let counts = Arc::new(SpanCounts::default());
            let provider = provider(
                Stub {
                    fail,
                    ..Stub::default()
                },
                64,
                &counts,
            );
            end_spans(&provider, 50);
            provider.force_flush().ok();
            let (exported, failed) = (counts.exported(), counts.export_failed());
            assert_eq!(exported + failed + counts.queue_full(), 50, "fail={fail}");
            assert_eq!(if fail { failed } else { exported }, 50);
        }
    }

    #[test]
    fn spans_ending_on_many_threads_at_once_are_each_counted_once() {
        // The slot is reserved in one atomic step: threads racing for the last slots
        // cannot overfill the SDK's channel (which would drop spans uncounted).
        let counts = Arc::new(SpanCounts::default());
        let stub = Stub::default();
        let held = stub.gate.lock().unwrap();
        let provider = provider(stub.clone(), 8, &counts);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| end_spans(&provider, 100));
            }
        });
        drop(held);
        provider.force_flush().ok();
        let total = counts.exported() + counts.export_failed() + counts.queue_full();
        assert_eq!(total, 800);
        assert_eq!(
            counts.in_flight.load(Ordering::Relaxed),
            0,
            "every slot given back"
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts_what_it_cannot_hold() {
        let counts = Arc::new(SpanCounts::default());
        let stub = Stub::default();
        // The collector hangs: nothing leaves the queue while the spans end.
        let held = stub.gate.lock().unwrap();
        let provider = provider(stub.clone(), 8, &counts);
        end_spans(&provider, 100);
        assert_eq!(counts.queue_full(), 92);
        drop(held);
        provider.force_flush().ok();
        assert_eq!(counts.exported(), 8);
    }
}

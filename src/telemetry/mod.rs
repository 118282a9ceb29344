//! Telemetry set-up: the OTel resource, metrics, traces and logs.
//!
//! The library never installs global state by itself: [`Metrics::new`] is enough
//! to build a router (tests build many), while [`init_tracing`] installs the
//! global subscriber, tracer provider and propagator once, in the binary.

pub(crate) mod db;
pub(crate) mod exemplars;
pub(crate) mod export;
pub(crate) mod format;
pub(crate) mod json_text;
pub mod labels;
pub(crate) mod log_queue;
pub(crate) mod logs;
pub(crate) mod metrics;
pub(crate) mod native;
pub(crate) mod native_series;
pub(crate) mod openmetrics;
pub mod proto;
pub(crate) mod protobuf;
pub mod routes;
pub(crate) mod schema;
pub(crate) mod spans;
pub(crate) mod swap_filter;

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Key, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing::Level;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

pub use metrics::Metrics;

use crate::BuildInfo;
use crate::config::rules::log_filter;
use crate::config::{LogFormat, PodIdentity};

/// Replaces the active log filter; the error is shown to whoever asked for the change.
pub type LogReloader = Box<dyn Fn(&str) -> Result<(), TelemetryError> + Send + Sync>;

/// A failure to set up telemetry (at start-up only).
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The metrics registry or exporter could not be built.
    #[error("metrics set-up failed: {0}")]
    Metrics(String),
    /// The OTLP trace exporter could not be built.
    #[error("OTLP trace exporter set-up failed: {0}")]
    Otlp(String),
    /// The log filter directive is invalid.
    #[error("invalid --log-level: {0}")]
    LogFilter(#[from] crate::config::rules::RuleError),
    /// A global subscriber was already installed.
    #[error("tracing subscriber already installed: {0}")]
    Subscriber(String),
}

/// The OTel resource: `OTEL_SERVICE_NAME` (default `pulse`),
/// `OTEL_RESOURCE_ATTRIBUTES`, the service version and the pod's identity.
pub fn resource(build: &BuildInfo, pod: &PodIdentity) -> Resource {
    // The SDK's default builder reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES;
    // it falls back to "unknown_service", which is where our own default applies.
    let detected = Resource::builder().build();
    let service_name = Key::from_static_str("service.name");
    let named = detected
        .get(&service_name)
        .is_some_and(|v| !v.as_str().starts_with("unknown_service"));
    let mut builder = Resource::builder();
    if !named {
        builder = builder.with_service_name("pulse");
    }
    let mut attributes = vec![KeyValue::new("service.version", build.version)];
    for (key, value) in [
        ("k8s.pod.name", &pod.name),
        ("k8s.namespace.name", &pod.namespace),
        ("k8s.node.name", &pod.node),
    ] {
        if let Some(value) = value {
            attributes.push(KeyValue::new(key, value.clone()));
        }
    }
    builder.with_attributes(attributes).build()
}

/// The `service.name` the resource settled on (env, attributes or the default).
pub fn service_name(resource: &Resource) -> String {
    resource
        .get(&Key::from_static_str("service.name"))
        .map_or_else(|| "pulse".to_owned(), |v| v.as_str().into_owned())
}

/// What [`init_tracing`] needs to know.
#[derive(Debug, Clone)]
pub struct TracingConfig {
    /// An `EnvFilter` directive such as `info` or `pulse=debug,tower=warn`.
    pub log_level: String,
    /// JSON lines or human-readable text.
    pub log_format: LogFormat,
}

/// What the installed telemetry hands to the application
/// (`App::new`): empty where nothing global was installed (tests
/// and benchmarks build many applications in one process).
#[derive(Default)]
pub struct Handles {
    /// Swaps the log filter when the runtime settings change `log_level`.
    pub log_reloader: Option<LogReloader>,
    /// Counts the log lines dropped because stdout did not keep up.
    pub dropped_log_lines: Option<DroppedLines>,
    /// Where the finished spans went (all zero when nothing exports them).
    pub span_counts: Option<Arc<export::SpanCounts>>,
}

impl std::fmt::Debug for Handles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handles")
            .field("log_reloader", &self.log_reloader.is_some())
            .field("dropped_log_lines", &self.dropped_log_lines.is_some())
            .field("span_counts", &self.span_counts)
            .finish()
    }
}

/// The count of log lines the bounded queue to stdout dropped.
#[derive(Clone)]
pub struct DroppedLines(log_queue::DroppedCounter);

impl DroppedLines {
    /// Lines dropped so far.
    pub fn count(&self) -> u64 {
        self.0.count()
    }
}

impl std::fmt::Debug for DroppedLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DroppedLines").field(&self.count()).finish()
    }
}

/// Keeps the tracer provider and the log writer alive; [`TracingGuard::shutdown`]
/// flushes both.
pub struct TracingGuard {
    provider: SdkTracerProvider,
    log_reloader: Option<LogReloader>,
    /// Dropping it writes out the queued log lines (waiting up to a second).
    log_worker: Option<log_queue::WriterGuard>,
    dropped_lines: DroppedLines,
    span_counts: Arc<export::SpanCounts>,
}

impl std::fmt::Debug for TracingGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracingGuard").finish_non_exhaustive()
    }
}

impl TracingGuard {
    /// What the application needs of the installed telemetry. The log reloader
    /// goes to the first caller: one process, one application that changes the
    /// log filter.
    pub fn handles(&mut self) -> Handles {
        Handles {
            log_reloader: self.log_reloader.take(),
            dropped_log_lines: Some(self.dropped_lines.clone()),
            span_counts: Some(Arc::clone(&self.span_counts)),
        }
    }

    /// Flushes pending spans and stops the exporter, then writes out the queued
    /// log lines.
    pub fn shutdown(&mut self, timeout: Duration) {
        if let Err(err) = self.provider.shutdown_with_timeout(timeout) {
            tracing::warn!(error = %err, "tracer provider shutdown failed");
        }
        if let Some(mut worker) = self.log_worker.take() {
            worker.flush_and_stop();
        }
    }
}

/// Installs the global log subscriber, tracer provider and W3C propagator.
///
/// Spans always get real trace and span ids (they are logged and returned in
/// `traceparent`); they are exported over OTLP only when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
pub fn init_tracing(
    config: &TracingConfig,
    resource: Resource,
) -> Result<TracingGuard, TelemetryError> {
    let filter = log_filter(&config.log_level)?;
    // Replaceable, so the runtime settings can change the filter without a restart.
    let filter = swap_filter::SwappableFilter::new(filter);
    let swap = filter.clone();
    let log_reloader: LogReloader = Box::new(move |directive: &str| {
        swap.set(log_filter(directive)?);
        Ok(())
    });
    let (provider, span_counts, otlp) = tracer_provider(resource)?;
    let tracer = provider.tracer("pulse");
    // Pulse's spans start with this tracer (telemetry/spans.rs); the global
    // provider serves everything else that asks for one.
    if !spans::install(tracer.clone()) {
        return Err(TelemetryError::Subscriber(
            "a tracer was already in use".to_owned(),
        ));
    }
    opentelemetry::global::set_tracer_provider(provider.clone());
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let (stdout, dropped, log_worker) = log_queue::start(std::io::stdout(), "pulse-log-writer")
        .map_err(|e| TelemetryError::Subscriber(format!("cannot start the log writer: {e}")))?;
    let dropped_lines = DroppedLines(dropped);
    let fmt = match config.log_format {
        LogFormat::Json => logs::JsonLines::new(stdout).boxed(),
        // Colours only for a person at a terminal: `make run > file` stays plain text.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stdout().is_terminal())
            .with_writer(stdout)
            .boxed(),
    };
    // Per-layer filters: --log-level decides what is logged, never which spans
    // exist, so trace ids and exported traces survive `--log-level warn`. The
    // OpenTelemetry layer sees Pulse's spans only: handed events, it would turn every
    // log line into a span event, formatting each field on every request (the
    // benchmark profile showed that as the largest single cost of the telemetry layer).
    let spans = tracing_subscriber::filter::filter_fn(|meta| {
        meta.is_span() && *meta.level() <= Level::INFO && meta.target().starts_with("pulse")
    });
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                // Code locations, thread ids and busy/idle times per span: not worth their
                // per-request cost for a server span whose attributes say what matters.
                .with_location(false)
                // The `tracing` target is not an OpenTelemetry attribute.
                .with_target(false)
                .with_threads(false)
                .with_tracked_inactivity(false)
                .with_filter(spans),
        )
        .try_init()
        .map_err(|e| TelemetryError::Subscriber(e.to_string()))?;

    if let Some(endpoint) = otlp {
        tracing::info!(%endpoint, "exporting traces over OTLP/HTTP");
    }
    Ok(TracingGuard {
        provider,
        log_reloader: Some(log_reloader),
        log_worker: Some(log_worker),
        dropped_lines,
        span_counts,
    })
}

/// The tracer provider, with an OTLP exporter behind counted batching when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set (returned, for the start-up log line).
fn tracer_provider(
    resource: Resource,
) -> Result<(SdkTracerProvider, Arc<export::SpanCounts>, Option<String>), TelemetryError> {
    let mut provider = SdkTracerProvider::builder().with_resource(resource);
    let span_counts = Arc::new(export::SpanCounts::default());
    let otlp = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|v| !v.is_empty());
    if otlp.is_some() {
        use opentelemetry_otlp::WithExportConfig as _;
        // The builder reads the endpoint (and OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
        // headers, timeout) from the standard variables itself.
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build()
            .map_err(|e| TelemetryError::Otlp(e.to_string()))?;
        // The SDK's batching, with its losses counted (telemetry/export.rs).
        let capacity = export::queue_capacity();
        let batch = BatchSpanProcessor::builder(export::CountingExporter::new(
            exporter,
            Arc::clone(&span_counts),
        ))
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(capacity)
                .build(),
        )
        .build();
        provider = provider.with_span_processor(export::CountingProcessor::new(
            batch,
            capacity,
            Arc::clone(&span_counts),
        ));
    }
    Ok((provider.build(), span_counts, otlp))
}

//! Per-route telemetry handles, built once per (route, method) and reused.
//!
//! Recording a metric with attributes makes the SDK find the attribute set (hash,
//! compare) on every call; the HTTP layer records six per request, which the
//! benchmark profile showed as its largest cost. Bound instruments skip that: the
//! set is found once, here, and each request only updates the bound state. The
//! span name (`GET /api/users`) and the route label are prepared here too.
//!
//! Routes are templates and methods are normalised, so this cache is bounded by the
//! router's size (per status code: at most the 500 codes `/status/{code}` can make).

use std::collections::{BTreeSet, HashMap};

use foldhash::fast::RandomState;
use std::sync::{Arc, OnceLock, RwLock};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{BoundCounter, BoundHistogram, BoundUpDownCounter};

use super::Metrics;
use super::exemplars::BucketExemplars;
use super::labels::HttpMethod;
use super::metrics::HttpSeries;
use super::native::NativeHistogram;
use opentelemetry::trace::{SpanId, TraceId};
use std::time::{Duration, Instant};

/// Route label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// Telemetry handles of one (route, method).
pub struct RouteTelemetry {
    /// The span name: `{METHOD} {route}`, or the method alone when no route matched.
    /// `'static` because OpenTelemetry takes span names as `Cow<'static, str>`: made
    /// once per (route, method) and kept for the life of the process (the table is
    /// bounded by the router), so no request copies it.
    pub span_name: &'static str,
    /// The route template (or `unmatched`).
    pub route: Arc<str>,
    /// Whether a route matched (`route` is then a template, not [`UNMATCHED`]).
    pub matched: bool,
    /// Whether requests of this route are recorded in the `http_*` series (probes
    /// and `/metrics` are not, by default).
    pub recorded: bool,
    /// The `method` label.
    method: &'static str,
    labels: [KeyValue; 2],
    metrics: Arc<Metrics>,
    /// Bound on first use: binding creates the series, and probes (not recorded by
    /// default) must not get any.
    bound: OnceLock<Bound>,
    /// foldhash rather than SipHash: keys are route templates and status codes, not
    /// client input, so no flooding to defend against, and two lookups per request.
    by_status: RwLock<HashMap<u16, Arc<StatusTelemetry>, RandomState>>,
}

struct Bound {
    duration: BoundHistogram<f64>,
    /// The duration series' exemplars, found by its labels when `/metrics` is encoded.
    exemplars: Arc<BucketExemplars>,
    /// The duration series' native histogram (telemetry/native.rs).
    native: Arc<NativeHistogram>,
    request_size: BoundHistogram<u64>,
    in_progress: BoundUpDownCounter<i64>,
}

/// The handles that also carry the status label.
pub struct StatusTelemetry {
    requests: BoundCounter<u64>,
    response_size: BoundHistogram<u64>,
}

impl RouteTelemetry {
    fn bound(&self) -> &Bound {
        self.bound.get_or_init(|| {
            let m = &self.metrics;
            Bound {
                duration: m.http.duration.bind(&self.labels),
                exemplars: m.http.exemplars.series(self.method, &self.route),
                native: m.http.native.series(&HttpSeries {
                    method: self.method,
                    route: Arc::clone(&self.route),
                }),
                request_size: m.http.request_size.bind(&self.labels),
                in_progress: m.http.in_progress.bind(&self.labels),
            }
        })
    }

    /// Where the rest of a request's metrics go (`api_errors_total`).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// One request started: `http_requests_in_progress` + 1.
    pub fn started(&self) {
        self.bound().in_progress.add(1);
    }

    /// One request ended, whatever way: `http_requests_in_progress` - 1.
    pub fn ended(&self) {
        self.bound().in_progress.add(-1);
    }

    /// Records a finished request (started at `start`, took `elapsed`); with the
    /// ids of a sampled request's span, it becomes the latest exemplar of its
    /// duration bucket.
    pub fn finished(
        &self,
        status: u16,
        (start, elapsed): (Instant, Duration),
        sampled: Option<(TraceId, SpanId)>,
        request_bytes: u64,
        response_bytes: u64,
    ) {
        let by_status = self.status(status);
        by_status.requests.add(1);
        by_status.response_size.record(response_bytes);
        let bound = self.bound();
        let seconds = elapsed.as_secs_f64();
        // Native first: the protobuf encoder reads it after the SDK's (protobuf.rs).
        bound.native.record(seconds);
        bound.duration.record(seconds);
        if let Some((trace_id, span_id)) = sampled {
            bound.exemplars.record(trace_id, span_id, start, elapsed);
        }
        bound.request_size.record(request_bytes);
        self.metrics.http.app_requests.add(1, &[]);
    }

    fn status(&self, status: u16) -> Arc<StatusTelemetry> {
        let found = crate::sync::read(&self.by_status).get(&status).cloned();
        if let Some(found) = found {
            return found;
        }
        let mut all = crate::sync::write(&self.by_status);
        all.entry(status)
            .or_insert_with(|| {
                let labels = [
                    self.labels[0].clone(),
                    self.labels[1].clone(),
                    KeyValue::new("status", i64::from(status)),
                ];
                Arc::new(StatusTelemetry {
                    requests: self.metrics.http.requests.bind(&labels),
                    response_size: self.metrics.http.response_size.bind(&labels),
                })
            })
            .clone()
    }
}

/// One route's handles, per method (created on first use).
type PerMethod = [OnceLock<Arc<RouteTelemetry>>; HttpMethod::ALL.len()];

/// All routes seen so far.
pub struct RouteTable {
    metrics: Arc<Metrics>,
    /// Routes left out of the `http_*` series (empty when probes are recorded).
    unrecorded: BTreeSet<String>,
    routes: RwLock<HashMap<Box<str>, Arc<PerMethod>, RandomState>>,
}

impl std::fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteTable").finish_non_exhaustive()
    }
}

impl RouteTable {
    /// An empty table recording into `metrics`, except for the `unrecorded` routes.
    pub fn new(metrics: Arc<Metrics>, unrecorded: BTreeSet<String>) -> Self {
        Self {
            metrics,
            unrecorded,
            routes: RwLock::new(HashMap::default()),
        }
    }

    /// The handles of `route` for `method`.
    pub fn get(&self, method: HttpMethod, route: &str) -> Arc<RouteTelemetry> {
        // The read guard must be gone before the write lock is taken: a `match` on
        // the lookup would keep it alive through the arms and deadlock.
        let found = crate::sync::read(&self.routes).get(route).cloned();
        let methods = match found {
            Some(methods) => methods,
            None => crate::sync::write(&self.routes)
                .entry(route.into())
                .or_insert_with(|| Arc::new(std::array::from_fn(|_| OnceLock::new())))
                .clone(),
        };
        methods[method.index()]
            .get_or_init(|| Arc::new(self.bind(method, route)))
            .clone()
    }

    fn bind(&self, method: HttpMethod, route: &str) -> RouteTelemetry {
        let recorded = !self.unrecorded.contains(route);
        let matched = route != UNMATCHED;
        // The conventions' span name: `{method} {route}`, the method alone without a
        // route, and `HTTP` for a method outside the known set.
        let verb = match method {
            HttpMethod::Other => "HTTP",
            known => known.as_str(),
        };
        let span_name = if matched {
            format!("{verb} {route}")
        } else {
            verb.to_owned()
        };
        let route: Arc<str> = Arc::from(route);
        let method = method.as_str();
        let labels = [
            KeyValue::new("method", method),
            KeyValue::new("route", route.clone()),
        ];
        RouteTelemetry {
            span_name: Box::leak(span_name.into_boxed_str()),
            matched,
            recorded,
            bound: OnceLock::new(),
            method,
            by_status: RwLock::new(HashMap::default()),
            metrics: self.metrics.clone(),
            labels,
            route,
        }
    }
}

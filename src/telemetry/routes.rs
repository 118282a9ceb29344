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
//!
//! Finding the handles touches no memory another worker writes: the tables are
//! read through [`ArcSwap`] (its reads use a per-thread slot, not a shared lock
//! word) and the handles are `&'static` (made once, never freed), so a request
//! takes no lock and no reference count. At saturation on two cores, the shared
//! lock and the reference counts of the `RwLock` + `Arc` version were cache-line
//! transfers between the workers on every request, a cost callgrind does not
//! count (docs/performance.md). The leak is bounded like the table: a router is
//! built once per process (tests that build many keep a few kilobytes each).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use foldhash::fast::RandomState;

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
    /// The route template (or `unmatched`); `'static` for the same reason.
    pub route: &'static str,
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
    /// The handles per status code, added as codes are first seen.
    by_status: Table<u16, StatusTelemetry>,
}

/// A map read on every request and written rarely (a new key), of handles that
/// live as long as the process: read without a lock (see the module's doc),
/// written by copying it whole under a mutex. foldhash rather than SipHash: keys
/// are route templates and status codes, not client input, so no flooding to
/// defend against.
struct Table<K, V: 'static> {
    map: ArcSwap<HashMap<K, &'static V, RandomState>>,
    /// Held while a key is added, so that two first requests of one key make one value.
    adding: Mutex<()>,
}

impl<K: std::hash::Hash + Eq + Clone, V> Table<K, V> {
    fn new() -> Self {
        Self {
            map: ArcSwap::from_pointee(HashMap::default()),
            adding: Mutex::new(()),
        }
    }

    /// The value of `key`, made by `make` (once, and kept for good) if it is new.
    fn get<Q>(&self, key: &Q, make: impl FnOnce() -> (K, V)) -> &'static V
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        if let Some(found) = self.map.load().get(key) {
            return found;
        }
        let _adding = crate::sync::lock(&self.adding);
        if let Some(found) = self.map.load().get(key) {
            return found;
        }
        let (key, value) = make();
        let value: &'static V = Box::leak(Box::new(value));
        let mut map = HashMap::clone(&self.map.load());
        map.insert(key, value);
        self.map.store(Arc::new(map));
        value
    }
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
                exemplars: m.http.exemplars.series(self.method, self.route),
                native: m.http.native.series(&HttpSeries {
                    method: self.method,
                    route: self.route,
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
    }

    fn status(&self, status: u16) -> &'static StatusTelemetry {
        self.by_status.get(&status, || {
            let labels = [
                self.labels[0].clone(),
                self.labels[1].clone(),
                KeyValue::new("status", i64::from(status)),
            ];
            let handles = StatusTelemetry {
                requests: self.metrics.http.requests.bind(&labels),
                response_size: self.metrics.http.response_size.bind(&labels),
            };
            (status, handles)
        })
    }
}

/// One route's handles, per method (created on first use).
type PerMethod = [OnceLock<&'static RouteTelemetry>; HttpMethod::ALL.len()];

/// All routes seen so far.
pub struct RouteTable {
    metrics: Arc<Metrics>,
    /// Routes left out of the `http_*` series (empty when probes are recorded).
    unrecorded: BTreeSet<String>,
    routes: Table<Box<str>, PerMethod>,
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
            routes: Table::new(),
        }
    }

    /// The handles of `route` for `method`.
    pub fn get(&self, method: HttpMethod, route: &str) -> &'static RouteTelemetry {
        let methods = self.routes.get(route, || {
            (route.into(), std::array::from_fn(|_| OnceLock::new()))
        });
        methods[method.index()].get_or_init(|| Box::leak(Box::new(self.bind(method, route))))
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
        let route: &'static str = Box::leak(route.into());
        let method = method.as_str();
        let labels = [
            KeyValue::new("method", method),
            KeyValue::new("route", route),
        ];
        RouteTelemetry {
            span_name: Box::leak(span_name.into_boxed_str()),
            matched,
            recorded,
            bound: OnceLock::new(),
            method,
            by_status: Table::new(),
            metrics: self.metrics.clone(),
            labels,
            route,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BuildInfo;

    fn table() -> RouteTable {
        let metrics = Metrics::new(
            opentelemetry_sdk::Resource::builder().build(),
            &BuildInfo::current(),
            Instant::now(),
        )
        .expect("metrics set up");
        RouteTable::new(metrics, BTreeSet::from(["/healthz".to_owned()]))
    }

    #[test]
    fn each_route_method_and_status_has_one_set_of_handles() {
        let routes = table();
        let users = routes.get(HttpMethod::Get, "/api/users");
        assert!(std::ptr::eq(
            users,
            routes.get(HttpMethod::Get, "/api/users")
        ));
        let posted = routes.get(HttpMethod::Post, "/api/users");
        assert!(!std::ptr::eq(users, posted));
        assert_eq!(posted.span_name, "POST /api/users");
        assert!(std::ptr::eq(users.status(200), users.status(200)));
        assert!(!std::ptr::eq(users.status(200), users.status(404)));
        assert!(!routes.get(HttpMethod::Get, "/healthz").recorded);
        assert!(!routes.get(HttpMethod::Get, UNMATCHED).matched);
    }

    #[test]
    fn first_requests_on_many_threads_share_the_handles_of_their_route() {
        let routes = table();
        let found: Vec<(usize, usize)> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        let route = routes.get(HttpMethod::Get, "/api/users/{id}");
                        let status = route.status(200);
                        (
                            std::ptr::from_ref(route) as usize,
                            std::ptr::from_ref(status) as usize,
                        )
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("no panic"))
                .collect()
        });
        assert!(found.windows(2).all(|w| w[0] == w[1]), "{found:?}");
    }
}

//! The HTTP surface: which handler answers which path, and the layers around them.
//!
//! Routes are registered through `utoipa_axum`, so the OpenAPI document served
//! at `/openapi.json` is built from the same list the router is: a route cannot
//! exist without being documented.

pub(crate) mod admin;
pub(crate) mod backend;
pub(crate) mod data;
pub mod demo;
pub(crate) mod health;
pub(crate) mod info;
pub(crate) mod legacy;
pub(crate) mod metrics;
pub(crate) mod openapi;
pub(crate) mod page;
pub(crate) mod rendered;
pub(crate) mod users;

use std::collections::BTreeSet;
use std::time::Duration;

use std::convert::Infallible;

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::Route;
use tower::layer::util::Identity;
use tower::{Layer, Service, ServiceBuilder};
use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::ServeArgs;
use crate::error::ApiError;
use crate::middleware::conformance::ConformanceLayer;
use crate::middleware::drain;
use crate::middleware::fault::FaultLayer;
use crate::middleware::overload::ConcurrencyLimitLayer;
use crate::middleware::telemetry::HttpTelemetryLayer;
use crate::middleware::timeout::TimeoutLayer;
use crate::state::AppState;

/// How the HTTP layers behave: the part of [`ServeArgs`] the routers read.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest accepted request body; larger gets 413.
    pub max_body_bytes: usize,
    /// Longest a request may take; longer gets 503.
    pub request_timeout: Duration,
    /// API requests served at once; more get 503 at once.
    pub max_concurrency: usize,
    /// The admin routes are served by [`admin_router`] on their own listener,
    /// and [`router`] answers 404 for them.
    pub separate_admin: bool,
    /// Record probes and `/metrics` in the `http_*` series too.
    pub instrument_probes: bool,
    /// The per-request telemetry layer (span, metrics, access log). Off only for
    /// benchmarks that measure what it costs.
    pub telemetry: bool,
}

impl From<&ServeArgs> for HttpConfig {
    fn from(args: &ServeArgs) -> Self {
        Self {
            max_body_bytes: args.max_body_bytes,
            request_timeout: args.request_timeout,
            max_concurrency: args.max_concurrency,
            separate_admin: args.admin_addr.is_some(),
            instrument_probes: args.instrument_probes,
            telemetry: !args.disable_http_telemetry,
        }
    }
}

/// The workload: subject to fault injection.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::get, users::update, users::delete))
        .routes(routes!(demo::slow))
        .routes(routes!(demo::error))
        .routes(routes!(demo::delay))
        .routes(routes!(demo::status_get, demo::status_post))
        .routes(routes!(demo::item))
        .routes(routes!(demo::echo))
        .routes(routes!(backend::call))
        .routes(routes!(legacy::update))
        .routes(routes!(legacy::cpu))
        .routes(routes!(data::put, data::list))
        .routes(routes!(data::get, data::delete))
}

/// Operations: identity, this document, and the [`probe_routes`]. Never faulted.
fn ops_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(info::root))
        .routes(routes!(info::version))
        .routes(routes!(openapi::openapi_json))
        .merge(probe_routes())
}

/// Probes, the scrape and the page's counters (`/stats`): asked every few seconds
/// by machines or an open page, so left out of the `http_*` and
/// `app_requests_total` series unless `--instrument-probes` is set (they would
/// drown the workload's numbers, and the page would count its own polls).
fn probe_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(info::stats))
        .routes(routes!(health::healthz))
        .routes(routes!(health::health_live))
        .routes(routes!(health::readyz))
        .routes(routes!(health::health_ready))
        .routes(routes!(health::health))
        .routes(routes!(metrics::metrics))
}

/// The route templates of [`probe_routes`].
fn probe_paths() -> BTreeSet<String> {
    probe_routes()
        .into_openapi()
        .paths
        .paths
        .into_keys()
        .collect()
}

/// Routes that change this process: the readiness switch and the runtime
/// settings. On their own listener when `--admin-addr` is set, so that a
/// NetworkPolicy can keep them from everyone who may reach the API.
fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health::enable))
        .routes(routes!(health::disable))
        .routes(routes!(admin::get, admin::put))
}

/// Every route, with `api` (the workload, possibly layered), the ops routes and
/// the admin routes. The document always lists all of them.
fn assemble(api: OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(api)
        .merge(ops_routes())
        .merge(admin_routes())
}

/// The OpenAPI 3.1 document of every route, including the answers any request
/// may get from the layers (limits, timeouts, injected faults).
pub fn openapi() -> OpenApi {
    finish(assemble(api_routes()).into_openapi())
}

fn finish(mut doc: OpenApi) -> OpenApi {
    let api_paths = api_routes()
        .into_openapi()
        .paths
        .paths
        .into_keys()
        .collect();
    openapi::document_layer_responses(&mut doc, &api_paths);
    doc
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no route for this path".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// The application on the main listener: routes, error fallbacks and layers.
/// Includes the admin routes unless [`HttpConfig::separate_admin`] is set.
///
/// The API routes get the common layers plus load shedding and fault injection
/// in one `layer` call, the other routes the common layers alone: axum wraps each
/// route once per `layer` call (a boxed service cloned, a boxed future, per
/// request), so nesting the API's layers inside the common ones cost a level more.
pub fn router(state: AppState, config: &HttpConfig) -> Router {
    let telemetry = http_telemetry(&state, config);
    let (api, _) = api_routes().split_for_parts();
    // The limit is outside the faults: a request delayed by fault injection is in flight.
    let api_only = ServiceBuilder::new()
        .layer(ConcurrencyLimitLayer::new(config.max_concurrency))
        .layer(FaultLayer::new(state.settings.clone()))
        .into_inner();
    let api = layered(
        api.method_not_allowed_fallback(method_not_allowed),
        telemetry.clone(),
        &state,
        config,
        api_only,
    );
    let rest = if config.separate_admin {
        ops_routes()
    } else {
        ops_routes().merge(admin_routes())
    };
    let (rest, _) = rest.split_for_parts();
    let rest = rest
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    api.merge(layered(rest, telemetry, &state, config, Identity::new()))
        .with_state(state)
}

/// The admin routes alone, for the `--admin-addr` listener.
pub fn admin_router(state: AppState, config: &HttpConfig) -> Router {
    let (router, _) = admin_routes().split_for_parts();
    let router = router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    let telemetry = http_telemetry(&state, config);
    layered(router, telemetry, &state, config, Identity::new()).with_state(state)
}

/// The per-request telemetry of one listener (its routes share one route table),
/// unless switched off.
fn http_telemetry(state: &AppState, config: &HttpConfig) -> Option<HttpTelemetryLayer> {
    config.telemetry.then(|| {
        let unrecorded = if config.instrument_probes {
            BTreeSet::new()
        } else {
            probe_paths()
        };
        HttpTelemetryLayer::new(state.metrics.clone(), unrecorded)
    })
}

/// `router` with the layers every route has, outermost first (telemetry, drain,
/// conformance and body limit, timeout), then `inner`'s: one `layer` call.
fn layered<L>(
    router: Router<AppState>,
    telemetry: Option<HttpTelemetryLayer>,
    state: &AppState,
    config: &HttpConfig,
    inner: L,
) -> Router<AppState>
where
    L: Layer<Route> + Clone + Send + Sync + 'static,
    L::Service:
        Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    <L::Service as Service<Request>>::Future: Send + 'static,
{
    router.layer(
        ServiceBuilder::new()
            .option_layer(telemetry)
            .layer(drain::layer(state.readiness.clone()))
            .layer(ConformanceLayer::new(config.max_body_bytes))
            .layer(TimeoutLayer::new(config.request_timeout))
            .layer(inner),
    )
}

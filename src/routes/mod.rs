//! The HTTP surface: which handler answers which path, and the layers around them.
//!
//! Routes are registered through `utoipa_axum`, so the OpenAPI document served
//! at `/openapi.json` is built from the same list the router is: a route cannot
//! exist without being documented.

pub mod admin;
pub mod data;
pub mod demo;
pub mod health;
pub mod info;
pub mod legacy;
pub mod metrics;
pub mod openapi;
pub mod users;

use std::collections::BTreeSet;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::{Router, middleware};
use tower::ServiceBuilder;
use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::ServeArgs;
use crate::error::ApiError;
use crate::middleware::conformance::ConformanceLayer;
use crate::middleware::overload::{self, ConcurrencyLimit};
use crate::middleware::telemetry::{self, HttpTelemetry};
use crate::middleware::timeout;
use crate::middleware::{drain, fault};
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

/// Probes and the scrape: asked every few seconds by machines, so left out of the
/// `http_*` and `app_requests_total` series unless `--instrument-probes` is set
/// (they would drown the workload's numbers).
fn probe_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health::healthz))
        .routes(routes!(health::health_live))
        .routes(routes!(health::readyz))
        .routes(routes!(health::health_ready))
        .routes(routes!(health::health))
        .routes(routes!(metrics::metrics))
}

/// The route templates of [`probe_routes`].
pub fn probe_paths() -> BTreeSet<String> {
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
pub fn router(state: AppState, config: &HttpConfig) -> Router {
    let faults = middleware::from_fn_with_state(state.settings.clone(), fault::inject);
    // Outside the faults: a request delayed by fault injection is in flight.
    let shedding = middleware::from_fn_with_state(
        ConcurrencyLimit::new(config.max_concurrency),
        overload::shed,
    );
    // One `layer` call per stack: axum boxes (and clones, per request) each layer call.
    let api = api_routes().layer(ServiceBuilder::new().layer(shedding).layer(faults));
    let routes = OpenApiRouter::new().merge(api).merge(ops_routes());
    let routes = if config.separate_admin {
        routes
    } else {
        routes.merge(admin_routes())
    };
    let (router, _) = routes.split_for_parts();
    with_layers(router, state, config)
}

/// The admin routes alone, for the `--admin-addr` listener.
pub fn admin_router(state: AppState, config: &HttpConfig) -> Router {
    let (router, _) = admin_routes().split_for_parts();
    with_layers(router, state, config)
}

/// Fallbacks and the layers every listener has: telemetry, drain, timeout, body limit.
fn with_layers(router: Router<AppState>, state: AppState, config: &HttpConfig) -> Router {
    let telemetry = config.telemetry.then(|| {
        let unrecorded = if config.instrument_probes {
            BTreeSet::new()
        } else {
            probe_paths()
        };
        let telemetry = HttpTelemetry::new(state.metrics.clone(), unrecorded);
        middleware::from_fn_with_state(telemetry, telemetry::track)
    });
    // Outermost first; one `layer` call, so one boxed service per request.
    let layers = ServiceBuilder::new()
        .option_layer(telemetry)
        .layer(drain::layer(state.readiness.clone()))
        .layer(ConformanceLayer::new(config.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            config.request_timeout,
            timeout::enforce,
        ))
        .layer(DefaultBodyLimit::max(config.max_body_bytes));
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(layers)
        .with_state(state)
}

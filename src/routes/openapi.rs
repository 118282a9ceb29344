//! The OpenAPI document: its header, the answers every route may get from the
//! layers around it, and the `/openapi.json` handler.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder, Type};

use crate::error::ErrorBody;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Pulse",
        description = "An observable demo web service: users and key-value CRUD, \
                       demo failure endpoints, probes and Prometheus metrics."
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "info", description = "Who is answering"),
        (name = "health", description = "Liveness, readiness and detailed health"),
        (name = "telemetry", description = "Metrics and this document"),
        (name = "users", description = "Users CRUD"),
        (name = "data", description = "Key-value store"),
        (name = "demo", description = "Slow, failing, delayed and arbitrary-status endpoints"),
        (name = "legacy", description = "Gauges set by hand: active users and CPU usage"),
        (name = "admin", description = "Runtime settings of this process"),
    )
)]
pub(super) struct ApiDoc;

/// The answers a route may get besides its own, from the layers around it: the
/// request timeout and the concurrency limit (503), fault injection (500, API
/// routes only), and rejected parameters or bodies (400, 413, 415, 422).
/// Added where the route does not document the status itself.
pub(super) fn document_layer_responses(doc: &mut OpenApi, api_paths: &BTreeSet<String>) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let is_api = api_paths.contains(path);
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            document_operation(operation, is_api);
        }
    }
}

fn document_operation(operation: &mut Operation, is_api: bool) {
    let mut add = |status: &str, description: &str| {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| error_response(status, description));
    };
    if is_api {
        add(
            "503",
            "Over `--request-timeout`, or `--max-concurrency` requests already in flight; \
             retry after `Retry-After` seconds",
        );
        add("500", "Injected fault (fault injection is on)");
    } else {
        add(
            "503",
            "Over `--request-timeout`; retry after `Retry-After` seconds",
        );
    }
    let has_parameters = operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let body = operation.request_body.as_ref().and_then(|b| match b {
        RefOr::T(body) => Some(body),
        RefOr::Ref(_) => None,
    });
    let json_body = body.is_some_and(|b| b.content.contains_key("application/json"));
    if has_parameters || json_body {
        add("400", "A parameter or the JSON syntax is invalid");
    }
    if body.is_some() {
        add("413", "Body larger than `--max-body-bytes`");
    }
    if json_body {
        add("415", "Body is not `application/json`");
        add("422", "JSON of the wrong shape");
    }
}

fn error_response(status: &str, description: &str) -> RefOr<utoipa::openapi::Response> {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorBody")))
        .build();
    let mut response = ResponseBuilder::new()
        .description(description)
        .content("application/json", content);
    if status == "503" {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(
                    utoipa::openapi::ObjectBuilder::new().schema_type(Type::Integer),
                ))
                .description(Some("Seconds to wait before retrying"))
                .build(),
        );
    }
    RefOr::T(response.build())
}

/// The serialised document: fixed for the life of the process, so built once,
/// on the first request for it.
static DOCUMENT: OnceLock<Bytes> = OnceLock::new();

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "telemetry",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub(super) async fn openapi_json() -> impl IntoResponse {
    let doc = DOCUMENT.get_or_init(|| {
        // Built from typed schemas at compile time; serialising it cannot fail (a
        // test serialises the same document), and an empty 200 would hide it.
        let json = serde_json::to_vec(&super::openapi())
            .expect("the OpenAPI document is plain JSON values: it always serialises");
        Bytes::from(json)
    });
    ([(header::CONTENT_TYPE, "application/json")], doc.clone())
}

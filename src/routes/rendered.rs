//! Responses whose JSON body is rendered once and shared: the lists a store
//! hands out as a [`Snapshot`](crate::store::Snapshot).

use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A JSON response from bytes already rendered: the same status, headers and
/// body `axum::Json` would answer, without serialising per request.
#[derive(Debug, Clone)]
pub struct RenderedJson(pub Bytes);

impl IntoResponse for RenderedJson {
    fn into_response(self) -> Response {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(mime::APPLICATION_JSON.as_ref()),
            )],
            self.0,
        )
            .into_response()
    }
}

/// `value` as JSON bytes, as `axum::Json` would write them.
///
/// Only for the lists' types: their `Serialize` is derived over strings,
/// integers and `serde_json::Value`, which serde_json always writes (it fails
/// only on non-string map keys or a custom impl's error).
pub fn render<T: Serialize>(value: &T) -> Bytes {
    serde_json::to_vec(value)
        .expect("a list of users or items always serialises")
        .into()
}

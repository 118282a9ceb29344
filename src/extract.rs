//! Request extractors whose rejections are [`ApiError`]s, so a malformed request
//! is answered with the same JSON error body as any other client error.

use std::borrow::Cow;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON object body, deserialised into `T`; rejections are [`ApiError`]s.
///
/// Every JSON body Pulse takes is an object, and only an object is accepted:
/// serde's derived `Deserialize` of a struct also takes an array of its fields in
/// order (`["Ann","ann@example.com"]` for a user), which no document promises
/// and which would let a client change state with a body of the wrong shape.
/// Like axum's `Json`: 415 without a JSON content type, 400 for malformed JSON,
/// 413 past `--max-body-bytes`; then 422 for JSON of the wrong shape, an array
/// or any other non-object included.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let body = Bytes::from_request(req, state).await?;
        json_object(&body).map(Self)
    }
}

/// Whether the content type is JSON: `application/json` or `application/*+json`
/// (what axum's `Json` accepts).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|mime| {
            mime.type_() == "application"
                && (mime.subtype() == "json" || mime.suffix().is_some_and(|s| s == "json"))
        })
}

/// `body` as a `T`, provided it is a JSON object.
fn json_object<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // Parsed first, so that malformed JSON is a 400 whatever it starts with; a
    // struct takes nothing but an object or an array, so checking the first byte
    // of what parsed costs no second parse.
    let axum::Json(value) = axum::Json::<T>::from_bytes(body)?;
    let first = body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        return Err(ApiError::Unprocessable {
            message: "the body must be a JSON object".into(),
            field: None,
        });
    }
    Ok(value)
}

/// [`axum::extract::Path`] answering rejections with [`ApiError`].
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// [`axum::extract::Query`] answering rejections with [`ApiError`].
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// The raw body, as [`Bytes`], answering rejections (too large, a broken chunked
/// encoding) with [`ApiError`].
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(Bytes::from_request(req, state).await?))
    }
}

/// Input taken from a JSON body when there is one, else from the query string.
///
/// Users are created both with `curl -X POST "/api/users?name=John&email=..."` and
/// by API clients sending JSON; both must work. A non-empty body is read as a
/// [`Json`] object (so it must be JSON: 415 otherwise); an empty body means the
/// query string is the input.
#[derive(Debug)]
pub struct JsonOrQuery<T> {
    /// The input.
    pub value: T,
    /// Where it came from: says which status a missing field gets.
    pub source: Source,
}

/// Where [`JsonOrQuery`] found its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A JSON body.
    Json,
    /// The query string (the body was empty).
    Query,
}

impl Source {
    /// The error for input of the wrong shape the extractor could not see (a
    /// required field missing, nothing given where something must be): in a JSON
    /// body, JSON of the wrong shape (422), like serde's own shape errors; in a
    /// query string, an invalid parameter (400), like every query error.
    pub fn shape_error(
        self,
        field: Option<&'static str>,
        message: impl Into<Cow<'static, str>>,
    ) -> ApiError {
        let message = message.into();
        let field = field.map(Cow::Borrowed);
        match self {
            Self::Json => ApiError::Unprocessable { message, field },
            Self::Query => ApiError::Validation { message, field },
        }
    }
}

impl<S, T> FromRequest<S> for JsonOrQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let body = Bytes::from_request(Request::from_parts(parts.clone(), body), state).await?;
        if body.is_empty() {
            let axum::extract::Query(value) = axum::extract::Query::<T>::try_from_uri(&parts.uri)?;
            return Ok(Self {
                value,
                source: Source::Query,
            });
        }
        if !is_json(&parts.headers) {
            return Err(ApiError::UnsupportedMediaType);
        }
        Ok(Self {
            value: json_object(&body)?,
            source: Source::Json,
        })
    }
}

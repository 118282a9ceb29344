//! Request extractors whose rejections are [`ApiError`]s, so a malformed request
//! is answered with the same JSON error body as any other client error.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// [`axum::Json`] answering rejections with [`ApiError`].
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

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
/// by API clients sending JSON; both must work. A non-empty body is read by axum's
/// `Json` (so it must be JSON: 415 otherwise); an empty body means the query
/// string is the input.
#[derive(Debug)]
pub struct JsonOrQuery<T>(pub T);

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
            return Ok(Self(value));
        }
        let request = Request::from_parts(parts, Body::from(body));
        let axum::Json(value) = axum::Json::<T>::from_request(request, state).await?;
        Ok(Self(value))
    }
}

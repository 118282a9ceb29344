//! Request extractors whose rejections are [`ApiError`]s, so a malformed request
//! is answered with the same JSON error body as any other client error.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
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

/// Input taken from a JSON body when there is one, else from the query string.
///
/// The seeds create users with `curl -X POST "/api/users?name=John&email=..."`
/// while API clients send JSON; both must work. A non-empty body must be JSON
/// (415 otherwise); an empty body means the query string is the input.
#[derive(Debug)]
pub struct JsonOrQuery<T>(pub T);

impl<S, T> FromRequest<S> for JsonOrQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json_content_type);
        let uri = req.uri().clone();
        let body = Bytes::from_request(req, state).await?;
        if body.is_empty() {
            let axum::extract::Query(value) = axum::extract::Query::<T>::try_from_uri(&uri)?;
            return Ok(Self(value));
        }
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let axum::Json(value) = axum::Json::<T>::from_bytes(&body)?;
        Ok(Self(value))
    }
}

/// `application/json` or any `application/*+json`, parameters ignored.
pub fn is_json_content_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json"))
}

#[cfg(test)]
mod tests {
    use super::is_json_content_type;

    #[test]
    fn json_content_types() {
        assert!(is_json_content_type("application/json"));
        assert!(is_json_content_type("Application/JSON; charset=utf-8"));
        assert!(is_json_content_type("application/merge-patch+json"));
        assert!(!is_json_content_type("text/plain"));
        assert!(!is_json_content_type("application/jsonx"));
        assert!(!is_json_content_type("+json"));
        assert!(!is_json_content_type(""));
    }
}

//! `/data`: a key-value store of JSON values.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::{self, Path};
use crate::routes::rendered::{RenderedJson, render};
use crate::state::AppState;
use crate::store::{Item, Put};

/// Longest accepted key, in characters.
const MAX_KEY_CHARS: usize = 256;

/// An item as a client sends it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemInput {
    /// Unique key: 1 to 256 characters, no control characters.
    // Optional here and required by `put`, which can then name the missing field.
    #[serde(default, deserialize_with = "present")]
    #[schema(
        value_type = String,
        required = true,
        example = "test",
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub key: Option<String>,
    /// Any JSON value, `null` included; required.
    // `present` keeps `null` as a value (`Option` alone would read it as missing).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = serde_json::Value, required = true, example = "data")]
    pub value: Option<serde_json::Value>,
}

/// A field that may be absent (`None`) but, when present, is taken as it is.
fn present<'de, D, T>(value: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(value).map(Some)
}

/// All items.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemList<'a> {
    /// Items, ordered by key.
    #[schema(value_type = Vec<Item>)]
    pub items: &'a [Item],
    /// How many.
    pub count: usize,
}

fn validate_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.chars().count() > MAX_KEY_CHARS || key.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "key",
            "key must be 1 to 256 characters without control characters",
        ));
    }
    Ok(())
}

fn not_found(key: &str) -> ApiError {
    ApiError::NotFound(format!("no item with key {key:?}").into())
}

/// Store an item (201 when the key is new, 200 when its value was replaced).
#[utoipa::path(post, path = "/data", operation_id = "put_item", tag = "data",
    request_body = ItemInput,
    responses(
        (status = 201, description = "Created", body = Item),
        (status = 200, description = "Replaced", body = Item),
        (status = 400, description = "Invalid key or malformed JSON", body = crate::error::ErrorBody),
        (status = 413, description = "Body too large", body = crate::error::ErrorBody),
        (status = 415, description = "Body is not JSON", body = crate::error::ErrorBody),
        (status = 422, description = "JSON of the wrong shape", body = crate::error::ErrorBody),
        (status = 507, description = "The store is full (`--max-store-bytes`); nothing was written", body = crate::error::ErrorBody)))]
pub async fn put(
    State(state): State<AppState>,
    extract::Json(input): extract::Json<ItemInput>,
) -> Result<(StatusCode, Json<Item>), ApiError> {
    let key = input
        .key
        .ok_or_else(|| ApiError::unprocessable("key", "key is required"))?;
    let value = input
        .value
        .ok_or_else(|| ApiError::unprocessable("value", "value is required"))?;
    validate_key(&key)?;
    let item = Item { key, value };
    let status = match state.store.put_item(item.clone()).await? {
        Put::Created => StatusCode::CREATED,
        Put::Replaced => StatusCode::OK,
    };
    Ok((status, Json(item)))
}

/// List all items.
#[utoipa::path(get, path = "/data", operation_id = "list_items", tag = "data",
    responses((status = 200, description = "All items", body = ItemList)))]
pub async fn list(State(state): State<AppState>) -> Result<RenderedJson, ApiError> {
    let items = state.store.list_items().await?;
    // Rendered once per snapshot, as the users' list is.
    Ok(RenderedJson(items.body(|items| {
        render(&ItemList {
            items,
            count: items.len(),
        })
    })))
}

/// Get one item.
#[utoipa::path(get, path = "/data/{key}", operation_id = "get_item", tag = "data",
    params(("key" = String, Path, description = "Item key")),
    responses(
        (status = 200, description = "The item", body = Item),
        (status = 404, description = "No such key", body = crate::error::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<Item>, ApiError> {
    state
        .store
        .get_item(&key)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(&key))
}

/// Delete one item.
#[utoipa::path(delete, path = "/data/{key}", operation_id = "delete_item", tag = "data",
    params(("key" = String, Path, description = "Item key")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such key", body = crate::error::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !state.store.delete_item(&key).await? {
        return Err(not_found(&key));
    }
    Ok(StatusCode::NO_CONTENT)
}

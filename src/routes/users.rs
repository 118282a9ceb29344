//! `/api/users`: a users CRUD API. Input comes as JSON or as query params
//! (`curl -X POST '/api/users?name=John&email=john@example.com'`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};

use crate::error::ApiError;
use crate::extract::{JsonOrQuery, Path};
use crate::routes::rendered::{RenderedJson, render};
use crate::state::AppState;
use crate::store::{NewUser, User, UserChanges};

/// Longest accepted name, in characters.
const MAX_NAME_CHARS: usize = 100;
/// Longest accepted email (RFC 5321 path limit).
const MAX_EMAIL_CHARS: usize = 254;
/// The name rule as a pattern, for the OpenAPI document: no control characters,
/// and at least one character that is not white space. [`validate_name`] checks it.
const NAME_PATTERN: &str = crate::config::rules::NOT_BLANK_PATTERN;
/// The email rule as a pattern: one `@` with something on both sides, no white
/// space or control characters. [`validate_email`] checks it.
const EMAIL_PATTERN: &str = r"^[^@\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+@[^@\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$";

/// The schema of a user name, built from the constants above (utoipa's
/// attributes take only literals, and the create and update bodies share it).
pub struct UserName;

impl utoipa::PartialSchema for UserName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(format!(
                "Display name: 1 to {MAX_NAME_CHARS} characters, not blank, no control characters."
            )))
            .min_length(Some(1))
            .max_length(Some(MAX_NAME_CHARS))
            .pattern(Some(NAME_PATTERN))
            .examples(["John"])
            .into()
    }
}

impl ToSchema for UserName {}

/// The schema of an email address (see [`UserName`]).
pub struct Email;

impl utoipa::PartialSchema for Email {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(format!(
                "Email address: `local@domain`, at most {MAX_EMAIL_CHARS} characters, no spaces."
            )))
            .max_length(Some(MAX_EMAIL_CHARS))
            .pattern(Some(EMAIL_PATTERN))
            .examples(["john@example.com"])
            .into()
    }
}

impl ToSchema for Email {}

/// User fields to change: at least one. A field may be left out, not sent as `null`.
// Also read from the query string, and by `create`, which then checks that both
// are there.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UserInput {
    /// Display name.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = UserName, required = false)]
    pub name: Option<String>,
    /// Email address.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Email, required = false)]
    pub email: Option<String>,
}

/// A new user: both fields required.
// Documentation only: `create` reads a `UserInput`, so that the query form works
// too, and requires both fields itself.
// `deny_unknown_fields` is how utoipa learns `additionalProperties: false`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // read by utoipa only
pub struct NewUserInput {
    /// Display name.
    #[schema(value_type = UserName)]
    name: String,
    /// Email address.
    #[schema(value_type = Email)]
    email: String,
}

/// Deserialises a field that may be absent (`default`) but not `null`.
fn present<'de, D: serde::Deserializer<'de>>(value: D) -> Result<Option<String>, D::Error> {
    String::deserialize(value).map(Some)
}

/// The `{id}` path parameter. A named struct, so a bad id is reported with
/// `"field": "id"`.
#[derive(Debug, Deserialize)]
pub struct UserId {
    /// User id.
    pub id: u64,
}

/// All users.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserList<'a> {
    /// Users, ordered by id.
    #[schema(value_type = Vec<User>)]
    pub users: &'a [User],
    /// How many.
    pub count: usize,
}

/// The rules of [`UserName`]; the stored name is trimmed.
fn validate_name(name: String) -> Result<String, ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::invalid("name", "name must not be blank"));
    }
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name",
            format!("name must be at most {MAX_NAME_CHARS} printable characters"),
        ));
    }
    Ok(name.trim().to_owned())
}

/// The rules of [`Email`].
fn validate_email(email: String) -> Result<String, ApiError> {
    let well_formed = email.chars().count() <= MAX_EMAIL_CHARS
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        });
    if well_formed {
        Ok(email)
    } else {
        Err(ApiError::invalid(
            "email",
            "email must look like name@example.com",
        ))
    }
}

fn not_found(id: u64) -> ApiError {
    ApiError::NotFound(format!("user {id} not found").into())
}

/// List users.
#[utoipa::path(get, path = "/api/users", operation_id = "list_users", tag = "users",
    responses((status = 200, description = "All users", body = UserList)))]
pub async fn list(State(state): State<AppState>) -> Result<RenderedJson, ApiError> {
    let users = state.store.list_users().await?;
    // Rendered once per snapshot: every read until the next write shares the bytes.
    Ok(RenderedJson(users.body(|users| {
        render(&UserList {
            users,
            count: users.len(),
        })
    })))
}

/// Create a user from a JSON body. The query form, `?name=...&email=...` with
/// an empty body, is accepted too.
#[utoipa::path(post, path = "/api/users", operation_id = "create_user", tag = "users",
    request_body(content = NewUserInput),
    responses(
        (status = 201, description = "Created", body = User),
        (status = 400, description = "Malformed JSON, an invalid field, or a missing query parameter", body = crate::error::ErrorBody),
        (status = 415, description = "Body is not JSON", body = crate::error::ErrorBody),
        (status = 422, description = "JSON of the wrong shape: not an object, a field missing, `null`, of the wrong type or unknown", body = crate::error::ErrorBody),
        (status = 507, description = "The store is full (`--max-store-bytes`); nothing was written", body = crate::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    JsonOrQuery {
        value: input,
        source,
    }: JsonOrQuery<UserInput>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let name = validate_name(
        input
            .name
            .ok_or_else(|| source.shape_error(Some("name"), "name is required"))?,
    )?;
    let email = validate_email(
        input
            .email
            .ok_or_else(|| source.shape_error(Some("email"), "email is required"))?,
    )?;
    let user = state.store.create_user(NewUser { name, email }).await?;
    tracing::info!(user.id = user.id, "user created");
    Ok((StatusCode::CREATED, Json(user)))
}

/// Get one user.
#[utoipa::path(get, path = "/api/users/{id}", operation_id = "get_user", tag = "users",
    params(("id" = u64, Path, description = "User id")),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 400, description = "The id is not a positive integer", body = crate::error::ErrorBody),
        (status = 404, description = "No such user", body = crate::error::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(UserId { id }): Path<UserId>,
) -> Result<Json<User>, ApiError> {
    state
        .store
        .get_user(id)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(id))
}

/// Update some fields of a user from a JSON body (or, with an empty body, the
/// `name` and `email` query parameters).
#[utoipa::path(put, path = "/api/users/{id}", operation_id = "update_user", tag = "users",
    params(("id" = u64, Path, description = "User id")),
    request_body(content = UserInput),
    responses(
        (status = 200, description = "The updated user", body = User),
        (status = 400, description = "Invalid id, malformed JSON, an invalid field, or no query parameter to change", body = crate::error::ErrorBody),
        (status = 404, description = "No such user", body = crate::error::ErrorBody),
        (status = 415, description = "Body is not JSON", body = crate::error::ErrorBody),
        (status = 422, description = "JSON of the wrong shape: not an object, no field, a field `null`, of the wrong type or unknown", body = crate::error::ErrorBody),
        (status = 507, description = "The store is full (`--max-store-bytes`); nothing was written", body = crate::error::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    Path(UserId { id }): Path<UserId>,
    JsonOrQuery {
        value: input,
        source,
    }: JsonOrQuery<UserInput>,
) -> Result<Json<User>, ApiError> {
    if input.name.is_none() && input.email.is_none() {
        return Err(source.shape_error(None, "nothing to update: give name and/or email"));
    }
    // Validate everything before touching the store: a bad field changes nothing.
    let changes = UserChanges {
        name: input.name.map(validate_name).transpose()?,
        email: input.email.map(validate_email).transpose()?,
    };
    state
        .store
        .update_user(id, changes)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(id))
}

/// Delete a user.
#[utoipa::path(delete, path = "/api/users/{id}", operation_id = "delete_user", tag = "users",
    params(("id" = u64, Path, description = "User id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The id is not a positive integer", body = crate::error::ErrorBody),
        (status = 404, description = "No such user", body = crate::error::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Path(UserId { id }): Path<UserId>,
) -> Result<StatusCode, ApiError> {
    if !state.store.delete_user(id).await? {
        return Err(not_found(id));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(validate_name("  John ".into()).unwrap(), "John");
        assert!(validate_name(format!(" {} ", "x".repeat(100))).is_err());
        assert!(validate_name("   ".into()).is_err());
        assert!(validate_name("x".repeat(101)).is_err());
        assert!(validate_name("a\u{0}b".into()).is_err());
    }

    #[test]
    fn emails_need_one_at_with_both_sides() {
        assert!(validate_email("john@example.com".into()).is_ok());
        for bad in [
            "john",
            "@example.com",
            "john@",
            "a@b@c",
            "jo hn@example.com",
            " john@example.com",
        ] {
            assert!(validate_email(bad.into()).is_err(), "{bad}");
        }
    }
}

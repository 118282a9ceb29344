//! Where users and key-value items live.
//!
//! Handlers see only the [`Store`] trait, so a persistent backend can replace the
//! in-memory one without touching them. Validation happens before the store is
//! called: a store only ever sees valid input.

mod cache;
mod memory;
mod postgres;

pub use cache::{CachedStore, RedisUrlError};
pub use memory::MemoryStore;
pub use postgres::{DatabaseUrlError, PostgresStore};

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use serde::{Deserialize, Serialize};

use crate::readiness::NotReady;
use utoipa::ToSchema;

/// A user of the demo CRUD API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    /// Assigned by the store, starting at 1.
    #[schema(example = 1)]
    pub id: u64,
    /// Display name.
    #[schema(example = "John")]
    pub name: String,
    /// Contact address.
    #[schema(example = "john@example.com")]
    pub email: String,
}

/// The fields of a user a client supplies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Display name, already validated.
    pub name: String,
    /// Contact address, already validated.
    pub email: String,
}

/// A partial update: `None` leaves the field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserChanges {
    /// New name, if any.
    pub name: Option<String>,
    /// New email, if any.
    pub email: Option<String>,
}

/// One key-value item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Item {
    /// Unique key.
    #[schema(example = "test")]
    pub key: String,
    /// Any JSON value.
    #[schema(example = "data")]
    pub value: serde_json::Value,
}

/// Whether a `put` created a new item or replaced an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// The key was new.
    Created,
    /// The key existed and its value was replaced.
    Replaced,
}

/// Why the store refused or failed an operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The write would take the store over its size limit; nothing was changed.
    #[error("the store is full ({limit} bytes)")]
    Full {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The database did not answer in time or failed. A write that got this was not
    /// acknowledged; it usually changed nothing (its transaction rolled back), unless
    /// the database was lost during the commit itself.
    #[error("the database is unavailable")]
    Unavailable,
    /// A stored record cannot be read back (a row written outside Pulse): the
    /// request fails with 500, the row is named in the log.
    #[error("a stored record is corrupt: {0}")]
    Corrupt(String),
}

/// What one entry costs besides its text: map node, id, lengths. An estimate;
/// it makes many tiny entries count too. Both stores count the same.
const ENTRY_OVERHEAD: usize = 64;

/// The size `--max-store-bytes` counts for a user.
fn user_size(name: &str, email: &str) -> usize {
    ENTRY_OVERHEAD + name.len() + email.len()
}

/// The size `--max-store-bytes` counts for an item.
fn item_size(key: &str, value: &serde_json::Value) -> usize {
    item_text_size(key, &value.to_string())
}

/// The size of an item whose value is serialised as `json`: the JSON text is a fair
/// measure of what the parsed value holds.
fn item_text_size(key: &str, json: &str) -> usize {
    ENTRY_OVERHEAD + key.len() + json.len()
}

/// A list as a read hands it out: the records and, rendered on the first
/// request that wants it, the response body made from them.
///
/// The in-memory store keeps one snapshot per list and hands the same one to
/// every read until a write replaces it, so a read copies no record and
/// serialises nothing: `GET /api/users` at 20 users spent about 17.6k
/// instructions copying the records and 21.6k serialising them, per request,
/// before (`make profile`), 40 % of the request. The body belongs to the
/// snapshot, so it can never outlive the records it was made from: a write that
/// drops the snapshot drops its body with it. (PostgreSQL makes a fresh snapshot
/// per read, so there the body is rendered once per request, as before.)
///
/// The store owns when a body is made, the route owns what it is (the wire
/// shape, through [`Snapshot::body`]'s `render`).
#[derive(Debug)]
pub struct Snapshot<T> {
    records: Box<[T]>,
    body: OnceLock<Bytes>,
}

impl<T> Snapshot<T> {
    /// A shared snapshot of `records`, its body not rendered yet.
    pub fn shared(records: impl Into<Box<[T]>>) -> Arc<Self> {
        Arc::new(Self {
            records: records.into(),
            body: OnceLock::new(),
        })
    }

    /// The response body: `render` of the records on the first call, the same
    /// bytes (a reference count) on every later one. `render` must depend on the
    /// records alone.
    pub fn body(&self, render: impl FnOnce(&[T]) -> Bytes) -> Bytes {
        self.body.get_or_init(|| render(&self.records)).clone()
    }
}

impl<T> std::ops::Deref for Snapshot<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &self.records
    }
}

/// All users, ordered by id, shared (see [`Snapshot`]).
pub type UserSnapshot = Arc<Snapshot<User>>;

/// All items, ordered by key, shared the same way as [`UserSnapshot`].
pub type ItemSnapshot = Arc<Snapshot<Item>>;

/// Storage for users and key-value items.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// All users, ordered by id.
    async fn list_users(&self) -> Result<UserSnapshot, StoreError>;
    /// One user.
    async fn get_user(&self, id: u64) -> Result<Option<User>, StoreError>;
    /// Stores a new user and returns it with its id.
    async fn create_user(&self, user: NewUser) -> Result<User, StoreError>;
    /// Applies `changes`; `None` when there is no such user.
    async fn update_user(&self, id: u64, changes: UserChanges) -> Result<Option<User>, StoreError>;
    /// Removes a user; `false` when there was none.
    async fn delete_user(&self, id: u64) -> Result<bool, StoreError>;

    /// All items, ordered by key.
    async fn list_items(&self) -> Result<ItemSnapshot, StoreError>;
    /// One item.
    async fn get_item(&self, key: &str) -> Result<Option<Item>, StoreError>;
    /// Creates or replaces an item.
    async fn put_item(&self, item: Item) -> Result<Put, StoreError>;
    /// Removes an item; `false` when there was none.
    async fn delete_item(&self, key: &str) -> Result<bool, StoreError>;

    /// How many users and items are stored now: cheap and synchronous, because
    /// `/metrics` reads it on every scrape (`pulse_users`, `pulse_data_items`).
    fn counts(&self) -> Counts;

    /// Why the store cannot serve now (`/readyz` says it), or `None` when it can.
    fn unavailable(&self) -> Option<NotReady> {
        None
    }
}

/// What a store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Users stored.
    pub users: usize,
    /// Key-value items stored.
    pub items: usize,
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// The body is rendered on the first read that asks and shared (the same
    /// bytes, not a copy) by every later one: what makes a list read cost no
    /// serialisation.
    #[test]
    fn a_snapshot_renders_its_body_once() {
        let snapshot = Snapshot::shared(vec![1, 2, 3]);
        let renders = AtomicUsize::new(0);
        let render = |records: &[i32]| {
            renders.fetch_add(1, Ordering::Relaxed);
            Bytes::from(format!("{records:?}"))
        };
        let first = snapshot.body(render);
        let again = snapshot.body(render);
        assert_eq!(first, "[1, 2, 3]");
        assert_eq!(renders.load(Ordering::Relaxed), 1, "rendered twice");
        assert_eq!(first.as_ptr(), again.as_ptr(), "the body was copied");
        assert_eq!(snapshot[..], [1, 2, 3]);
    }
}

//! The PostgreSQL [`Store`]: users and items shared by every replica, kept across
//! restarts.
//!
//! sqlx (its PostgreSQL driver and pool): async, well kept, with a migrator that
//! embeds the SQL in the binary and takes an advisory lock, so replicas starting
//! together apply each migration once.
//!
//! Failure behaviour, the part users remember:
//! - The pool connects lazily: Pulse starts without the database and stays not
//!   ready (`database unavailable`) while [`PostgresStore::supervise`] retries the
//!   migrations with backoff.
//! - Every operation is bounded by the database timeout (acquiring a connection
//!   and the queries together): past it, or on any database error, it fails with
//!   [`StoreError::Unavailable`], which the API answers 503 with `Retry-After`.
//!   Writes are transactions: a write is acknowledged only after its commit, so an
//!   acknowledged write is never lost. A write answered 503 was not acknowledged:
//!   usually nothing changed (its transaction rolled back), but a database lost
//!   during the commit itself may have applied it.
//! - The supervisor checks the database on a connection of its own; readiness
//!   follows its answers (and a request's lost connection), and the store recovers
//!   by itself when the database is back.

mod operation;
mod rows;
mod slots;
mod supervisor;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::Acquire as _;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::readiness::NotReady;
use crate::telemetry::Metrics;
use crate::telemetry::db::DbTelemetry;

use self::operation::{
    Query, lock_key, pool_gauges, request, row_id, to_i64, to_usize, unavailable,
};
use self::rows::{Bytes, CorruptRow, ItemRow, UserRow, UserSize};
use super::{
    Counts, Item, ItemSnapshot, NewUser, Put, Snapshot, Store, StoreError, User, UserChanges,
    UserSnapshot, item_text_size, user_size,
};

/// Why the database URL cannot be used: the driver's reason.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DatabaseUrlError(#[from] sqlx::Error);

/// How one operation (a statement or a transaction) can end badly; [`PostgresStore::bounded`]
/// turns it into the [`StoreError`] the API answers.
#[derive(Debug, thiserror::Error)]
enum TxError {
    /// The database failed or is gone.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The write would take the store over `--max-store-bytes`; rolled back.
    #[error("the store is full")]
    Full,
    /// A stored row is not a valid record.
    #[error(transparent)]
    Corrupt(#[from] CorruptRow),
}

/// Users and items in PostgreSQL.
#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
    timeout: Duration,
    /// `--max-store-bytes`; 0: not counted (slots.rs).
    max_bytes: usize,
    /// Whether the migrations ran and the last check (or operation) succeeded
    /// (shared with the `pulse_database_available` gauge).
    available: Arc<AtomicBool>,
    /// The counts `/metrics` shows, refreshed by the supervisor (a scrape must not
    /// wait for the database).
    users: AtomicUsize,
    items: AtomicUsize,
    /// Operations waiting for a free connection.
    pending: Arc<AtomicI64>,
    telemetry: DbTelemetry,
    /// How the supervisor opens its own connection (outside the pool, so a pool
    /// saturated by requests cannot make a healthy database look lost).
    options: PgConnectOptions,
}

impl PostgresStore {
    /// A store on `url` with at most `pool_size` connections, each operation
    /// bounded by `timeout`, holding at most about `max_bytes` (0: no limit and no
    /// size accounting, for a database with a quota of its own). Connects nothing
    /// yet: see [`PostgresStore::supervise`].
    pub fn new(
        url: &str,
        pool_size: u32,
        timeout: Duration,
        max_bytes: usize,
        metrics: &Metrics,
    ) -> Result<Self, DatabaseUrlError> {
        let options: PgConnectOptions = url.parse()?;
        let server = (options.get_host().to_owned(), options.get_port());
        let pool = PgPoolOptions::new()
            .max_connections(pool_size)
            .acquire_timeout(timeout)
            .connect_lazy_with(options.clone());
        let pending = Arc::new(AtomicI64::new(0));
        // The store's gauges, registered here and nowhere else.
        metrics.observe_db_pool(pool_gauges(pool.clone(), pool_size, pending.clone()));
        let available = Arc::new(AtomicBool::new(false));
        let watched = available.clone();
        metrics.observe_database_available(move || watched.load(Ordering::Acquire));
        Ok(Self {
            pool,
            timeout,
            max_bytes,
            available,
            users: AtomicUsize::new(0),
            items: AtomicUsize::new(0),
            pending,
            telemetry: DbTelemetry::new(metrics, server),
            options,
        })
    }
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn list_users(&self) -> Result<UserSnapshot, StoreError> {
        self.bounded(request("SELECT", "pulse_users"), async {
            let rows: Vec<UserRow> =
                sqlx::query_as("SELECT id, name, email FROM pulse_users ORDER BY id")
                    .fetch_all(&mut *self.acquire().await?)
                    .await?;
            Ok(Snapshot::shared(rows::all::<_, User>(rows)?))
        })
        .await
    }

    async fn get_user(&self, id: u64) -> Result<Option<User>, StoreError> {
        let Some(id) = row_id(id) else {
            return Ok(None);
        };
        self.bounded(request("SELECT", "pulse_users"), async {
            let row: Option<UserRow> =
                sqlx::query_as("SELECT id, name, email FROM pulse_users WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *self.acquire().await?)
                    .await?;
            Ok(row.map(User::try_from).transpose()?)
        })
        .await
    }

    async fn create_user(&self, new: NewUser) -> Result<User, StoreError> {
        let size = to_i64(user_size(&new.name, &new.email));
        let created = self
            .bounded(request("INSERT", "pulse_users"), async {
                let row = self.insert_user(&new.name, &new.email, size).await?;
                Ok(User::try_from(row)?)
            })
            .await?;
        // This replica's count moves at once; the supervisor's refresh brings in the
        // other replicas' writes.
        self.users.fetch_add(1, Ordering::Relaxed);
        Ok(created)
    }

    async fn update_user(&self, id: u64, changes: UserChanges) -> Result<Option<User>, StoreError> {
        let Some(id) = row_id(id) else {
            return Ok(None);
        };
        self.bounded(request("UPDATE", "pulse_users"), async {
            let mut conn = self.acquire().await?;
            let mut tx = conn.begin().await?;
            let current: Option<UserSize> = sqlx::query_as(
                "SELECT name, email, bytes FROM pulse_users WHERE id = $1 FOR UPDATE",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(current) = current else {
                return Ok(None);
            };
            let name = changes.name.clone().unwrap_or(current.name);
            let email = changes.email.clone().unwrap_or(current.email);
            let size = to_i64(user_size(&name, &email));
            self.reserve(&mut tx, size - current.bytes).await?;
            let row: UserRow = sqlx::query_as(
                "UPDATE pulse_users SET name = $2, email = $3, bytes = $4 WHERE id = $1 \
                 RETURNING id, name, email",
            )
            .bind(id)
            .bind(&name)
            .bind(&email)
            .bind(size)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Some(User::try_from(row)?))
        })
        .await
    }

    async fn delete_user(&self, id: u64) -> Result<bool, StoreError> {
        let Some(id) = row_id(id) else {
            return Ok(false);
        };
        self.delete(
            "pulse_users",
            "DELETE FROM pulse_users WHERE id = $1 RETURNING bytes",
            id,
            None,
            &self.users,
        )
        .await
    }

    async fn list_items(&self) -> Result<ItemSnapshot, StoreError> {
        self.bounded(request("SELECT", "pulse_items"), async {
            let rows: Vec<ItemRow> =
                sqlx::query_as("SELECT key, value FROM pulse_items ORDER BY key COLLATE \"C\"")
                    .fetch_all(&mut *self.acquire().await?)
                    .await?;
            Ok(Snapshot::shared(rows::all::<_, Item>(rows)?))
        })
        .await
    }

    async fn get_item(&self, key: &str) -> Result<Option<Item>, StoreError> {
        self.bounded(request("SELECT", "pulse_items"), async {
            let row: Option<ItemRow> =
                sqlx::query_as("SELECT key, value FROM pulse_items WHERE key = $1")
                    .bind(key)
                    .fetch_optional(&mut *self.acquire().await?)
                    .await?;
            Ok(row.map(Item::try_from).transpose()?)
        })
        .await
    }

    async fn put_item(&self, new: Item) -> Result<Put, StoreError> {
        // Serialised once: the text is what is stored and what the size counts.
        let text = new.value.to_string();
        let size = to_i64(item_text_size(&new.key, &text));
        let put = self
            .bounded(request("INSERT", "pulse_items"), async {
                let mut conn = self.acquire().await?;
                let mut tx = conn.begin().await?;
                // Two writers of one new key must not both count it as new.
                lock_key(&mut tx, &new.key).await?;
                let old: Option<Bytes> =
                    sqlx::query_as("SELECT bytes FROM pulse_items WHERE key = $1")
                        .bind(&new.key)
                        .fetch_optional(&mut *tx)
                        .await?;
                let delta = size - old.as_ref().map_or(0, |old| old.bytes);
                self.reserve(&mut tx, delta).await?;
                sqlx::query(
                    "INSERT INTO pulse_items (key, value, bytes) VALUES ($1, $2, $3) \
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, bytes = EXCLUDED.bytes",
                )
                .bind(&new.key)
                .bind(&text)
                .bind(size)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(if old.is_some() {
                    Put::Replaced
                } else {
                    Put::Created
                })
            })
            .await?;
        if put == Put::Created {
            self.items.fetch_add(1, Ordering::Relaxed);
        }
        Ok(put)
    }

    async fn delete_item(&self, key: &str) -> Result<bool, StoreError> {
        self.delete(
            "pulse_items",
            "DELETE FROM pulse_items WHERE key = $1 RETURNING bytes",
            key,
            Some(key),
            &self.items,
        )
        .await
    }

    fn counts(&self) -> Counts {
        Counts {
            users: self.users.load(Ordering::Relaxed),
            items: self.items.load(Ordering::Relaxed),
        }
    }

    fn unavailable(&self) -> Option<NotReady> {
        (!self.available.load(Ordering::Acquire)).then_some(NotReady::DatabaseUnavailable)
    }
}

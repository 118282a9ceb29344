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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Acquire as _, Connection as _, PgConnection, Postgres, Transaction};

use crate::telemetry::Metrics;
use crate::telemetry::db::{DbTelemetry, PoolState};

use super::{
    Counts, Item, NewUser, Put, Store, StoreError, User, UserChanges, item_text_size, user_size,
};

/// The longest a migration run may take (waiting for another replica's included).
const MIGRATE_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the supervisor checks the database while it answers.
const CHECK_EVERY: Duration = Duration::from_secs(2);
/// The first retry delay when it does not; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest delay between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Why the database URL cannot be used: the driver's reason.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DatabaseUrlError(pub String);

/// Users and items in PostgreSQL.
#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
    timeout: Duration,
    max_bytes: usize,
    /// Whether the migrations ran and the last check (or operation) succeeded.
    available: AtomicBool,
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
    /// bounded by `timeout`, holding at most about `max_bytes`. Connects nothing
    /// yet: see [`PostgresStore::supervise`].
    pub fn new(
        url: &str,
        pool_size: u32,
        timeout: Duration,
        max_bytes: usize,
        metrics: &Metrics,
    ) -> Result<Self, DatabaseUrlError> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e: sqlx::Error| DatabaseUrlError(e.to_string()))?;
        let server = (options.get_host().to_owned(), options.get_port());
        let pool = PgPoolOptions::new()
            .max_connections(pool_size)
            .acquire_timeout(timeout)
            .connect_lazy_with(options.clone());
        let pending = Arc::new(AtomicI64::new(0));
        metrics.observe_db_pool(pool_gauges(pool.clone(), pool_size, pending.clone()));
        Ok(Self {
            pool,
            timeout,
            max_bytes,
            available: AtomicBool::new(false),
            users: AtomicUsize::new(0),
            items: AtomicUsize::new(0),
            pending,
            telemetry: DbTelemetry::new(metrics, server),
            options,
        })
    }

    /// Applies the embedded migrations (safe when several replicas start at once:
    /// the migrator holds an advisory lock while it works), on a connection of their
    /// own that is closed afterwards, whatever happened, so a failed run cannot leave
    /// that lock held. Migrations this binary does not know (a newer release's, after
    /// a rollback) are left alone.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let run = async {
            let mut conn = PgConnection::connect_with(&self.options).await?;
            let mut migrator = sqlx::migrate!("src/store/migrations");
            migrator.set_ignore_missing(true);
            // `run_direct`, sqlx's own way around `run`'s "Acquire is not general
            // enough" error in a spawned task (what `run` calls after acquiring).
            let result = migrator
                .run_direct(None, &mut conn, false)
                .await
                .map_err(sqlx::Error::from);
            let _ = conn.close().await;
            result
        };
        match tokio::time::timeout(MIGRATE_TIMEOUT, run).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(unavailable("migrate", err)),
            Err(_) => Err(unavailable(
                "migrate",
                "no answer within the migration timeout",
            )),
        }
    }

    /// Runs for the life of the process: migrations until they succeed, then a
    /// check every few seconds on a connection of its own, with backoff while the
    /// database does not answer. Readiness (`database unavailable`) follows what it
    /// finds. After an outage the migrations run again: a database recreated empty
    /// gets its tables back.
    pub async fn supervise(self: Arc<Self>) {
        let mut migrated = false;
        let mut check: Option<PgConnection> = None;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let result = async {
                if !migrated {
                    self.migrate().await?;
                    migrated = true;
                    tracing::info!("database migrated");
                }
                if check.is_none() {
                    let connect = PgConnection::connect_with(&self.options);
                    match tokio::time::timeout(self.timeout, connect).await {
                        Ok(Ok(conn)) => check = Some(conn),
                        Ok(Err(err)) => return Err(unavailable("connect", err)),
                        Err(_) => return Err(unavailable("connect", "no answer")),
                    }
                }
                match check.as_mut() {
                    Some(conn) => self.refresh_counts(conn).await,
                    None => Err(StoreError::Unavailable),
                }
            }
            .await;
            let was = self.available.swap(result.is_ok(), Ordering::AcqRel);
            match result {
                Ok(()) => {
                    if !was {
                        tracing::info!("database available");
                    }
                    backoff = FIRST_BACKOFF;
                    tokio::time::sleep(CHECK_EVERY).await;
                }
                Err(err) => {
                    // Reconnect and re-migrate when it answers again.
                    check = None;
                    migrated = false;
                    if was {
                        tracing::warn!(error = %err, retry_in = ?backoff, "database unavailable");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn refresh_counts(&self, conn: &mut PgConnection) -> Result<(), StoreError> {
        let (users, items): (i64, i64) = self
            .bounded(
                Query {
                    operation: "SELECT",
                    collection: "pulse_store",
                    traced: false,
                },
                async {
                    sqlx::query_as(
                    "SELECT (SELECT count(*) FROM pulse_users), (SELECT count(*) FROM pulse_items)",
                )
                .fetch_one(&mut *conn)
                .await
                },
            )
            .await?;
        self.users.store(to_usize(users), Ordering::Relaxed);
        self.items.store(to_usize(items), Ordering::Relaxed);
        Ok(())
    }

    /// Runs `operation` within the timeout. A lost connection marks the store
    /// unavailable until the supervisor's next good check; other failures fail only
    /// this operation.
    ///
    /// A request's operation is a CLIENT span (child of the request's) and one
    /// `db_client_operation_duration_seconds` observation; the supervisor's checks
    /// are neither, so they do not drown the request path's in noise.
    async fn bounded<T>(
        &self,
        query: Query,
        operation: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        let traced = query
            .traced
            .then(|| self.telemetry.start(query.operation, query.collection));
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(self.timeout, operation).await;
        let error = match &outcome {
            Ok(Ok(_)) => None,
            Ok(Err(err)) => Some(error_type(err)),
            Err(_) => Some("timeout"),
        };
        if let Some(span) = traced {
            self.telemetry.end(
                span,
                query.operation,
                query.collection,
                started.elapsed(),
                error,
            );
        }
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                // A lost connection says the database may be gone: out of rotation now,
                // back when the supervisor's check succeeds. A full pool, a slow query
                // or a deadlock is this request's trouble, not the pod's.
                if matches!(
                    err,
                    sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolClosed
                ) {
                    self.available.store(false, Ordering::Release);
                }
                Err(unavailable(query.operation, err))
            }
            Err(_) => Err(unavailable(
                query.operation,
                format!("no answer within {:?}", self.timeout),
            )),
        }
    }

    /// A connection from the pool, counted as waiting (`db_client_connection_pending_requests`)
    /// until it is handed over.
    async fn acquire(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        self.pending.fetch_add(1, Ordering::Relaxed);
        let _waited = Decrement(&self.pending);
        self.pool.acquire().await
    }

    /// Adds `delta` bytes to the store's total within `tx`, unless that takes it
    /// over the limit (then nothing is changed and the write is refused).
    /// Freeing space always succeeds, even over a limit lowered since the bytes
    /// were written.
    async fn reserve(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        delta: i64,
    ) -> Result<bool, sqlx::Error> {
        let row: Option<(i64,)> = sqlx::query_as(
            "UPDATE pulse_store SET bytes = bytes + $1 \
             WHERE id = 1 AND ($1 <= 0 OR bytes + $1 <= $2) RETURNING bytes",
        )
        .bind(delta)
        .bind(to_i64(self.max_bytes))
        .fetch_optional(&mut **tx)
        .await?;
        Ok(row.is_some())
    }

    /// Deletes one row of `collection` (`sql` returns its bytes, bound to `key`),
    /// frees its bytes, and counts it out of `count`; `false` when there was none.
    /// `lock` (an item's key) takes the key's advisory lock first, as `put_item`
    /// does, so a put and a delete of one key run one after the other: otherwise
    /// they could deadlock on the item row and the size row, or miscount the size.
    async fn delete<'k, K>(
        &self,
        collection: &'static str,
        sql: &'static str,
        key: K,
        lock: Option<&'k str>,
        count: &AtomicUsize,
    ) -> Result<bool, StoreError>
    where
        K: sqlx::Encode<'k, Postgres> + sqlx::Type<Postgres> + Send + 'k,
    {
        let deleted = self
            .bounded(request("DELETE", collection), async {
                let mut conn = self.acquire().await?;
                let mut tx = conn.begin().await?;
                if let Some(lock) = lock {
                    lock_key(&mut tx, lock).await?;
                }
                let deleted: Option<(i64,)> = sqlx::query_as(sql)
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some((bytes,)) = deleted else {
                    return Ok(false);
                };
                self.reserve(&mut tx, -bytes).await?;
                tx.commit().await?;
                Ok(true)
            })
            .await?;
        if deleted {
            decrement(count);
        }
        Ok(deleted)
    }

    fn full(&self) -> StoreError {
        StoreError::Full {
            limit: self.max_bytes,
        }
    }
}

/// Which statement an operation is (its main one), as the database conventions
/// name it, and whether it is a request's (traced and measured).
#[derive(Debug, Clone, Copy)]
struct Query {
    operation: &'static str,
    collection: &'static str,
    traced: bool,
}

const fn request(operation: &'static str, collection: &'static str) -> Query {
    Query {
        operation,
        collection,
        traced: true,
    }
}

/// `error.type` of a failed operation: short, bounded names.
fn error_type(err: &sqlx::Error) -> &'static str {
    match err {
        sqlx::Error::PoolTimedOut => "pool_timeout",
        sqlx::Error::Io(_) | sqlx::Error::PoolClosed => "connection",
        sqlx::Error::Database(_) => "database",
        _ => "other",
    }
}

/// Decrements its counter when dropped (a wait that ended, however it ended).
struct Decrement<'a>(&'a AtomicI64);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a failed database operation becomes: logged with its cause, answered 503.
fn unavailable(what: &'static str, err: impl std::fmt::Display) -> StoreError {
    tracing::warn!(operation = what, error = %err, "database operation failed");
    StoreError::Unavailable
}

/// One less, never below zero (a refresh may have counted the row away already).
fn decrement(count: &AtomicUsize) {
    let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
}

/// The pool's state, read at scrape time.
fn pool_gauges(
    pool: PgPool,
    max: u32,
    pending: Arc<AtomicI64>,
) -> impl Fn() -> PoolState + Send + Sync + 'static {
    move || {
        let open = u64::from(pool.size());
        let idle = pool.num_idle() as u64;
        PoolState {
            used: open.saturating_sub(idle),
            idle,
            max: u64::from(max),
            pending: u64::try_from(pending.load(Ordering::Relaxed)).unwrap_or(0),
        }
    }
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_usize(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0)
}

/// A user id from a path: ids above `i64::MAX` cannot exist in the table.
fn row_id(id: u64) -> Option<i64> {
    i64::try_from(id).ok()
}

fn user((id, name, email): (i64, String, String)) -> User {
    User {
        id: u64::try_from(id).unwrap_or_default(),
        name,
        email,
    }
}

/// An item as stored: its JSON text parses back to the value written.
fn item((key, value): (String, String)) -> Item {
    Item {
        key,
        value: serde_json::from_str(&value).unwrap_or(serde_json::Value::Null),
    }
}

/// Serialises, until `tx` ends, the writes of one item key (across replicas).
async fn lock_key(tx: &mut Transaction<'_, Postgres>, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(key)
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// A write refused for the store limit (its transaction is rolled back).
struct Full;

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let rows = self
            .bounded(request("SELECT", "pulse_users"), async {
                sqlx::query_as("SELECT id, name, email FROM pulse_users ORDER BY id")
                    .fetch_all(&mut *self.acquire().await?)
                    .await
            })
            .await?;
        Ok(rows.into_iter().map(user).collect())
    }

    async fn get_user(&self, id: u64) -> Result<Option<User>, StoreError> {
        let Some(id) = row_id(id) else {
            return Ok(None);
        };
        let row = self
            .bounded(request("SELECT", "pulse_users"), async {
                sqlx::query_as("SELECT id, name, email FROM pulse_users WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *self.acquire().await?)
                    .await
            })
            .await?;
        Ok(row.map(user))
    }

    async fn create_user(&self, new: NewUser) -> Result<User, StoreError> {
        let size = to_i64(user_size(&new.name, &new.email));
        let created = self
            .bounded(request("INSERT", "pulse_users"), async {
                let mut conn = self.acquire().await?;
                let mut tx = conn.begin().await?;
                if !self.reserve(&mut tx, size).await? {
                    return Ok(Err(Full));
                }
                let row = sqlx::query_as(
                    "INSERT INTO pulse_users (name, email, bytes) VALUES ($1, $2, $3) \
                     RETURNING id, name, email",
                )
                .bind(&new.name)
                .bind(&new.email)
                .bind(size)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Ok(user(row)))
            })
            .await?
            .map_err(|Full| self.full())?;
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
            let current: Option<(String, String, i64)> = sqlx::query_as(
                "SELECT name, email, bytes FROM pulse_users WHERE id = $1 FOR UPDATE",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((name, email, old)) = current else {
                return Ok(Ok(None));
            };
            let name = changes.name.clone().unwrap_or(name);
            let email = changes.email.clone().unwrap_or(email);
            let size = to_i64(user_size(&name, &email));
            if !self.reserve(&mut tx, size - old).await? {
                return Ok(Err(Full));
            }
            let row = sqlx::query_as(
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
            Ok(Ok(Some(user(row))))
        })
        .await?
        .map_err(|Full| self.full())
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

    async fn list_items(&self) -> Result<Vec<Item>, StoreError> {
        let rows = self
            .bounded(request("SELECT", "pulse_items"), async {
                sqlx::query_as("SELECT key, value FROM pulse_items ORDER BY key COLLATE \"C\"")
                    .fetch_all(&mut *self.acquire().await?)
                    .await
            })
            .await?;
        Ok(rows.into_iter().map(item).collect())
    }

    async fn get_item(&self, key: &str) -> Result<Option<Item>, StoreError> {
        let row = self
            .bounded(request("SELECT", "pulse_items"), async {
                sqlx::query_as("SELECT key, value FROM pulse_items WHERE key = $1")
                    .bind(key)
                    .fetch_optional(&mut *self.acquire().await?)
                    .await
            })
            .await?;
        Ok(row.map(item))
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
                let old: Option<(i64,)> =
                    sqlx::query_as("SELECT bytes FROM pulse_items WHERE key = $1")
                        .bind(&new.key)
                        .fetch_optional(&mut *tx)
                        .await?;
                let delta = size - old.map_or(0, |(bytes,)| bytes);
                if !self.reserve(&mut tx, delta).await? {
                    return Ok(Err(Full));
                }
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
                Ok(Ok(if old.is_some() {
                    Put::Replaced
                } else {
                    Put::Created
                }))
            })
            .await?
            .map_err(|Full| self.full())?;
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

    fn unavailable(&self) -> Option<&'static str> {
        (!self.available.load(Ordering::Acquire)).then_some("database unavailable")
    }
}

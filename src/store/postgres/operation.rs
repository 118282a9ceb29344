//! How one operation runs: within the timeout, on a pooled connection, as a
//! CLIENT span and a duration observation, its failure turned into the
//! [`StoreError`] the API answers; and deletes, which free their bytes
//! (the size accounting itself: slots.rs).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPool;
use sqlx::{Acquire as _, Postgres, Transaction};

use super::rows::Bytes;
use super::{PostgresStore, TxError};
use crate::store::StoreError;
use crate::telemetry::db::PoolState;

impl PostgresStore {
    /// Runs `operation` within the timeout. A lost connection marks the store
    /// unavailable until the supervisor's next good check; other failures fail only
    /// this operation.
    ///
    /// A request's operation is a CLIENT span (child of the request's) and one
    /// `db_client_operation_duration_seconds` observation; the supervisor's checks
    /// are neither, so they do not drown the request path's in noise.
    pub(super) async fn bounded<T>(
        &self,
        query: Query,
        operation: impl Future<Output = Result<T, TxError>>,
    ) -> Result<T, StoreError> {
        let traced = query
            .traced
            .then(|| self.telemetry.start(query.operation, query.collection));
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(self.timeout, operation).await;
        let error = match &outcome {
            Ok(Ok(_) | Err(TxError::Full)) => None,
            Ok(Err(TxError::Database(err))) => Some(error_type(err)),
            Ok(Err(TxError::Corrupt(_))) => Some("corrupt_row"),
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
            Ok(Err(TxError::Full)) => Err(StoreError::Full {
                limit: self.max_bytes,
            }),
            Ok(Err(TxError::Corrupt(err))) => {
                tracing::error!(operation = query.operation, error = %err, "corrupt row");
                Err(StoreError::Corrupt(err.to_string()))
            }
            Ok(Err(TxError::Database(err))) => {
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
    pub(super) async fn acquire(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        self.pending.fetch_add(1, Ordering::Relaxed);
        let _waited = Decrement(&self.pending);
        self.pool.acquire().await
    }

    /// Deletes one row of `collection` (`sql` returns its bytes, bound to `key`),
    /// frees its bytes, and counts it out of `count`; `false` when there was none.
    /// `lock` (an item's key) takes the key's advisory lock first, as `put_item`
    /// does, so a put and a delete of one key run one after the other: otherwise
    /// they could miscount the size (both counting one row), or deadlock on the
    /// item row and a slot row. Lock order, everywhere: the key's advisory lock
    /// (or the row), then slot rows (slots.rs), and nothing after the slots.
    pub(super) async fn delete<'k, K>(
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
                let deleted: Option<Bytes> = sqlx::query_as(sql)
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(Bytes { bytes }) = deleted else {
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
}

/// Which statement an operation is (its main one), as the database conventions
/// name it, and whether it is a request's (traced and measured).
#[derive(Debug, Clone, Copy)]
pub(super) struct Query {
    pub(super) operation: &'static str,
    pub(super) collection: &'static str,
    pub(super) traced: bool,
}

pub(super) const fn request(operation: &'static str, collection: &'static str) -> Query {
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
pub(super) fn unavailable(what: &'static str, err: impl std::fmt::Display) -> StoreError {
    tracing::warn!(operation = what, error = %err, "database operation failed");
    StoreError::Unavailable
}

/// One less, never below zero (a refresh may have counted the row away already).
pub(super) fn decrement(count: &AtomicUsize) {
    let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
}

/// The pool's state, read at scrape time.
pub(super) fn pool_gauges(
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

pub(super) fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) fn to_usize(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0)
}

/// A user id from a path: ids above `i64::MAX` cannot exist in the table.
pub(super) fn row_id(id: u64) -> Option<i64> {
    i64::try_from(id).ok()
}

/// Serialises, until `tx` ends, the writes of one item key (across replicas).
pub(super) async fn lock_key(tx: &mut Transaction<'_, Postgres>, key: &str) -> Result<(), TxError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(key)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

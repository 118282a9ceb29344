//! The store's life beside the requests: the migrations, and a supervisor that
//! checks the database on a connection of its own, keeps readiness and the counts
//! `/metrics` shows up to date, and brings the store back after an outage.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::{Connection as _, PgConnection};

use super::{PostgresStore, Query, TxError, to_usize, unavailable};
use crate::store::StoreError;

/// The longest a migration run may take (waiting for another replica's included).
const MIGRATE_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the supervisor checks the database while it answers.
const CHECK_EVERY: Duration = Duration::from_secs(2);
/// The first retry delay when it does not; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest delay between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Both counts in one statement.
#[derive(Debug, sqlx::FromRow)]
struct CountsRow {
    users: i64,
    items: i64,
}

impl PostgresStore {
    /// Applies the embedded migrations (safe when several replicas start at once:
    /// the migrator holds an advisory lock while it works), on a connection of their
    /// own that is closed afterwards, whatever happened, so a failed run cannot leave
    /// that lock held. Migrations this binary does not know (a newer release's, after
    /// a rollback) are left alone. Then the size accounting is settled: this
    /// process's limit written, the total recounted (`PostgresStore::settle`).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let run = async {
            let mut conn = PgConnection::connect_with(&self.options).await?;
            let mut migrator = sqlx::migrate!("src/store/migrations");
            migrator.set_ignore_missing(true);
            // `run_direct`, sqlx's own way around `run`'s "Acquire is not general
            // enough" error in a spawned task (what `run` calls after acquiring).
            let result = match migrator.run_direct(None, &mut conn, false).await {
                // This process's --max-store-bytes, and the total recounted (slots.rs).
                Ok(()) => self.settle(&mut conn).await,
                Err(err) => Err(sqlx::Error::from(err)),
            };
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
        let query = Query {
            operation: "SELECT",
            collection: "pulse_store",
            traced: false,
        };
        let counts: CountsRow = self
            .bounded(query, async {
                sqlx::query_as(
                    "SELECT (SELECT count(*) FROM pulse_users) AS users, \
                     (SELECT count(*) FROM pulse_items) AS items",
                )
                .fetch_one(&mut *conn)
                .await
                .map_err(TxError::from)
            })
            .await?;
        self.users.store(to_usize(counts.users), Ordering::Relaxed);
        self.items.store(to_usize(counts.items), Ordering::Relaxed);
        Ok(())
    }
}

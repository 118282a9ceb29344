//! The size accounting behind `--max-store-bytes` on PostgreSQL, exact across
//! replicas without one row that every write updates.
//!
//! The running total lives in [`SLOTS`] rows of `pulse_store_slots` (migration
//! 0002), each with its `bytes` and a `cap`; the limit the caps are cut from is in
//! `pulse_store_limit`. Invariants, under which the total never passes the limit:
//!
//! - growth on a slot only while `bytes <= cap` afterwards (a NULL cap admits none);
//! - the caps add up to at most the limit (exactly, after a rebalance that found
//!   room);
//! - so total = Σ bytes ≤ Σ cap ≤ limit. Frees only lower a slot's `bytes`.
//!
//! A write that grows the store ([`PostgresStore::reserve`]):
//! - fast path: one `UPDATE` of its connection's slot (`pg_backend_pid() % SLOTS`),
//!   only if it stays within the slot's cap. Writers on other connections update
//!   other rows, so they do not queue on each other (64 slots for pools of 10
//!   connections per replica: consecutive backend pids get distinct slots);
//! - slow path, when the slot's cap is used up: lock every slot row in slot order
//!   (the same order everywhere, so two slow paths cannot deadlock), refuse
//!   ([`TxError::Full`]) when the exact total plus the write passes the limit, else
//!   apply it and spread the remaining free space evenly over the caps again.
//!   Near the limit most writes take it and serialise, as they must for the bound
//!   to be exact; far from it, one in about (free space / 64 / write size).
//!
//! Deadlocks: a transaction reserves once, and after reserving it waits for no
//! other lock (the row it then writes is new, or already locked by it: a user row
//! `FOR UPDATE`, an item key's advisory lock). A failed fast-path `UPDATE` keeps no
//! lock: the create's is its own autocommit statement, and [`PostgresStore::reserve`]
//! rolls its attempt back to a savepoint (an `UPDATE` that waited for a row and then
//! found it no longer matching still holds the row's lock). So a slot lock is only ever waited for by someone holding no slot lock,
//! or holding lower slots in slot order: no cycle.
//!
//! The limit is per process (`--max-store-bytes`): at start, and after losing the
//! database, [`PostgresStore::settle`] writes this process's limit, recounts the
//! total from the rows and cuts the caps again, under every slot's lock. Replicas
//! that disagree: the one that settled last wins, for every replica, until the
//! next one settles (in a rolling update, the new release's limit applies as soon
//! as its first replica is up). `--max-store-bytes 0` turns the accounting off:
//! no slot is touched (for a database with a quota of its own); a replica with 0
//! beside replicas with a limit writes uncounted bytes, until the next settle
//! recounts them.

use sqlx::{Acquire as _, Executor, PgConnection, Postgres, Transaction};

use super::operation::to_i64;
use super::rows::UserRow;
use super::{PostgresStore, TxError};

/// Slot rows: the number in migration 0002. More slots spread writers further but
/// cut the free space finer (each slot's share runs out sooner near the limit).
pub(super) const SLOTS: i32 = 64;

/// The fast path, as SQL: `$1` is the size change. Adds it to this connection's
/// slot unless that would pass the slot's cap (frees always pass).
pub(super) const FAST_PATH: &str = "UPDATE pulse_store_slots SET bytes = bytes + $1 \
     WHERE slot = pg_backend_pid() % 64 AND ($1 <= 0 OR bytes + $1 <= cap)";

/// `FAST_PATH` folded into the insert of a user: one statement, so one round trip
/// and an autocommit, as cheap as an insert can be; it inserts nothing (no row
/// returned) when the slot has no room, and the caller takes the slow path.
pub(super) const CREATE_USER_FAST: &str = "WITH reserved AS (\
     UPDATE pulse_store_slots SET bytes = bytes + $3 \
     WHERE slot = pg_backend_pid() % 64 AND ($3 <= 0 OR bytes + $3 <= cap) RETURNING slot) \
     INSERT INTO pulse_users (name, email, bytes) SELECT $1, $2, $3 FROM reserved \
     RETURNING id, name, email";

// The SQL above spells SLOTS out (a constant folds into the plan).
const _: () = assert!(SLOTS == 64);

/// The insert of a user, without the accounting.
const INSERT_USER: &str = "INSERT INTO pulse_users (name, email, bytes) VALUES ($1, $2, $3) \
     RETURNING id, name, email";

/// A slot row, locked by the slow path.
#[derive(Debug, sqlx::FromRow)]
struct SlotRow {
    slot: i32,
    bytes: i64,
    /// Whether it is this connection's slot.
    mine: bool,
    /// `pulse_store_limit`, the same on every row.
    max_bytes: Option<i64>,
}

/// What a rebalance writes: every slot's bytes and cap, in slot order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    pub(super) bytes: Vec<i64>,
    pub(super) caps: Vec<Option<i64>>,
}

impl PostgresStore {
    /// Whether `--max-store-bytes` is counted (0: no limit, no accounting).
    pub(super) fn counted(&self) -> bool {
        self.max_bytes > 0
    }

    /// Inserts a user of `size` bytes, counted: on the fast path one statement
    /// ([`CREATE_USER_FAST`]); when its slot has no room, a transaction with the
    /// slow path. Uncounted (`--max-store-bytes 0`), the insert alone.
    pub(super) async fn insert_user(
        &self,
        name: &str,
        email: &str,
        size: i64,
    ) -> Result<UserRow, TxError> {
        let mut conn = self.acquire().await?;
        let sql = if self.counted() {
            CREATE_USER_FAST
        } else {
            INSERT_USER
        };
        let row: Option<UserRow> = sqlx::query_as(sql)
            .bind(name)
            .bind(email)
            .bind(size)
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(row) = row {
            return Ok(row);
        }
        let mut tx = conn.begin().await?;
        self.reserve_slow(&mut tx, size).await?;
        let row = sqlx::query_as(INSERT_USER)
            .bind(name)
            .bind(email)
            .bind(size)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Adds `delta` bytes to the store's total within `tx`, unless that takes it
    /// over the limit (then [`TxError::Full`]: the caller's transaction rolls back).
    /// Freeing space always succeeds, even over a limit lowered since the bytes
    /// were written.
    pub(super) async fn reserve(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        delta: i64,
    ) -> Result<(), TxError> {
        if !self.counted() || delta == 0 {
            return Ok(());
        }
        // Inside a savepoint: an `UPDATE` that waited for the slot's row and then
        // found no room keeps the row's lock (PostgreSQL's recheck of a concurrently
        // updated row locks its new version even when it no longer matches). Holding
        // that slot while the slow path locks every slot from the first was a lock
        // cycle with another slow path (deadlock detected, a 503); rolling back to
        // the savepoint lets it go. The autocommit create (`insert_user`) needs none.
        sqlx::query("SAVEPOINT pulse_fast_path")
            .execute(&mut **tx)
            .await?;
        let done = sqlx::query(FAST_PATH)
            .bind(delta)
            .execute(&mut **tx)
            .await?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        sqlx::query("ROLLBACK TO SAVEPOINT pulse_fast_path")
            .execute(&mut **tx)
            .await?;
        self.reserve_slow(tx, delta).await
    }

    /// The slow path: every slot locked, the exact total checked, the caps cut again.
    pub(super) async fn reserve_slow(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        delta: i64,
    ) -> Result<(), TxError> {
        let rows = lock_all(&mut **tx).await?;
        let limit = rows
            .first()
            .and_then(|row| row.max_bytes)
            .unwrap_or_else(|| to_i64(self.max_bytes));
        let bytes: Vec<i64> = rows.iter().map(|row| row.bytes).collect();
        // No slot of this connection's (a table changed by hand): the first one.
        let mine = rows.iter().position(|row| row.mine).unwrap_or(0);
        let plan = rebalance(&bytes, mine, delta, limit).ok_or(TxError::Full)?;
        Ok(write(&mut **tx, &rows, &plan).await?)
    }

    /// Writes this process's limit, recounts the total from the rows and cuts the
    /// caps from it, under every slot's lock (see the module's docs). Nothing with
    /// `--max-store-bytes 0`.
    ///
    /// The recount is exact: every write that changes the rows' bytes holds its
    /// slot's lock until it commits, so with all of them held no write is half
    /// done (a delete whose row is gone but whose bytes are not yet freed frees
    /// them after this commits, from the total this counted with its row in it).
    pub(super) async fn settle(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if !self.counted() {
            return Ok(());
        }
        let mut tx = sqlx::Connection::begin(conn).await?;
        let rows = lock_all(&mut *tx).await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT ((SELECT COALESCE(SUM(bytes), 0) FROM pulse_users) \
             + (SELECT COALESCE(SUM(bytes), 0) FROM pulse_items))::BIGINT",
        )
        .fetch_one(&mut *tx)
        .await?;
        let limit = to_i64(self.max_bytes);
        sqlx::query("UPDATE pulse_store_limit SET max_bytes = $1 WHERE id = 1")
            .bind(limit)
            .execute(&mut *tx)
            .await?;
        let mut bytes = vec![0; rows.len()];
        if let Some(first) = bytes.first_mut() {
            *first = total;
        }
        let plan = rebalance(&bytes, 0, 0, limit).unwrap_or_else(|| Plan {
            caps: vec![None; bytes.len()],
            bytes,
        });
        write(&mut *tx, &rows, &plan).await?;
        tx.commit().await
    }
}

/// Locks every slot row, in slot order.
async fn lock_all<'c, E>(conn: E) -> Result<Vec<SlotRow>, sqlx::Error>
where
    E: Executor<'c, Database = Postgres>,
{
    sqlx::query_as(
        "SELECT slot, bytes, slot = pg_backend_pid() % 64 AS mine, \
         (SELECT max_bytes FROM pulse_store_limit WHERE id = 1) AS max_bytes \
         FROM pulse_store_slots ORDER BY slot FOR UPDATE",
    )
    .fetch_all(conn)
    .await
}

/// Writes `plan` to the slot rows `rows` (locked, in the same order).
async fn write<'c, E>(conn: E, rows: &[SlotRow], plan: &Plan) -> Result<(), sqlx::Error>
where
    E: Executor<'c, Database = Postgres>,
{
    let slots: Vec<i32> = rows.iter().map(|row| row.slot).collect();
    sqlx::query(
        "UPDATE pulse_store_slots AS s SET bytes = n.bytes, cap = n.cap \
         FROM unnest($1::INT[], $2::BIGINT[], $3::BIGINT[]) AS n(slot, bytes, cap) \
         WHERE s.slot = n.slot",
    )
    .bind(&slots)
    .bind(&plan.bytes)
    .bind(&plan.caps)
    .execute(conn)
    .await?;
    Ok(())
}

/// The slow path's arithmetic: `delta` added to slot `mine` of `bytes`, the free
/// space left spread evenly over the caps (each `bytes + share`, the remainder one
/// byte at a time from the first slot), so that they add up to `limit` exactly.
/// `None` when the total plus a growing `delta` passes `limit`: refused, as the
/// one-row total refused it. A free over a lowered limit applies, and leaves
/// every cap NULL (no growth until the total is back within the limit).
pub(super) fn rebalance(bytes: &[i64], mine: usize, delta: i64, limit: i64) -> Option<Plan> {
    let total: i64 = bytes.iter().sum();
    let after = total.saturating_add(delta);
    if delta > 0 && after > limit {
        return None;
    }
    let mut bytes = bytes.to_vec();
    if let Some(slot) = bytes.get_mut(mine) {
        *slot += delta;
    }
    let Some(slots) = i64::try_from(bytes.len()).ok().filter(|&n| n > 0) else {
        return Some(Plan {
            bytes,
            caps: Vec::new(),
        });
    };
    let free = limit - after;
    if free < 0 {
        let caps = vec![None; bytes.len()];
        return Some(Plan { bytes, caps });
    }
    let (share, extra) = (free / slots, free % slots);
    let caps = bytes
        .iter()
        .zip(0..)
        .map(|(&b, i)| Some(b + share + i64::from(i < extra)))
        .collect();
    Some(Plan { bytes, caps })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(caps: &[Option<i64>]) -> i64 {
        caps.iter().map(|c| c.expect("a cap")).sum()
    }

    #[test]
    fn a_write_that_fits_is_applied_and_the_caps_add_up_to_the_limit() {
        let plan = rebalance(&[50, -10, 0, 30], 2, 25, 200).expect("fits");
        assert_eq!(plan.bytes, vec![50, -10, 25, 30]);
        assert_eq!(sum(&plan.caps), 200);
        // Free space 105 over 4 slots: 26 each, the remainder to the first.
        assert_eq!(plan.caps, vec![Some(77), Some(16), Some(51), Some(56)]);
        for (b, c) in plan.bytes.iter().zip(&plan.caps) {
            assert!(Some(*b) <= *c);
        }
    }

    #[test]
    fn a_write_is_refused_only_when_the_exact_total_would_pass_the_limit() {
        assert!(rebalance(&[100, 100], 0, 1, 200).is_none());
        let exact = rebalance(&[100, 99], 0, 1, 200).expect("exactly the limit fits");
        assert_eq!(exact.caps, vec![Some(101), Some(99)]);
        // However the total is spread, even with slots below 0.
        assert!(rebalance(&[-50, 240], 1, 11, 200).is_none());
        assert!(rebalance(&[-50, 240], 1, 10, 200).is_some());
    }

    #[test]
    fn a_free_over_a_lowered_limit_applies_and_leaves_no_room_to_grow() {
        let plan = rebalance(&[300, 0], 1, -20, 200).expect("frees always apply");
        assert_eq!(plan.bytes, vec![300, -20]);
        assert_eq!(plan.caps, vec![None, None]);
        assert!(rebalance(&[300, 0], 1, 5, 200).is_none());
    }
}

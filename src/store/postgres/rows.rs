//! The rows the PostgreSQL store reads, typed (sqlx's `FromRow`), and how they
//! become the API's [`User`] and [`Item`]: a row that cannot be one is an error,
//! never a default value.

use crate::store::{Item, User};

/// Why a stored row is not a valid record. Only a write outside Pulse (or a bug)
/// can cause it; the request fails with 500 and the row is named in the log.
#[derive(Debug, thiserror::Error)]
pub enum CorruptRow {
    /// Ids are `BIGSERIAL`, starting at 1.
    #[error("pulse_users row has id {0}, which is not positive")]
    NegativeId(i64),
    /// Items are stored as the JSON text of their value.
    #[error("pulse_items row {key:?} holds text that is not JSON: {source}")]
    NotJson {
        /// The item's key.
        key: String,
        /// The parser's message.
        source: serde_json::Error,
    },
}

/// A row of `pulse_users`: `SELECT id, name, email`.
#[derive(Debug, sqlx::FromRow)]
pub struct UserRow {
    id: i64,
    name: String,
    email: String,
}

impl TryFrom<UserRow> for User {
    type Error = CorruptRow;

    fn try_from(row: UserRow) -> Result<Self, CorruptRow> {
        Ok(User {
            id: u64::try_from(row.id)
                .ok()
                .filter(|id| *id > 0)
                .ok_or(CorruptRow::NegativeId(row.id))?,
            name: row.name,
            email: row.email,
        })
    }
}

/// A row of `pulse_items`: `SELECT key, value`.
#[derive(Debug, sqlx::FromRow)]
pub struct ItemRow {
    key: String,
    value: String,
}

impl TryFrom<ItemRow> for Item {
    type Error = CorruptRow;

    fn try_from(row: ItemRow) -> Result<Self, CorruptRow> {
        match serde_json::from_str(&row.value) {
            Ok(value) => Ok(Item {
                key: row.key,
                value,
            }),
            Err(source) => Err(CorruptRow::NotJson {
                key: row.key,
                source,
            }),
        }
    }
}

/// The row of `pulse_users` a write needs: its text and the bytes it counts.
#[derive(Debug, sqlx::FromRow)]
pub struct UserSize {
    /// The stored name.
    pub name: String,
    /// The stored email.
    pub email: String,
    /// What `--max-store-bytes` counts for it.
    pub bytes: i64,
}

/// Rows of `pulse_*` that return only the bytes they count (`RETURNING bytes`).
#[derive(Debug, sqlx::FromRow)]
pub struct Bytes {
    /// What `--max-store-bytes` counted for the row.
    pub bytes: i64,
}

/// Every row, converted; the first corrupt one fails them all.
pub fn all<R, T>(rows: Vec<R>) -> Result<Vec<T>, CorruptRow>
where
    T: TryFrom<R, Error = CorruptRow>,
{
    rows.into_iter().map(T::try_from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_that_is_not_a_record_is_an_error_not_a_default() {
        let user = UserRow {
            id: -3,
            name: "a".into(),
            email: "a@b.c".into(),
        };
        assert!(matches!(
            User::try_from(user),
            Err(CorruptRow::NegativeId(-3))
        ));
        let item = ItemRow {
            key: "k".into(),
            value: "{not json".into(),
        };
        let err = Item::try_from(item).unwrap_err();
        assert!(err.to_string().contains("\"k\""), "{err}");
        let good = ItemRow {
            key: "k".into(),
            value: "[1,2]".into(),
        };
        assert_eq!(
            Item::try_from(good).unwrap().value,
            serde_json::json!([1, 2])
        );
    }
}

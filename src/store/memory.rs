//! The in-memory [`Store`]: a mutex around two ordered maps, with a size limit.
//!
//! `GET /api/users` is the benchmark's hot read: each list (users, items) is kept
//! as a [`Snapshot`] built on the first read after a write and shared, with the
//! response body rendered from it, by every read until the next write: a read is
//! a reference count, not a copy and a serialisation of every record (see
//! [`Snapshot`] for what that cost). Writes only drop the snapshot; the size
//! accounting is untouched. A write-heavy mix pays at most what every read paid
//! before: one copy and one rendering per read after a write.
//!
//! A std mutex is right here: critical sections are a map operation long and
//! never await, so an async mutex would only add overhead.
//!
//! The limit (`--max-store-bytes`) is what keeps a client that writes without
//! end from filling the pod's memory and getting it, and everyone's data,
//! killed: past it, writes are refused and reads and deletes go on.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{
    Counts, Item, ItemSnapshot, NewUser, Put, Snapshot, Store, StoreError, User, UserChanges,
    UserSnapshot, item_size, user_size,
};
use crate::config::defaults;

/// Users and items kept in process memory; lost on restart.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct Inner {
    users: Listed<u64, User, User>,
    last_user_id: u64,
    items: Listed<String, Stored, Item>,
    /// The estimated size of everything stored.
    bytes: usize,
}

/// An item's value and its size, measured once when written.
#[derive(Debug)]
struct Stored {
    value: serde_json::Value,
    size: usize,
}

/// An ordered map and the list its readers share: built on the first read after
/// a change, dropped by every change. The only way to change the map is through
/// [`Listed::insert`] and [`Listed::remove`], so no write can leave a stale list.
#[derive(Debug)]
struct Listed<K, V, L> {
    map: BTreeMap<K, V>,
    list: Option<Arc<Snapshot<L>>>,
}

impl<K, V, L> Default for Listed<K, V, L> {
    fn default() -> Self {
        Self {
            map: BTreeMap::new(),
            list: None,
        }
    }
}

impl<K: Ord, V, L> Listed<K, V, L> {
    fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.map.get(key)
    }

    fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.list = None;
        self.map.insert(key, value)
    }

    fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let removed = self.map.remove(key);
        if removed.is_some() {
            self.list = None;
        }
        removed
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    /// The shared list, in key order, each entry made by `entry` when it is built.
    fn list(&mut self, entry: impl Fn(&K, &V) -> L) -> Arc<Snapshot<L>> {
        let map = &self.map;
        self.list
            .get_or_insert_with(|| {
                Snapshot::shared(map.iter().map(|(k, v)| entry(k, v)).collect::<Vec<_>>())
            })
            .clone()
    }
}

impl Default for MemoryStore {
    /// An empty store with the default `--max-store-bytes`.
    fn default() -> Self {
        Self::with_limit(defaults::MAX_STORE_BYTES)
    }
}

impl MemoryStore {
    /// An empty store holding at most about `max_bytes`.
    pub fn with_limit(max_bytes: usize) -> Self {
        Self {
            inner: Mutex::default(),
            max_bytes,
        }
    }

    /// Checks that replacing `old` bytes with `new` bytes stays within the limit.
    fn fits(&self, inner: &Inner, old: usize, new: usize) -> Result<(), StoreError> {
        if inner.bytes - old + new > self.max_bytes {
            return Err(StoreError::Full {
                limit: self.max_bytes,
            });
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Each operation is a single map call: see crate::sync.
        crate::sync::lock(&self.inner)
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn list_users(&self) -> Result<UserSnapshot, StoreError> {
        Ok(self.lock().users.list(|_, user| user.clone()))
    }

    async fn get_user(&self, id: u64) -> Result<Option<User>, StoreError> {
        Ok(self.lock().users.get(&id).cloned())
    }

    async fn create_user(&self, user: NewUser) -> Result<User, StoreError> {
        let mut inner = self.lock();
        let size = user_size(&user.name, &user.email);
        self.fits(&inner, 0, size)?;
        inner.bytes += size;
        inner.last_user_id += 1;
        let user = User {
            id: inner.last_user_id,
            name: user.name,
            email: user.email,
        };
        inner.users.insert(user.id, user.clone());
        Ok(user)
    }

    async fn update_user(&self, id: u64, changes: UserChanges) -> Result<Option<User>, StoreError> {
        let mut inner = self.lock();
        let Some(user) = inner.users.get(&id) else {
            return Ok(None);
        };
        let name = changes.name.unwrap_or_else(|| user.name.clone());
        let email = changes.email.unwrap_or_else(|| user.email.clone());
        let (old, new) = (user_size(&user.name, &user.email), user_size(&name, &email));
        self.fits(&inner, old, new)?;
        inner.bytes = inner.bytes - old + new;
        let updated = User { id, name, email };
        inner.users.insert(id, updated.clone());
        Ok(Some(updated))
    }

    async fn delete_user(&self, id: u64) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(user) = inner.users.remove(&id) else {
            return Ok(false);
        };
        inner.bytes -= user_size(&user.name, &user.email);
        Ok(true)
    }

    async fn list_items(&self) -> Result<ItemSnapshot, StoreError> {
        Ok(self.lock().items.list(|key, stored| Item {
            key: key.clone(),
            value: stored.value.clone(),
        }))
    }

    async fn get_item(&self, key: &str) -> Result<Option<Item>, StoreError> {
        Ok(self.lock().items.get(key).map(|stored| Item {
            key: key.to_owned(),
            value: stored.value.clone(),
        }))
    }

    async fn put_item(&self, item: Item) -> Result<Put, StoreError> {
        // Measured before locking: serialising a large value must not hold up
        // every other request.
        let size = item_size(&item.key, &item.value);
        let mut inner = self.lock();
        let old = inner.items.get(&item.key).map_or(0, |s| s.size);
        self.fits(&inner, old, size)?;
        inner.bytes = inner.bytes - old + size;
        let stored = Stored {
            value: item.value,
            size,
        };
        Ok(match inner.items.insert(item.key, stored) {
            None => Put::Created,
            Some(_) => Put::Replaced,
        })
    }

    async fn delete_item(&self, key: &str) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(stored) = inner.items.remove(key) else {
            return Ok(false);
        };
        inner.bytes -= stored.size;
        Ok(true)
    }

    fn counts(&self) -> Counts {
        let inner = self.lock();
        Counts {
            users: inner.users.len(),
            items: inner.items.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_user(name: &str) -> NewUser {
        NewUser {
            name: name.into(),
            email: format!("{name}@example.com"),
        }
    }

    /// A read hands out the shared snapshot (no copy of every record, which is
    /// what `GET /api/users` costs per request otherwise); every kind of write
    /// replaces it, and a snapshot already handed out never changes.
    #[tokio::test]
    async fn reads_share_one_snapshot_until_a_write() {
        let store = MemoryStore::default();
        store.create_user(new_user("a")).await.unwrap();
        let first = store.list_users().await.unwrap();
        let again = store.list_users().await.unwrap();
        assert!(
            std::sync::Arc::ptr_eq(&first, &again),
            "a read copied the users"
        );
        store.create_user(new_user("b")).await.unwrap();
        let names = |users: &UserSnapshot| users.iter().map(|u| u.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&store.list_users().await.unwrap()), ["a", "b"]);
        assert_eq!(names(&first), ["a"], "a handed-out snapshot changed");
        let changes = UserChanges {
            name: Some("c".into()),
            ..UserChanges::default()
        };
        store.update_user(1, changes).await.unwrap();
        assert_eq!(names(&store.list_users().await.unwrap()), ["c", "b"]);
        assert!(store.delete_user(2).await.unwrap());
        assert_eq!(names(&store.list_users().await.unwrap()), ["c"]);
    }

    #[tokio::test]
    async fn item_reads_share_one_snapshot_until_a_write() {
        let store = MemoryStore::default();
        store.put_item(item("a", 1)).await.unwrap();
        let first = store.list_items().await.unwrap();
        let again = store.list_items().await.unwrap();
        assert!(
            std::sync::Arc::ptr_eq(&first, &again),
            "a read copied the items"
        );
        let keys = |items: &ItemSnapshot| items.iter().map(|i| i.key.clone()).collect::<Vec<_>>();
        store.put_item(item("b", 1)).await.unwrap();
        assert_eq!(keys(&store.list_items().await.unwrap()), ["a", "b"]);
        assert_eq!(keys(&first), ["a"], "a handed-out snapshot changed");
        store.put_item(item("a", 5)).await.unwrap();
        assert_ne!(store.list_items().await.unwrap()[0].value, first[0].value);
        assert!(store.delete_item("a").await.unwrap());
        assert_eq!(keys(&store.list_items().await.unwrap()), ["b"]);
    }

    #[tokio::test]
    async fn ids_are_never_reused() {
        let store = MemoryStore::default();
        let a = store.create_user(new_user("a")).await.unwrap();
        assert!(store.delete_user(a.id).await.unwrap());
        let b = store.create_user(new_user("b")).await.unwrap();
        assert_eq!((a.id, b.id), (1, 2));
        assert_eq!(store.counts().users, 1);
    }

    #[tokio::test]
    async fn partial_update_keeps_other_fields() {
        let store = MemoryStore::default();
        let user = store.create_user(new_user("john")).await.unwrap();
        let changes = UserChanges {
            name: Some("John Doe".into()),
            email: None,
        };
        let updated = store.update_user(user.id, changes).await.unwrap().unwrap();
        assert_eq!(updated.name, "John Doe");
        assert_eq!(updated.email, "john@example.com");
        assert!(
            store
                .update_user(99, UserChanges::default())
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn put_reports_create_then_replace() {
        let store = MemoryStore::default();
        let item = |v: &str| Item {
            key: "k".into(),
            value: serde_json::json!(v),
        };
        assert_eq!(store.put_item(item("1")).await.unwrap(), Put::Created);
        assert_eq!(store.put_item(item("2")).await.unwrap(), Put::Replaced);
        assert_eq!(store.get_item("k").await.unwrap(), Some(item("2")));
        assert!(store.delete_item("k").await.unwrap());
        assert!(!store.delete_item("k").await.unwrap());
    }

    fn item(key: &str, len: usize) -> Item {
        Item {
            key: key.into(),
            value: serde_json::json!("x".repeat(len)),
        }
    }

    #[tokio::test]
    async fn writes_past_the_limit_are_refused_and_change_nothing() {
        let store = MemoryStore::with_limit(1000);
        store.put_item(item("a", 500)).await.unwrap();
        let full = store.put_item(item("b", 500)).await;
        assert!(matches!(full, Err(StoreError::Full { limit: 1000 })));
        assert_eq!(store.counts().items, 1);
        // A smaller replacement fits; deleting frees the space.
        store.put_item(item("a", 100)).await.unwrap();
        store.put_item(item("b", 500)).await.unwrap();
        assert!(store.delete_item("a").await.unwrap());
        assert!(store.delete_item("b").await.unwrap());
        assert_eq!(store.lock().bytes, 0, "accounting returns to zero");
        let users = (0..100)
            .map(|i| NewUser {
                name: format!("user{i}"),
                email: "u@example.com".into(),
            })
            .collect::<Vec<_>>();
        let mut created = 0;
        for user in users {
            if store.create_user(user).await.is_ok() {
                created += 1;
            }
        }
        assert!(
            (5..20).contains(&created),
            "{created} users fit in 1000 bytes"
        );
    }
}

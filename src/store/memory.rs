//! The in-memory [`Store`]: a mutex around two ordered maps.
//!
//! A std mutex is right here: critical sections are a map operation long and
//! never await, so an async mutex would only add overhead.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use super::{Item, NewUser, Put, Store, StoreError, User, UserChanges};

/// Users and items kept in process memory; lost on restart.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    users: BTreeMap<u64, User>,
    last_user_id: u64,
    items: BTreeMap<String, serde_json::Value>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated
        // (each operation is a single map call), so a poisoned lock is safe to reuse.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        Ok(self.lock().users.values().cloned().collect())
    }

    async fn get_user(&self, id: u64) -> Result<Option<User>, StoreError> {
        Ok(self.lock().users.get(&id).cloned())
    }

    async fn create_user(&self, user: NewUser) -> Result<User, StoreError> {
        let mut inner = self.lock();
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
        let Some(user) = inner.users.get_mut(&id) else {
            return Ok(None);
        };
        if let Some(name) = changes.name {
            user.name = name;
        }
        if let Some(email) = changes.email {
            user.email = email;
        }
        Ok(Some(user.clone()))
    }

    async fn delete_user(&self, id: u64) -> Result<bool, StoreError> {
        Ok(self.lock().users.remove(&id).is_some())
    }

    async fn user_count(&self) -> Result<usize, StoreError> {
        Ok(self.lock().users.len())
    }

    async fn list_items(&self) -> Result<Vec<Item>, StoreError> {
        Ok(self
            .lock()
            .items
            .iter()
            .map(|(key, value)| Item {
                key: key.clone(),
                value: value.clone(),
            })
            .collect())
    }

    async fn get_item(&self, key: &str) -> Result<Option<Item>, StoreError> {
        Ok(self.lock().items.get(key).map(|value| Item {
            key: key.to_owned(),
            value: value.clone(),
        }))
    }

    async fn put_item(&self, item: Item) -> Result<Put, StoreError> {
        Ok(match self.lock().items.insert(item.key, item.value) {
            None => Put::Created,
            Some(_) => Put::Replaced,
        })
    }

    async fn delete_item(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.lock().items.remove(key).is_some())
    }

    async fn item_count(&self) -> Result<usize, StoreError> {
        Ok(self.lock().items.len())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
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

    #[tokio::test]
    async fn ids_are_never_reused() {
        let store = MemoryStore::new();
        let a = store.create_user(new_user("a")).await.unwrap();
        assert!(store.delete_user(a.id).await.unwrap());
        let b = store.create_user(new_user("b")).await.unwrap();
        assert_eq!((a.id, b.id), (1, 2));
        assert_eq!(store.user_count().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn partial_update_keeps_other_fields() {
        let store = MemoryStore::new();
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
        let store = MemoryStore::new();
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
}

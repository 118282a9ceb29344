//! A read-through Redis cache in front of a [`Store`] (the PostgreSQL one):
//! [`CachedStore`] is itself a store, so neither the handlers nor PostgreSQL know
//! it is there.
//!
//! Reads (one user, the users, one item, the items) look in Redis first; on a miss
//! they read the store and put the record's JSON in Redis for `--cache-ttl`.
//! Writes go to the store, then, after its commit and before they are answered,
//! invalidate what they changed (the record and its list), so a read on any
//! replica after an acknowledged write never gets the old value.
//!
//! The race a plain "delete on write" leaves open — a reader that missed, read the
//! old row before the write committed, and stores it after the write's delete —
//! is closed by generations: a write gives every key it invalidates a new random
//! generation, and a fill stores its value only if the generation is still the one
//! the reader saw before it queried the store (`redis.rs`, two Lua scripts).
//!
//! Redis failing is never the request's failure: every command is bounded by
//! `--cache-timeout`, a failed lookup reads the store, a failed fill is skipped, a
//! failed invalidation is counted (`pulse_cache_invalidation_failures_total`) and
//! leaves the old value at most `--cache-ttl`; readiness ignores Redis, and the
//! connection comes back by itself. docs/cache.md says what may be stale.

mod keys;
mod redis;

pub use self::redis::RedisUrlError;

use std::sync::Arc;
use std::time::Duration;

use self::keys::Key;
use self::redis::{Lookup, Redis};
use super::{
    Counts, Item, ItemSnapshot, NewUser, Put, Snapshot, Store, StoreError, User, UserChanges,
    UserSnapshot,
};
use crate::readiness::NotReady;
use crate::telemetry::Metrics;
use crate::telemetry::labels::{CacheEntity, CacheResult};

/// A [`Store`] whose reads are cached in Redis.
pub struct CachedStore<S> {
    inner: Arc<S>,
    redis: Redis,
}

impl<S> std::fmt::Debug for CachedStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedStore").finish_non_exhaustive()
    }
}

impl<S: Store> CachedStore<S> {
    /// `inner` behind the Redis at `url`: values live `ttl`, each command waits at
    /// most `timeout`. Connects nothing yet (the first request does).
    pub fn new(
        inner: Arc<S>,
        url: &str,
        ttl: Duration,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, RedisUrlError> {
        Ok(Self {
            inner,
            redis: Redis::new(url, ttl, timeout, metrics)?,
        })
    }

    /// Looks `key` up; on a miss (or a Redis failure) runs `load` and, on a miss,
    /// stores what it found unless a write intervened.
    async fn read<T: Cached>(
        &self,
        entity: CacheEntity,
        key: Key,
        load: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let seen = match self.redis.lookup(&key).await {
            Lookup::Hit(json, generation) => match T::decode(&json) {
                Ok(value) => {
                    self.redis.metrics.cache_request(entity, CacheResult::Hit);
                    return Ok(value);
                }
                Err(err) => {
                    // Not what this release writes: read the store and replace it.
                    tracing::warn!(entity = entity.as_str(), error = %err, "unreadable cached value");
                    self.redis.metrics.cache_request(entity, CacheResult::Error);
                    Some(generation)
                }
            },
            Lookup::Miss(generation) => {
                self.redis.metrics.cache_request(entity, CacheResult::Miss);
                Some(generation)
            }
            Lookup::Failed => {
                // Redis is failing: no fill either, so the read costs one timeout at most.
                self.redis.metrics.cache_request(entity, CacheResult::Error);
                None
            }
        };
        let value = load.await?;
        if let (Some(seen), Some(json)) = (seen, value.encode()) {
            self.redis.fill(entity, &key, &seen, &json).await;
        }
        Ok(value)
    }

    /// After a write that may have changed `keys` (of `entity`): invalidates them,
    /// counting a failure.
    async fn invalidate(&self, entity: CacheEntity, keys: &[Key]) {
        if !self.redis.invalidate(keys).await {
            tracing::warn!(
                entity = entity.as_str(),
                "cache invalidation failed: the old value may be served until the cache TTL ends"
            );
            self.redis.metrics.cache_invalidation_failure(entity);
        }
    }
}

/// Whether a write that ended so may have changed the store. A write answered
/// 503 may still have committed (a connection lost during the commit), so only
/// "the store is full" (rolled back, nothing written) is certain to change nothing.
fn may_have_changed<T>(result: &Result<T, StoreError>, changed: impl FnOnce(&T) -> bool) -> bool {
    match result {
        Ok(value) => changed(value),
        Err(StoreError::Full { .. }) => false,
        Err(StoreError::Unavailable | StoreError::Corrupt(_)) => true,
    }
}

#[async_trait::async_trait]
impl<S: Store> Store for CachedStore<S> {
    async fn list_users(&self) -> Result<UserSnapshot, StoreError> {
        self.read(CacheEntity::Users, Key::users(), self.inner.list_users())
            .await
    }

    async fn get_user(&self, id: u64) -> Result<Option<User>, StoreError> {
        self.read(CacheEntity::User, Key::user(id), self.inner.get_user(id))
            .await
    }

    async fn create_user(&self, user: NewUser) -> Result<User, StoreError> {
        let result = self.inner.create_user(user).await;
        // A new id was never cached (absent records are not), only the list changed.
        if may_have_changed(&result, |_| true) {
            self.invalidate(CacheEntity::User, &[Key::users()]).await;
        }
        result
    }

    async fn update_user(&self, id: u64, changes: UserChanges) -> Result<Option<User>, StoreError> {
        let result = self.inner.update_user(id, changes).await;
        if may_have_changed(&result, Option::is_some) {
            self.invalidate(CacheEntity::User, &[Key::user(id), Key::users()])
                .await;
        }
        result
    }

    async fn delete_user(&self, id: u64) -> Result<bool, StoreError> {
        let result = self.inner.delete_user(id).await;
        if may_have_changed(&result, |deleted| *deleted) {
            self.invalidate(CacheEntity::User, &[Key::user(id), Key::users()])
                .await;
        }
        result
    }

    async fn list_items(&self) -> Result<ItemSnapshot, StoreError> {
        self.read(CacheEntity::Items, Key::items(), self.inner.list_items())
            .await
    }

    async fn get_item(&self, key: &str) -> Result<Option<Item>, StoreError> {
        self.read(CacheEntity::Item, Key::item(key), self.inner.get_item(key))
            .await
    }

    async fn put_item(&self, item: Item) -> Result<Put, StoreError> {
        let keys = [Key::item(&item.key), Key::items()];
        let result = self.inner.put_item(item).await;
        if may_have_changed(&result, |_| true) {
            self.invalidate(CacheEntity::Item, &keys).await;
        }
        result
    }

    async fn delete_item(&self, key: &str) -> Result<bool, StoreError> {
        let result = self.inner.delete_item(key).await;
        if may_have_changed(&result, |deleted| *deleted) {
            self.invalidate(CacheEntity::Item, &[Key::item(key), Key::items()])
                .await;
        }
        result
    }

    fn counts(&self) -> Counts {
        self.inner.counts()
    }

    /// The store's readiness alone: a cache that fails only costs latency.
    fn unavailable(&self) -> Option<NotReady> {
        self.inner.unavailable()
    }
}

/// What can be cached: as JSON, the shape the API answers with.
trait Cached: Sized {
    /// The JSON to store, or `None` when there is nothing to cache (an absent record).
    fn encode(&self) -> Option<Vec<u8>>;
    /// The value back from its JSON.
    fn decode(json: &[u8]) -> serde_json::Result<Self>;
}

impl<T: serde::Serialize + serde::de::DeserializeOwned> Cached for Option<T> {
    fn encode(&self) -> Option<Vec<u8>> {
        self.as_ref()
            .and_then(|value| serde_json::to_vec(value).ok())
    }

    fn decode(json: &[u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(json).map(Some)
    }
}

impl<T: serde::Serialize + serde::de::DeserializeOwned> Cached for Arc<Snapshot<T>> {
    fn encode(&self) -> Option<Vec<u8>> {
        serde_json::to_vec(&self[..]).ok()
    }

    fn decode(json: &[u8]) -> serde_json::Result<Self> {
        serde_json::from_slice::<Vec<T>>(json).map(Snapshot::shared)
    }
}

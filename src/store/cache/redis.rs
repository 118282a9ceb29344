//! The cache's three Redis round trips — look up, fill, invalidate — each bounded
//! by `--cache-timeout`, traced as a CLIENT span and measured in
//! `db_client_operation_duration_seconds{db_system_name="redis"}`. A failure here
//! is never the request's: the caller counts it and goes to PostgreSQL.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ConnectionAddr, RedisError, Script};

use super::keys::Key;
use crate::telemetry::Metrics;
use crate::telemetry::db::DbTelemetry;
use crate::telemetry::labels::CacheEntity;

/// How long a key's generation outlives its last write. A fill compares the
/// generation it read before querying PostgreSQL with the current one; were the
/// generation to expire between a write and that comparison, a stale fill could
/// pass. A read lasts at most `--request-timeout`, far under an hour.
const GENERATION_TTL: Duration = Duration::from_secs(3600);

/// Stores `ARGV[2]` under `KEYS[1]` for `ARGV[3]` ms, only if `KEYS[2]` (the
/// generation) still holds `ARGV[1]` (what the reader saw before it queried
/// PostgreSQL; "" for none): a write since then changed the generation, and the
/// value read may be older than that write.
const FILL: &str = r"
if (redis.call('GET', KEYS[2]) or '') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0";

/// For each (value, generation) pair of `KEYS`: a new generation (`ARGV[1]`, a
/// random token: never one a reader saw before), then the value deleted. Atomic,
/// so no reader sees the deletion without the new generation.
const INVALIDATE: &str = r"
for i = 1, #KEYS, 2 do
  redis.call('SET', KEYS[i + 1], ARGV[1], 'PX', ARGV[2])
  redis.call('DEL', KEYS[i])
end
return 1";

/// Why the Redis URL cannot be used: the client's reason.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct RedisUrlError(#[from] RedisError);

/// What a lookup found.
#[derive(Debug)]
pub(super) enum Lookup {
    /// The cached JSON, and the key's generation (to replace a value that turns
    /// out unreadable, as after a miss).
    Hit(Vec<u8>, String),
    /// Nothing cached; the key's generation as read with the miss ("" for none).
    Miss(String),
    /// Redis failed or did not answer in time.
    Failed,
}

/// Why a command failed, as `error.type`.
enum Failure {
    Timeout,
    Redis(RedisError),
}

/// One multiplexed connection to Redis that reconnects by itself, and the
/// telemetry of its commands.
pub(super) struct Redis {
    client: Client,
    config: ConnectionManagerConfig,
    /// Made on first use, inside the runtime (the manager spawns a task).
    connection: OnceLock<ConnectionManager>,
    timeout: Duration,
    ttl_ms: u64,
    fill: Script,
    invalidate: Script,
    telemetry: DbTelemetry,
    pub(super) metrics: Arc<Metrics>,
}

impl Redis {
    /// A client of `url` whose commands each take at most `timeout`, caching for `ttl`.
    pub(super) fn new(
        url: &str,
        ttl: Duration,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, RedisUrlError> {
        let client = Client::open(url)?;
        let server = match client.get_connection_info().addr() {
            ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
            _ => (String::new(), 0),
        };
        // Each command gives up at `timeout` on its own (below). One connection
        // attempt per failure, no retry loop: a command that finds the connection lost
        // starts a new attempt, so while Redis refuses connections commands fail at
        // once instead of waiting out a backoff, and a Redis back on its feet is used
        // by the next command. An unanswered connect is cut after a second.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout.max(Duration::from_secs(1))))
            .set_number_of_retries(0);
        metrics.cache_start();
        Ok(Self {
            client,
            config,
            connection: OnceLock::new(),
            timeout,
            ttl_ms: millis(ttl),
            fill: Script::new(FILL),
            invalidate: Script::new(INVALIDATE),
            telemetry: DbTelemetry::redis(&metrics, server),
            metrics,
        })
    }

    /// The cached value of `key` and its generation, in one round trip.
    pub(super) async fn lookup(&self, key: &Key) -> Lookup {
        let mut cmd = redis::cmd("MGET");
        cmd.arg(&key.value).arg(&key.generation);
        let found = self
            .run("MGET", async |mut conn: ConnectionManager| {
                cmd.query_async::<(Option<Vec<u8>>, Option<String>)>(&mut conn)
                    .await
            })
            .await;
        match found {
            Ok((Some(json), generation)) => Lookup::Hit(json, generation.unwrap_or_default()),
            Ok((None, generation)) => Lookup::Miss(generation.unwrap_or_default()),
            Err(()) => Lookup::Failed,
        }
    }

    /// Stores `json` under `key` unless a write changed its generation since it
    /// was `seen`. An error is counted in `pulse_cache_fill_failures_total`.
    pub(super) async fn fill(&self, entity: CacheEntity, key: &Key, seen: &str, json: &[u8]) {
        let mut invocation = self.fill.key(&key.value);
        invocation
            .key(&key.generation)
            .arg(seen)
            .arg(json)
            .arg(self.ttl_ms);
        let stored = self
            .run("EVALSHA", async |mut conn: ConnectionManager| {
                invocation.invoke_async::<i64>(&mut conn).await
            })
            .await;
        if stored.is_err() {
            self.metrics.cache_fill_failure(entity);
        }
    }

    /// Drops `keys` and gives each a new generation, so no fill of a value read
    /// before this moment can store it. False when Redis failed: the old value
    /// may then be served until the TTL ends.
    pub(super) async fn invalidate(&self, keys: &[Key]) -> bool {
        let token = format!("{:016x}", rand::random::<u64>());
        let mut invocation = self.invalidate.prepare_invoke();
        for key in keys {
            invocation.key(&key.value).key(&key.generation);
        }
        invocation.arg(token).arg(millis(GENERATION_TTL));
        self.run("EVALSHA", async |mut conn: ConnectionManager| {
            invocation.invoke_async::<i64>(&mut conn).await
        })
        .await
        .is_ok()
    }

    /// Runs one command within the timeout, as a CLIENT span and a duration.
    async fn run<T>(
        &self,
        operation: &'static str,
        command: impl AsyncFnOnce(ConnectionManager) -> Result<T, RedisError>,
    ) -> Result<T, ()> {
        let span = self.telemetry.start_command(operation);
        let started = Instant::now();
        let outcome = match self.connection() {
            Ok(conn) => match tokio::time::timeout(self.timeout, command(conn)).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(err)) => Err(Failure::Redis(err)),
                Err(_) => Err(Failure::Timeout),
            },
            Err(err) => Err(Failure::Redis(err)),
        };
        let error = outcome.as_ref().err().map(|failure| match failure {
            Failure::Timeout => "timeout",
            Failure::Redis(err) if err.is_io_error() || err.is_connection_dropped() => "connection",
            Failure::Redis(_) => "redis",
        });
        self.telemetry
            .end_command(span, operation, started.elapsed(), error);
        outcome.map_err(|failure| match failure {
            Failure::Timeout => {
                tracing::debug!(operation, timeout = ?self.timeout, "redis command timed out");
            }
            Failure::Redis(err) => {
                tracing::debug!(operation, error = %err, "redis command failed");
            }
        })
    }

    /// The connection manager, made on first use.
    fn connection(&self) -> Result<ConnectionManager, RedisError> {
        if let Some(conn) = self.connection.get() {
            return Ok(conn.clone());
        }
        let made =
            ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())?;
        // Two first requests at once may both make one; the first stored wins.
        Ok(self.connection.get_or_init(|| made).clone())
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

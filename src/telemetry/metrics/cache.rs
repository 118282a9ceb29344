//! The Redis cache's own series: lookups by result, and the fills and
//! invalidations that failed. Its commands' durations are in the database
//! histogram (`telemetry/db.rs`, `db_system_name="redis"`).

use opentelemetry::metrics::{Counter, Meter};

use super::super::labels::{CacheEntity, CacheResult};

/// `pulse_cache_requests_total`, `pulse_cache_fill_failures_total`,
/// `pulse_cache_invalidation_failures_total`.
pub struct CacheMetrics {
    requests: Counter<u64>,
    fill_failures: Counter<u64>,
    invalidation_failures: Counter<u64>,
}

impl CacheMetrics {
    /// Creates its instruments on `meter`; no series until [`CacheMetrics::start`]
    /// (a Pulse without `--redis-url` exports none).
    pub(super) fn new(meter: &Meter) -> Self {
        Self {
            requests: meter
                .u64_counter("pulse_cache_requests")
                .with_description("Cache lookups of the PostgreSQL store's reads, by entity and result (hit, miss, error)")
                .build(),
            fill_failures: meter
                .u64_counter("pulse_cache_fill_failures")
                .with_description("Records read from PostgreSQL after a miss that could not be stored in Redis, by entity")
                .build(),
            invalidation_failures: meter
                .u64_counter("pulse_cache_invalidation_failures")
                .with_description("Writes whose cache invalidation failed (the old value may be served until the TTL), by entity")
                .build(),
        }
    }

    /// Every series at zero, once the cache exists, so `increase()` sees the first
    /// hit or failure.
    pub(super) fn start(&self) {
        let metrics = self;
        for entity in CacheEntity::ALL {
            for result in CacheResult::ALL {
                metrics.requests.add(0, &[entity.label(), result.label()]);
            }
            metrics.fill_failures.add(0, &[entity.label()]);
        }
        for entity in [CacheEntity::User, CacheEntity::Item] {
            metrics.invalidation_failures.add(0, &[entity.label()]);
        }
    }

    pub(super) fn request(&self, entity: CacheEntity, result: CacheResult) {
        self.requests.add(1, &[entity.label(), result.label()]);
    }

    pub(super) fn fill_failure(&self, entity: CacheEntity) {
        self.fill_failures.add(1, &[entity.label()]);
    }

    pub(super) fn invalidation_failure(&self, entity: CacheEntity) {
        self.invalidation_failures.add(1, &[entity.label()]);
    }
}

//! The exported names and bucket boundaries that dashboards, rules, the
//! exemplar store and the encoders all rely on: at the bottom of the telemetry
//! modules, so each of them can read these without importing another.

/// The exported name of the request duration histogram, the one with exemplars.
pub const HTTP_DURATION_FAMILY: &str = "http_request_duration_seconds";

/// The exported name of the request counter (`method`, `route`, `status`).
pub const HTTP_REQUESTS_FAMILY: &str = "http_requests_total";

/// The exported name of the backend calls' duration histogram.
pub const CLIENT_DURATION_FAMILY: &str = "http_client_request_duration_seconds";

/// The exported name of the database operations' duration histogram.
pub const DB_DURATION_FAMILY: &str = "db_client_operation_duration_seconds";

/// Latency buckets in seconds. A latency SLO's threshold must be one of them.
pub const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Body size buckets in bytes: 100 B to 10 MiB, roughly ×4 apart.
pub const SIZE_BUCKETS: [f64; 9] = [
    100.0,
    1_000.0,
    4_000.0,
    16_000.0,
    64_000.0,
    256_000.0,
    1_048_576.0,
    4_194_304.0,
    10_485_760.0,
];

//! Every integration suite in one test binary: each binary links the whole of
//! `pulse` (kube, sqlx, OpenTelemetry), so one link instead of sixteen is most of
//! what `cargo test` used to spend. A suite is a module; run one with
//! `cargo test --test integration api::` (docs/testing.md).
//!
//! No suite installs process-wide state (a global subscriber, environment
//! variables): they share the process, and libtest runs them side by side.

mod common;
#[path = "../support/server.rs"]
mod server;

mod api;
mod backend;
mod binary;
mod cache;
mod e2e;
mod http_edges;
mod kube;
mod limits;
mod load;
mod logs;
mod metrics;
mod otlp;
mod page;
mod postgres;
mod protobuf;
mod serve;
mod settings;
mod shutdown;
mod soak;

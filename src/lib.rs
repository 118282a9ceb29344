//! Pulse: a web service that is observable out of the box.
//!
//! Modules depend on each other one way, from the bottom up:
//! [`config`] (flags, defaults, rules) ← [`telemetry`] (metrics, traces, logs) and
//! `store` ← [`settings`] (what changes at run time) ← [`cluster`] (the runtime
//! ConfigMap, pod Events), [`backend`] (the downstream Pulse) and [`state`] ← `middleware` and [`routes`] ← [`server`]
//! (serving and draining) ← [`app`] (the one place the application is assembled,
//! then run) ← [`cli`] and the binary. [`causes`] (an error on one line) depends on nothing.

pub mod app;
pub mod backend;
pub mod causes;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod doctor;
mod error;
mod extract;
pub mod load;
mod middleware;
pub mod probe;
mod process;
mod readiness;
pub mod routes;
pub mod server;
pub mod settings;
pub mod state;
mod store;
mod sync;
pub mod telemetry;

use serde::Serialize;
use utoipa::ToSchema;

/// Version and source revision of this binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct BuildInfo {
    /// Crate version (`Cargo.toml`).
    #[schema(example = "0.1.0")]
    pub version: &'static str,
    /// Source revision (see `build.rs`), or `unknown`.
    #[schema(example = "3f2c1a9b7d10")]
    pub revision: &'static str,
}

impl BuildInfo {
    /// The build information compiled into this binary.
    pub const fn current() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION"),
            revision: env!("PULSE_REVISION"),
        }
    }
}

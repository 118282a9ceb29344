//! Pulse: a web service that is observable out of the box.
//!
//! The layout follows the request path: [`config`] parses flags, [`server`] runs
//! the process and its shutdown sequence, [`routes`] maps paths to handlers,
//! [`middleware`] wraps them (telemetry, timeout, faults), handlers use
//! [`store`] through a trait, and [`telemetry`] owns metrics, traces and logs.
//! [`settings`] holds what can change at run time, and [`cluster`] changes it from
//! a ConfigMap and publishes Kubernetes Events.

pub mod cluster;
pub mod config;
pub mod error;
pub mod extract;
pub mod load;
pub mod middleware;
pub mod probe;
pub mod process;
pub mod readiness;
pub mod routes;
pub mod server;
pub mod settings;
pub mod state;
pub mod store;
pub mod telemetry;

/// Version and source revision of this binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildInfo {
    /// Crate version (`Cargo.toml`).
    pub version: &'static str,
    /// Source revision (see `build.rs`), or `unknown`.
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

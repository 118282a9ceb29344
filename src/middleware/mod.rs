//! Cross-cutting request handling, outermost first:
//! [`telemetry`] (span, metrics, access log) → [`drain`] (`Connection: close`
//! while shutting down) → [`conformance`] (`Host`, announced body size) →
//! [`timeout`] → [`overload`] → [`fault`] (the last two on API routes only).
//!
//! Connection-level limits (the header read timeout) live in `server::connections`.

pub mod conformance;
pub mod drain;
pub mod fault;
pub mod overload;
pub mod telemetry;
pub mod timeout;

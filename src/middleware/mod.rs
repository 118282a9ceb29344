//! Cross-cutting request handling, outermost first:
//! [`telemetry`] (span, metrics, access log) → [`timeout`] → [`fault`] (API routes only).

pub mod fault;
pub mod telemetry;
pub mod timeout;

//! The readiness model behind `/readyz`.
//!
//! Readiness is one atomic: handlers read it on every probe, the shutdown task
//! and `/readyz/{enable,disable}` write it. Shutting down is terminal: once the
//! process is draining, nothing can make it ready again.

use std::sync::atomic::{AtomicU8, Ordering};

use serde::Serialize;
use utoipa::ToSchema;

/// Why the service should not receive traffic: every reason `/readyz` and
/// `/health` can give, from this module, the store and the runtime settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum NotReady {
    /// Still initialising.
    #[serde(rename = "starting")]
    Starting,
    /// Taken out of rotation by `POST /readyz/disable`.
    #[serde(rename = "disabled")]
    Disabled,
    /// A termination signal arrived; draining.
    #[serde(rename = "shutting down")]
    ShuttingDown,
    /// The PostgreSQL store cannot reach its database.
    #[serde(rename = "database unavailable")]
    DatabaseUnavailable,
    /// The runtime settings say `force_unready`.
    #[serde(rename = "forced unready by runtime settings")]
    ForcedUnready,
}

impl NotReady {
    /// The reason as written in answers and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Disabled => "disabled",
            Self::ShuttingDown => "shutting down",
            Self::DatabaseUnavailable => "database unavailable",
            Self::ForcedUnready => "forced unready by runtime settings",
        }
    }
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the service is, or is not, ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ReadyState {
    /// Still initialising; not yet serving.
    Starting = 0,
    /// Accepting traffic.
    Ready = 1,
    /// Taken out of rotation by `POST /readyz/disable`.
    Disabled = 2,
    /// A termination signal arrived; draining.
    ShuttingDown = 3,
}

impl ReadyState {
    /// The reason shown in a 503 body, or `None` when ready.
    pub fn not_ready_reason(self) -> Option<NotReady> {
        match self {
            Self::Ready => None,
            Self::Starting => Some(NotReady::Starting),
            Self::Disabled => Some(NotReady::Disabled),
            Self::ShuttingDown => Some(NotReady::ShuttingDown),
        }
    }

    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Ready,
            2 => Self::Disabled,
            3 => Self::ShuttingDown,
            _ => Self::Starting,
        }
    }
}

/// Shared readiness flag.
#[derive(Debug)]
pub struct Readiness(AtomicU8);

impl Default for Readiness {
    fn default() -> Self {
        Self(AtomicU8::new(ReadyState::Starting as u8))
    }
}

impl Readiness {
    /// The current state.
    pub fn get(&self) -> ReadyState {
        ReadyState::from_u8(self.0.load(Ordering::Acquire))
    }

    /// Marks the service ready, unless it is shutting down. Returns the new state.
    pub fn set_ready(&self) -> ReadyState {
        self.transition(ReadyState::Ready)
    }

    /// Takes the service out of rotation, unless it is shutting down.
    pub fn disable(&self) -> ReadyState {
        self.transition(ReadyState::Disabled)
    }

    /// Enters the terminal shutting-down state.
    pub fn shut_down(&self) {
        self.0
            .store(ReadyState::ShuttingDown as u8, Ordering::Release);
    }

    /// Whether a termination signal has been received.
    pub fn is_shutting_down(&self) -> bool {
        self.get() == ReadyState::ShuttingDown
    }

    fn transition(&self, to: ReadyState) -> ReadyState {
        let result = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                (current != ReadyState::ShuttingDown as u8).then_some(to as u8)
            });
        match result {
            Ok(_) => to,
            Err(current) => ReadyState::from_u8(current),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_not_ready_and_toggles() {
        let r = Readiness::default();
        assert_eq!(r.get().not_ready_reason(), Some(NotReady::Starting));
        assert_eq!(r.set_ready(), ReadyState::Ready);
        assert_eq!(r.disable(), ReadyState::Disabled);
        assert_eq!(r.set_ready(), ReadyState::Ready);
    }

    #[test]
    fn each_reason_is_written_as_its_serde_name() {
        for reason in [
            NotReady::Starting,
            NotReady::Disabled,
            NotReady::ShuttingDown,
            NotReady::DatabaseUnavailable,
            NotReady::ForcedUnready,
        ] {
            let json = serde_json::to_value(reason).unwrap();
            assert_eq!(json, reason.as_str());
        }
    }

    #[test]
    fn shutting_down_is_terminal() {
        let r = Readiness::default();
        r.set_ready();
        r.shut_down();
        assert_eq!(r.set_ready(), ReadyState::ShuttingDown);
        assert_eq!(r.disable(), ReadyState::ShuttingDown);
        assert!(r.is_shutting_down());
    }
}

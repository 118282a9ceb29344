//! Why a request got no answer: the cause a failed request is counted under, so
//! a run against a dead or misbehaving target says what went wrong (connection
//! refused, timeout, reset) instead of only how often.

use std::error::Error as _;
use std::io::ErrorKind;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// The cause of a request without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Nothing listens on the target's port (`ECONNREFUSED`).
    ConnectionRefused,
    /// No complete answer within `--timeout`.
    Timeout,
    /// The peer reset the connection (`ECONNRESET`, an aborted connection, a broken pipe).
    ConnectionReset,
    /// The peer closed the connection before the answer was complete.
    ConnectionClosed,
    /// Any other connection failure: the name does not resolve, the network is unreachable...
    Connect,
    /// Anything else (an unreadable answer, a body cut short...).
    Other,
}

impl Failure {
    /// Every cause, in the order the summary lists them.
    pub const ALL: [Self; 6] = [
        Self::ConnectionRefused,
        Self::Timeout,
        Self::ConnectionReset,
        Self::ConnectionClosed,
        Self::Connect,
        Self::Other,
    ];

    /// The words the text summary uses.
    pub fn describe(self) -> &'static str {
        match self {
            Self::ConnectionRefused => "connection refused",
            Self::Timeout => "timeout",
            Self::ConnectionReset => "connection reset",
            Self::ConnectionClosed => "closed before the answer",
            Self::Connect => "cannot connect",
            Self::Other => "other",
        }
    }

    /// The cause of `err`, read from its chain of sources (the client's error wraps
    /// hyper's, which wraps the OS's).
    pub fn of(err: &reqwest::Error) -> Self {
        if err.is_timeout() {
            return Self::Timeout;
        }
        let mut source = err.source();
        while let Some(current) = source {
            if let Some(io) = current.downcast_ref::<std::io::Error>() {
                match io.kind() {
                    ErrorKind::ConnectionRefused => return Self::ConnectionRefused,
                    ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe => return Self::ConnectionReset,
                    ErrorKind::TimedOut => return Self::Timeout,
                    ErrorKind::UnexpectedEof => return Self::ConnectionClosed,
                    _ => {}
                }
            }
            if let Some(hyper) = current.downcast_ref::<hyper::Error>() {
                if hyper.is_incomplete_message() {
                    return Self::ConnectionClosed;
                }
                if hyper.is_timeout() {
                    return Self::Timeout;
                }
            }
            source = current.source();
        }
        if err.is_connect() {
            Self::Connect
        } else {
            Self::Other
        }
    }
}

/// Failed requests counted by cause, plus the first failure's full message.
#[derive(Debug, Default)]
pub struct FailureStats {
    counts: [AtomicU64; Failure::ALL.len()],
    first: OnceLock<String>,
}

impl FailureStats {
    /// One failed request; `message` is read only for the run's first failure.
    pub fn record(&self, cause: Failure, message: impl FnOnce() -> String) {
        self.counts[cause as usize].fetch_add(1, Ordering::Relaxed);
        if self.first.get().is_none() {
            let _ = self.first.set(message());
        }
    }

    /// Failed requests, all causes together.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The counts by cause, as the summary shows them.
    pub fn counts(&self) -> FailureCounts {
        let count = |cause: Failure| self.counts[cause as usize].load(Ordering::Relaxed);
        FailureCounts {
            connection_refused: count(Failure::ConnectionRefused),
            timeout: count(Failure::Timeout),
            connection_reset: count(Failure::ConnectionReset),
            connection_closed: count(Failure::ConnectionClosed),
            connect: count(Failure::Connect),
            other: count(Failure::Other),
        }
    }

    /// The first failure's message, with its causes.
    pub fn first(&self) -> Option<String> {
        self.first.get().cloned()
    }
}

/// Requests without an answer, by cause (`failures` in `--output json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FailureCounts {
    /// Nothing listened on the port.
    pub connection_refused: u64,
    /// No complete answer within `--timeout`.
    pub timeout: u64,
    /// The connection was reset.
    pub connection_reset: u64,
    /// The connection was closed before the answer was complete.
    pub connection_closed: u64,
    /// Any other failure to connect (name resolution, an unreachable network...).
    pub connect: u64,
    /// Anything else.
    pub other: u64,
}

impl FailureCounts {
    /// The count of one cause.
    pub fn of(&self, cause: Failure) -> u64 {
        match cause {
            Failure::ConnectionRefused => self.connection_refused,
            Failure::Timeout => self.timeout,
            Failure::ConnectionReset => self.connection_reset,
            Failure::ConnectionClosed => self.connection_closed,
            Failure::Connect => self.connect,
            Failure::Other => self.other,
        }
    }
}

impl std::fmt::Display for FailureCounts {
    /// The causes that occurred, most frequent first: `connection refused 50  timeout 2`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut seen: Vec<(Failure, u64)> = Failure::ALL
            .iter()
            .map(|&cause| (cause, self.of(cause)))
            .filter(|&(_, n)| n > 0)
            .collect();
        seen.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        for (i, (cause, n)) in seen.into_iter().enumerate() {
            let gap = if i == 0 { "" } else { "  " };
            write!(f, "{gap}{} {n}", cause.describe())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_cause_and_the_first_message() {
        let stats = FailureStats::default();
        for _ in 0..3 {
            stats.record(Failure::ConnectionRefused, || "refused".to_owned());
        }
        stats.record(Failure::Timeout, || {
            unreachable!("only the first message is made")
        });
        assert_eq!(stats.total(), 4);
        let counts = stats.counts();
        assert_eq!((counts.connection_refused, counts.timeout), (3, 1));
        assert_eq!(counts.to_string(), "connection refused 3  timeout 1");
        assert_eq!(stats.first().as_deref(), Some("refused"));
        assert_eq!(FailureCounts::default().to_string(), "");
    }
}

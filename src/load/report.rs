//! Counting what happened and summarising it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::failure::{Failure, FailureCounts, FailureStats};

/// Shared counters, updated by every request task.
#[derive(Debug)]
pub struct Stats {
    /// Answers by status class, index 0..5 for 1xx..5xx.
    classes: [AtomicU64; 5],
    /// Requests with no answer (connection error, timeout), by cause.
    failures: FailureStats,
    /// Slots that found every connection busy and were skipped.
    missed: AtomicU64,
    /// Latency in microseconds, from the scheduled start to the answer.
    latency: Mutex<Histogram<u64>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            classes: Default::default(),
            failures: FailureStats::default(),
            missed: AtomicU64::new(0),
            // 1 µs to 1 hour at 3 significant digits: these bounds cannot fail.
            latency: Mutex::new(
                Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap_or_else(|_| unreachable!()),
            ),
        }
    }
}

impl Stats {
    /// One answer with `status`, `latency` after its slot.
    pub fn answered(&self, status: u16, latency: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.classes[class].fetch_add(1, Ordering::Relaxed);
        self.record(latency);
    }

    /// One request without an answer, for `cause`; `message` (the error with its
    /// causes) is read only for the run's first failure.
    pub fn failed(&self, cause: Failure, message: impl FnOnce() -> String, latency: Duration) {
        self.failures.record(cause, message);
        self.record(latency);
    }

    /// One slot skipped because `--concurrency` requests were already in flight.
    pub fn missed(&self) {
        self.missed.fetch_add(1, Ordering::Relaxed);
    }

    fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let mut histogram = crate::sync::lock(&self.latency);
        histogram.saturating_record(micros.max(1));
    }

    /// Requests that finished (answered or failed).
    pub fn completed(&self) -> u64 {
        self.classes
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum::<u64>()
            + self.failures.total()
    }

    /// The summary of a run that sent for `elapsed`.
    pub fn summary(
        &self,
        elapsed: Duration,
        target_rate: f64,
        max_error_rate: Option<f64>,
    ) -> Summary {
        let class = |i: usize| self.classes[i].load(Ordering::Relaxed);
        let failed = self.failures.total();
        let requests = self.completed();
        let errors = class(4) + failed;
        let error_rate = if requests == 0 {
            0.0
        } else {
            errors as f64 / requests as f64
        };
        let outcome = Outcome::of(requests, failed, error_rate, max_error_rate);
        let histogram = crate::sync::lock(&self.latency);
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        let seconds = elapsed.as_secs_f64();
        Summary {
            requests,
            duration_seconds: seconds,
            target_rate,
            achieved_rate: if seconds > 0.0 {
                requests as f64 / seconds
            } else {
                0.0
            },
            missed_slots: self.missed.load(Ordering::Relaxed),
            status: StatusCounts {
                informational: class(0),
                success: class(1),
                redirect: class(2),
                client_error: class(3),
                server_error: class(4),
                failed,
            },
            latency_ms: Latencies {
                p50: ms(0.50),
                p90: ms(0.90),
                p99: ms(0.99),
                max: histogram.max() as f64 / 1000.0,
            },
            failures: self.failures.counts(),
            first_failure: self.failures.first(),
            error_rate,
            max_error_rate,
            outcome,
            passed: outcome == Outcome::Passed,
        }
    }
}

/// How a run ended, and the exit code it gives `pulse load`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Answers came back, and the error rate stayed within `--max-error-rate` (exit 0).
    Passed,
    /// The error rate exceeded `--max-error-rate` (exit 1).
    ErrorRateExceeded,
    /// No request got an answer: the target is down or unreachable (exit 3), with or
    /// without `--max-error-rate`.
    NoAnswer,
}

impl Outcome {
    /// `pulse load`'s exit code for this outcome (2 is bad arguments).
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Passed => 0,
            Self::ErrorRateExceeded => 1,
            Self::NoAnswer => 3,
        }
    }

    fn of(requests: u64, failed: u64, error_rate: f64, max_error_rate: Option<f64>) -> Self {
        if requests == failed {
            Self::NoAnswer
        } else if max_error_rate.is_some_and(|max| error_rate > max) {
            Self::ErrorRateExceeded
        } else {
            Self::Passed
        }
    }
}

/// Answers by status class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusCounts {
    /// 1xx.
    #[serde(rename = "1xx")]
    pub informational: u64,
    /// 2xx.
    #[serde(rename = "2xx")]
    pub success: u64,
    /// 3xx.
    #[serde(rename = "3xx")]
    pub redirect: u64,
    /// 4xx: expected in the default mix (it sends some bad requests on purpose).
    #[serde(rename = "4xx")]
    pub client_error: u64,
    /// 5xx.
    #[serde(rename = "5xx")]
    pub server_error: u64,
    /// No answer: connection errors and timeouts (by cause in [`Summary::failures`]).
    pub failed: u64,
}

/// Latency percentiles, in milliseconds, measured from each request's scheduled slot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latencies {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

/// What `pulse load` prints at the end (`--output json` prints exactly this).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Requests that finished.
    pub requests: u64,
    /// Length of the sending window.
    pub duration_seconds: f64,
    /// `--rate` (0: as fast as possible).
    pub target_rate: f64,
    /// Requests per second actually completed over the window.
    pub achieved_rate: f64,
    /// Slots skipped because every connection was busy: the server fell behind.
    pub missed_slots: u64,
    /// Answers by status class.
    pub status: StatusCounts,
    /// Latency percentiles.
    pub latency_ms: Latencies,
    /// The requests without an answer, by cause.
    pub failures: FailureCounts,
    /// The first failed request's error with its causes, if any failed.
    pub first_failure: Option<String>,
    /// (5xx + failed) / requests.
    pub error_rate: f64,
    /// `--max-error-rate`, if given.
    pub max_error_rate: Option<f64>,
    /// How the run ended; it sets the exit code.
    pub outcome: Outcome,
    /// Whether the run passed (`outcome` is `passed`, exit 0): answers came back and
    /// the error rate stayed within `--max-error-rate`.
    pub passed: bool,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = if self.target_rate > 0.0 {
            format!("{:.0}/s target", self.target_rate)
        } else {
            "unlimited".to_owned()
        };
        writeln!(
            f,
            "requests  {} in {:.2}s: {:.1}/s achieved ({target}), {} missed slots",
            self.requests, self.duration_seconds, self.achieved_rate, self.missed_slots
        )?;
        let s = &self.status;
        writeln!(
            f,
            "status    2xx {}  3xx {}  4xx {}  5xx {}  failed {}",
            s.success, s.redirect, s.client_error, s.server_error, s.failed
        )?;
        if s.failed > 0 {
            writeln!(f, "failures  {}", self.failures)?;
            if let Some(first) = &self.first_failure {
                writeln!(f, "          first: {first}")?;
            }
        }
        let l = &self.latency_ms;
        writeln!(
            f,
            "latency   p50 {:.2}ms  p90 {:.2}ms  p99 {:.2}ms  max {:.2}ms",
            l.p50, l.p90, l.p99, l.max
        )?;
        write!(f, "errors    {:.2}% (5xx + failed", self.error_rate * 100.0)?;
        if let Some(max) = self.max_error_rate {
            write!(f, "; max {:.2}%", max * 100.0)?;
        }
        match (self.outcome, self.max_error_rate) {
            (Outcome::NoAnswer, _) => write!(f, "): NO ANSWER, no request was answered"),
            (Outcome::ErrorRateExceeded, _) => write!(f, "): EXCEEDED"),
            (Outcome::Passed, Some(_)) => write!(f, "): OK"),
            (Outcome::Passed, None) => write!(f, ")"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_rates_and_the_error_budget() {
        let stats = Stats::default();
        for _ in 0..90 {
            stats.answered(200, Duration::from_millis(2));
        }
        for _ in 0..5 {
            stats.answered(404, Duration::from_millis(1));
        }
        for _ in 0..4 {
            stats.answered(503, Duration::from_millis(9));
        }
        stats.failed(
            Failure::Timeout,
            || "timed out".to_owned(),
            Duration::from_secs(1),
        );
        stats.missed();
        let s = stats.summary(Duration::from_secs(2), 50.0, Some(0.04));
        assert_eq!(s.requests, 100);
        assert_eq!(
            (
                s.status.success,
                s.status.client_error,
                s.status.server_error,
                s.status.failed
            ),
            (90, 5, 4, 1)
        );
        assert_eq!(s.missed_slots, 1);
        assert!((s.error_rate - 0.05).abs() < 1e-9, "4xx are not errors");
        assert!(!s.passed);
        assert_eq!(s.achieved_rate, 50.0);
        assert!((s.latency_ms.p50 - 2.0).abs() < 0.01 && s.latency_ms.max >= 999.0);
        assert!(
            stats
                .summary(Duration::from_secs(2), 50.0, Some(0.05))
                .passed
        );
    }
}

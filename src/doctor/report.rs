//! What `pulse doctor` found: one [`Check`] per question, and how they are shown.

use std::fmt;

use serde::Serialize;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// What was checked works.
    Pass,
    /// What was checked is broken; `cause` says why.
    Fail,
    /// Not checked: nothing to check it against (say, no `--grafana`).
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Skip => "skip",
        }
    }
}

/// One question doctor asked, and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// A stable dotted name, such as `prometheus.target`.
    pub name: String,
    /// Pass, fail or skip.
    pub status: Status,
    /// What was seen.
    pub detail: String,
    /// For a failure, its cause in one line (what to fix); empty otherwise.
    pub cause: String,
}

impl Check {
    /// A passing check.
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(name, Status::Pass, detail, "")
    }

    /// A failing check with its cause.
    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        cause: impl Into<String>,
    ) -> Self {
        Self::new(name, Status::Fail, detail, cause)
    }

    /// A check that could not be made, and why.
    pub fn skip(name: impl Into<String>, why: impl Into<String>) -> Self {
        Self::new(name, Status::Skip, why, "")
    }

    fn new(
        name: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        cause: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            status,
            detail: detail.into(),
            cause: cause.into(),
        }
    }
}

/// Everything doctor checked, in order.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// The checks, in the order they were made.
    pub checks: Vec<Check>,
}

impl Report {
    /// True when no check failed (skips allowed).
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Fail)
    }

    /// Adds checks.
    pub fn extend(&mut self, checks: impl IntoIterator<Item = Check>) {
        self.checks.extend(checks);
    }
}

/// The table a person reads: one line per check, the cause under a failure.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for check in &self.checks {
            writeln!(
                f,
                "{:<4}  {:<width$}  {}",
                check.status.label(),
                check.name,
                check.detail
            )?;
            if !check.cause.is_empty() {
                writeln!(f, "{:<4}  {:<width$}  cause: {}", "", "", check.cause)?;
            }
        }
        let count = |s| self.checks.iter().filter(|c| c.status == s).count();
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            count(Status::Pass),
            count(Status::Fail),
            count(Status::Skip)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_fails_the_report_and_shows_its_cause() {
        let mut report = Report::default();
        report.extend([
            Check::pass("pulse.ready", "200"),
            Check::skip("grafana", "no --grafana"),
        ]);
        assert!(report.passed(), "skips do not fail a report");
        report.extend([Check::fail(
            "prometheus.target",
            "down",
            "connection refused",
        )]);
        assert!(!report.passed());
        let table = report.to_string();
        assert!(table.contains("FAIL  prometheus.target  down"), "{table}");
        assert!(table.contains("cause: connection refused"), "{table}");
        assert!(table.ends_with("1 passed, 1 failed, 1 skipped"), "{table}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["checks"][2]["status"], "fail");
        assert_eq!(json["checks"][1]["cause"], "");
    }
}

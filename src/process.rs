//! Figures about this process for `GET /health`, read from `/proc`.
//!
//! `/metrics` gets the same figures from the `prometheus` process collector;
//! this is the JSON view of them for people and simple health checkers.

use serde::Serialize;
use utoipa::ToSchema;

/// A snapshot of the process's resource use. Fields are `None` where the
/// platform does not expose them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProcessStats {
    /// Process id.
    pub pid: u32,
    /// Resident memory in bytes.
    pub rss_bytes: Option<u64>,
    /// User plus system CPU time in seconds.
    pub cpu_seconds: Option<f64>,
    /// OS threads.
    pub threads: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
}

impl ProcessStats {
    /// Reads the current figures; never fails (missing figures are `None`).
    pub fn read() -> Self {
        let mut stats = Self {
            pid: std::process::id(),
            rss_bytes: None,
            cpu_seconds: None,
            threads: None,
            open_fds: None,
        };
        #[cfg(target_os = "linux")]
        if let Ok(me) = procfs::process::Process::myself() {
            if let Ok(stat) = me.stat() {
                let page = procfs::page_size();
                let ticks = procfs::ticks_per_second();
                stats.rss_bytes = Some(stat.rss.saturating_mul(page));
                if ticks > 0 {
                    stats.cpu_seconds = Some((stat.utime + stat.stime) as f64 / ticks as f64);
                }
                stats.threads = u64::try_from(stat.num_threads).ok();
            }
            stats.open_fds = me.fd_count().ok().and_then(|n| u64::try_from(n).ok());
        }
        stats
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn reads_live_figures() {
        let stats = super::ProcessStats::read();
        assert_eq!(stats.pid, std::process::id());
        assert!(stats.rss_bytes.unwrap_or(0) > 0);
        assert!(stats.threads.unwrap_or(0) >= 1);
        assert!(stats.open_fds.unwrap_or(0) >= 3);
    }
}

//! Durations as Prometheus writes them, and the ranges a PromQL query reads.

use std::time::Duration;

/// Every range a PromQL query reads: `[30d]`, and the range of a subquery `[30d:1h]`.
pub fn ranges(query: &str) -> Vec<Duration> {
    query
        .split('[')
        .skip(1)
        .filter_map(|rest| rest.split([']', ':']).next())
        .filter_map(duration)
        .collect()
}

/// A duration as Prometheus writes one: its largest whole unit (`30d`, `90m`, `15s`).
pub fn format(duration: Duration) -> String {
    let secs = duration.as_secs();
    let unit = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")]
        .into_iter()
        .find(|(size, _)| secs >= *size && secs.is_multiple_of(*size));
    match unit {
        Some((size, unit)) => format!("{}{unit}", secs / size),
        None => format!("{}ms", duration.as_millis()),
    }
}

/// A Prometheus duration (`30d`, `1h30m`, `1y`): units ms, s, m, h, d, w and y (365 days).
pub fn duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let mut total = 0u64;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let millis = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return None,
        };
        total = total.checked_add(number.checked_mul(millis)?)?;
        rest = &rest[unit_len..];
    }
    (!text.is_empty()).then(|| Duration::from_millis(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_prometheus_durations_and_the_ranges_of_a_query() {
        assert_eq!(duration("30d"), Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(duration("1h30m"), Some(Duration::from_secs(5_400)));
        assert_eq!(duration("2GiB"), None);
        assert_eq!(duration(""), None);
        assert_eq!(format(Duration::from_secs(30 * 86_400)), "30d");
        assert_eq!(format(Duration::from_secs(5_400)), "90m");
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        let query = "min_over_time(timestamp(up)[30d:1h]) or rate(x[5m])";
        assert_eq!(
            ranges(query),
            [Duration::from_secs(30 * 86_400), Duration::from_secs(300)]
        );
    }
}

//! The validation rules of Pulse's settings, each written once.
//!
//! The command line (clap value parsers), the runtime settings (the runtime
//! ConfigMap and `PUT /admin/runtime`) and the OpenAPI document all use these, so a
//! value accepted at start is accepted at run time and the other way round. Each
//! rule returns the sentence a user sees; clap adds the flag's name, the runtime
//! settings the key's.

use std::time::Duration;

use tracing_subscriber::EnvFilter;

/// Largest fault delay (`--fault-delay-max`, `fault_delay_max`): beyond it a
/// faulted request would hit the request timeout anyway.
pub const MAX_FAULT_DELAY: Duration = Duration::from_secs(60);

/// [`MAX_FAULT_DELAY`] as written in messages and documents.
pub const MAX_FAULT_DELAY_TEXT: &str = "60s";

/// Largest byte limit (`--max-body-bytes`, `--max-store-bytes`): 1 GiB, far above
/// any sane limit, low enough to catch a mistyped exponent.
pub const MAX_BYTES: usize = 1 << 30;

/// Largest `--max-concurrency`: a million in-flight requests is far past what one
/// process serves well.
pub const MAX_CONCURRENCY: usize = 1_000_000;

/// Largest `--max-connections`: far past the descriptors one process is given.
pub const MAX_CONNECTIONS: usize = 1_000_000;

/// Why a value breaks a rule: the sentence a user sees (clap puts the flag's name
/// before it, the runtime settings the key's).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    /// Not a duration at all.
    #[error("{0}; expected a duration such as 250ms, 5s or 1m")]
    Duration(#[from] humantime::DurationError),
    /// Zero where a duration must be positive.
    #[error("must be greater than 0 (e.g. 30s)")]
    NotPositive,
    /// A fault delay above [`MAX_FAULT_DELAY`].
    #[error("{} is above the maximum of {MAX_FAULT_DELAY_TEXT}", humantime::format_duration(*.0))]
    FaultDelayTooLong(Duration),
    /// Not a fraction from 0 to 1.
    #[error("must be a number between 0 and 1 (0.05 = 5%)")]
    Rate,
    /// Not an integer from 1 to the maximum.
    #[error("must be an integer between 1 and {max}")]
    Count {
        /// The largest accepted.
        max: usize,
    },
    /// Not a `--max-store-bytes`.
    #[error("must be an integer between 0 (no limit, PostgreSQL only) and {MAX_BYTES}")]
    StoreBytes,
    /// A database URL of another scheme.
    #[error("must be a postgres:// or postgresql:// URL")]
    DatabaseScheme,
    /// A database URL without a host.
    #[error("must name a host (postgres://user:password@host:5432/db)")]
    DatabaseHost,
    /// A Redis URL of another scheme or without a host.
    #[error("must be a redis:// URL with a host (redis://host:6379/0)")]
    RedisUrl,
    /// A backend URL that does not parse.
    #[error("not a URL: {0:?} (e.g. http://pulse-backend:8080)")]
    NotAUrl(String),
    /// A backend URL with https.
    #[error("https is not supported (Pulse's backend client speaks plain HTTP)")]
    Https,
    /// A backend URL of another shape.
    #[error("must be http://host[:port][/path], got {0:?}")]
    BackendShape(String),
    /// A log filter over [`MAX_LOG_LEVEL_CHARS`].
    #[error("must be at most {MAX_LOG_LEVEL_CHARS} characters")]
    LogFilterTooLong,
    /// A log filter with control characters.
    #[error("must not contain control characters")]
    ControlCharacters,
    /// A blank log filter.
    #[error("must name a level ({}), e.g. info or pulse=debug,warn", LEVELS.join(", "))]
    NoLevel,
    /// A directive that names no level.
    #[error("{0:?} names no level ({levels}); expected e.g. info or pulse=debug,warn", levels = LEVELS.join(", "))]
    DirectiveWithoutLevel(String),
    /// Not an `http://` or `https://` URL with a host.
    #[error("must be an http:// or https:// URL such as http://127.0.0.1:8080, got {0:?}")]
    HttpUrl(String),
    /// Not a `pulse load` run length.
    #[error("expected a duration such as 30s or 5m, or `forever`")]
    RunDuration,
    /// Not a `pulse load` rate.
    #[error("expected requests per second from 0 (unlimited) to 1000000")]
    RequestRate,
    /// Not a `--ui-color`.
    #[error("{given:?} is not a colour: expected #rgb, #rrggbb or one of {names}")]
    UiColor {
        /// What was given.
        given: String,
        /// The names accepted, comma-separated.
        names: String,
    },
    /// A `--ui-message` too long.
    #[error("must be at most {max} characters")]
    UiMessageTooLong {
        /// The most accepted.
        max: usize,
    },
    /// A directive `EnvFilter` refuses (its message).
    #[error("{0}; expected an EnvFilter directive such as info or pulse=debug")]
    Filter(String),
}

/// A human-readable duration such as `250ms`, `5s` or `1m`.
pub fn duration(value: &str) -> Result<Duration, RuleError> {
    Ok(humantime::parse_duration(value.trim())?)
}

/// A duration greater than zero.
pub fn positive_duration(value: &str) -> Result<Duration, RuleError> {
    match duration(value)? {
        d if d.is_zero() => Err(RuleError::NotPositive),
        d => Ok(d),
    }
}

/// A fault delay: a duration from 0 (off) to [`MAX_FAULT_DELAY`].
pub fn fault_delay(value: &str) -> Result<Duration, RuleError> {
    check_fault_delay(duration(value)?)
}

/// Checks a fault delay that is already a [`Duration`].
pub fn check_fault_delay(delay: Duration) -> Result<Duration, RuleError> {
    if delay > MAX_FAULT_DELAY {
        return Err(RuleError::FaultDelayTooLong(delay));
    }
    Ok(delay)
}

/// A fraction of requests, from 0 to 1 (`0.05` = 5%).
pub fn rate(value: &str) -> Result<f64, RuleError> {
    value
        .trim()
        .parse::<f64>()
        .map_err(|_| RuleError::Rate)
        .and_then(check_rate)
}

/// Checks a rate that is already a number; NaN is not a rate.
pub fn check_rate(rate: f64) -> Result<f64, RuleError> {
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(RuleError::Rate)
    }
}

/// A byte limit from 1 to [`MAX_BYTES`].
pub fn bytes(value: &str) -> Result<usize, RuleError> {
    count(value, MAX_BYTES)
}

/// `--max-store-bytes`: a byte limit from 1 to [`MAX_BYTES`], or 0, no limit (and
/// no size accounting): only with PostgreSQL, for a database with a quota of its
/// own; the in-memory store refuses it at start, since it must stay bounded.
pub fn store_bytes(value: &str) -> Result<usize, RuleError> {
    match value.trim().parse::<usize>() {
        Ok(n) if n <= MAX_BYTES => Ok(n),
        _ => Err(RuleError::StoreBytes),
    }
}

/// A concurrency limit from 1 to [`MAX_CONCURRENCY`].
pub fn concurrency(value: &str) -> Result<usize, RuleError> {
    count(value, MAX_CONCURRENCY)
}

/// A connection limit from 1 to [`MAX_CONNECTIONS`].
pub fn connections(value: &str) -> Result<usize, RuleError> {
    count(value, MAX_CONNECTIONS)
}

/// Most `--backend-max-hops` accepted: far deeper than any real chain.
pub const MAX_HOPS: u32 = 32;

/// A hop limit from 1 to [`MAX_HOPS`].
pub fn hops(value: &str) -> Result<u32, RuleError> {
    count(value, MAX_HOPS as usize).map(|n| n as u32)
}

/// Most `--database-pool-size` accepted.
pub const MAX_POOL_SIZE: u32 = 1000;

/// A pool size from 1 to [`MAX_POOL_SIZE`].
pub fn pool_size(value: &str) -> Result<u32, RuleError> {
    count(value, MAX_POOL_SIZE as usize).map(|n| n as u32)
}

/// A checked `--backend-url`: the base URL and the host and port its telemetry
/// names, taken apart once, when the argument is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendUrl {
    /// `http://host[:port][/path]`, without a trailing `/`.
    pub base: String,
    /// The host.
    pub host: String,
    /// The port (80 when the URL names none).
    pub port: u16,
}

/// A backend base URL: `http://host[:port][/path]`. Plain HTTP only: Pulse's
/// client has no TLS (the backend is a Service in the same cluster, or a local
/// process).
pub fn backend_url(value: &str) -> Result<BackendUrl, RuleError> {
    let given = value.trim();
    let uri: axum::http::Uri = given
        .parse()
        .map_err(|_| RuleError::NotAUrl(given.to_owned()))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http"), Some(host)) if !host.is_empty() && uri.query().is_none() => Ok(BackendUrl {
            base: given.trim_end_matches('/').to_owned(),
            host: host.to_owned(),
            port: uri.port_u16().unwrap_or(80),
        }),
        (Some("https"), _) => Err(RuleError::Https),
        _ => Err(RuleError::BackendShape(given.to_owned())),
    }
}

/// An `http://` or `https://` base URL with a host, without a trailing `/`
/// (`pulse load --target`, `pulse doctor`'s URLs).
pub fn http_url(value: &str) -> Result<String, RuleError> {
    match reqwest::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
            Ok(value.trim_end_matches('/').to_owned())
        }
        _ => Err(RuleError::HttpUrl(value.to_owned())),
    }
}

/// An integer from 1 to `max`.
fn count(value: &str, max: usize) -> Result<usize, RuleError> {
    match value.trim().parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(RuleError::Count { max }),
    }
}

/// "Not blank, no control characters" as a pattern, for the OpenAPI document:
/// no character `char::is_control` matches, and at least one that
/// `char::is_whitespace` does not (what `trim().is_empty()` refuses).
pub const NOT_BLANK_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$";

/// Longest log filter accepted: far above any real directive list.
pub const MAX_LOG_LEVEL_CHARS: usize = 1024;

/// The levels a directive may name.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// A log filter directive (`info`, `pulse=debug,warn`), as the text it was given.
///
/// `EnvFilter` accepts almost any text (an empty string, a bare word read as a
/// target, garbage between brackets) and then logs nothing, so a mistyped level
/// would silently stop logging. Each comma-separated directive must therefore be
/// a level, or `target[span{field}]=level`: something that says what to log.
pub fn log_level(value: &str) -> Result<String, RuleError> {
    if value.chars().count() > MAX_LOG_LEVEL_CHARS {
        return Err(RuleError::LogFilterTooLong);
    }
    if value.chars().any(char::is_control) {
        return Err(RuleError::ControlCharacters);
    }
    if value.trim().is_empty() {
        return Err(RuleError::NoLevel);
    }
    for directive in value.split(',') {
        let level = directive
            .rsplit_once('=')
            .map_or(directive, |(_, level)| level);
        if !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level.trim())) {
            return Err(RuleError::DirectiveWithoutLevel(directive.to_owned()));
        }
    }
    log_filter(value).map(|_| value.to_owned())
}

/// The log filter for a log-level directive.
///
/// Pulse reports Kubernetes API failures itself, once per failure streak; kube's
/// client would add an ERROR line per failed request, so that target is off unless
/// the directive names `kube_client` itself.
pub fn log_filter(directive: &str) -> Result<EnvFilter, RuleError> {
    let full = if directive.contains("kube_client") {
        directive.to_owned()
    } else {
        format!("{directive},kube_client::client::builder=off")
    };
    EnvFilter::try_new(full).map_err(|e| RuleError::Filter(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fault_delay_cap_is_inclusive() {
        assert_eq!(fault_delay("60s"), Ok(MAX_FAULT_DELAY));
        assert_eq!(
            duration(MAX_FAULT_DELAY_TEXT),
            Ok(MAX_FAULT_DELAY),
            "the text and the value agree"
        );
        assert!(
            fault_delay("60001ms")
                .unwrap_err()
                .to_string()
                .contains("maximum of 60s")
        );
        assert_eq!(fault_delay("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rates_are_fractions() {
        assert_eq!(rate(" 0.25 "), Ok(0.25));
        for bad in ["1.5", "-0.1", "NaN", "lots"] {
            assert!(rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn log_levels_must_say_what_to_log() {
        for good in [
            "info",
            "WARN",
            "pulse=debug,warn",
            "pulse[request]=trace",
            "off",
        ] {
            assert!(log_level(good).is_ok(), "{good}");
        }
        let long = "a".repeat(100_000);
        for bad in [
            "",
            " ",
            "info\u{0}",
            "[{=}]",
            "pulse",
            "info,",
            "inf",
            long.as_str(),
        ] {
            assert!(log_level(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn counts_are_bounded() {
        assert_eq!(bytes("1073741824"), Ok(MAX_BYTES));
        assert!(bytes("1073741825").is_err());
        assert!(concurrency("0").is_err());
        assert_eq!(connections("1000000"), Ok(MAX_CONNECTIONS));
        assert!(connections("1000001").is_err());
        assert!(connections("0").is_err());
    }
}

//! The URLs that carry a password (`--database-url`, `--redis-url`): checked for
//! their shape when the argument is parsed, and never shown whole in `Debug`
//! output or logs.

use super::rules::RuleError;

/// A `--database-url`: a `postgres://` or `postgresql://` URL. Its password never
/// appears in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL, password included: for the driver only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrl(<redacted>)")
    }
}

/// A PostgreSQL URL, checked for its scheme and a host.
pub fn database_url(value: &str) -> Result<DatabaseUrl, RuleError> {
    let rest = value
        .strip_prefix("postgres://")
        .or_else(|| value.strip_prefix("postgresql://"))
        .ok_or(RuleError::DatabaseScheme)?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() {
        return Err(RuleError::DatabaseHost);
    }
    Ok(DatabaseUrl(value.to_owned()))
}

/// A `--redis-url`: a `redis://` URL with a host. Its password never appears in
/// `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// The URL, password included: for the client only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisUrl(<redacted>)")
    }
}

/// A Redis URL: `redis://` (the client has no TLS) with a host.
pub fn redis_url(value: &str) -> Result<RedisUrl, RuleError> {
    let rest = value.strip_prefix("redis://").ok_or(RuleError::RedisUrl)?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    match authority.rsplit('@').next() {
        Some(host) if !host.is_empty() && !host.starts_with(':') => Ok(RedisUrl(value.to_owned())),
        _ => Err(RuleError::RedisUrl),
    }
}

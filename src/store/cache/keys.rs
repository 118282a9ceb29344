//! The cache's keys: one per record and one per list, each with the generation a
//! write replaces (see `redis.rs`). Versioned (`v1`), so a release that changes
//! what is cached under a key changes the key instead of reading the old shape.

/// A cached value's key and its generation's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Key {
    pub(super) value: String,
    pub(super) generation: String,
}

impl Key {
    fn of(name: &str) -> Self {
        Self {
            value: format!("pulse:v1:{name}"),
            generation: format!("pulse:v1:gen:{name}"),
        }
    }

    /// `pulse:v1:user:{id}`.
    pub(super) fn user(id: u64) -> Self {
        Self::of(&format!("user:{id}"))
    }

    /// `pulse:v1:users`.
    pub(super) fn users() -> Self {
        Self::of("users")
    }

    /// `pulse:v1:item:{key}`: the key as it is (Redis keys are binary-safe, and
    /// nothing after the prefix is parsed).
    pub(super) fn item(key: &str) -> Self {
        Self::of(&format!("item:{key}"))
    }

    /// `pulse:v1:items`.
    pub(super) fn items() -> Self {
        Self::of("items")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced_and_versioned() {
        assert_eq!(Key::user(7).value, "pulse:v1:user:7");
        assert_eq!(Key::user(7).generation, "pulse:v1:gen:user:7");
        assert_eq!(Key::users().value, "pulse:v1:users");
        assert_eq!(Key::item("a:b").value, "pulse:v1:item:a:b");
        assert_eq!(Key::items().generation, "pulse:v1:gen:items");
    }
}

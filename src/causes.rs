//! An error and its causes on one line, each said once.
//!
//! anyhow's `{:#}` appends every `source()` of the chain to the message. Many
//! errors already put their source in their own message (`"cannot listen on
//! {addr}: {source}"`, thiserror's `{0}` next to `#[from]`), so `{:#}` printed the
//! OS error twice: `... Address already in use (os error 98): Address already in
//! use (os error 98)`. Here a cause is appended only when the line does not
//! already say it, whichever error type it comes from.

use std::error::Error;

/// `err`'s message followed by each of its causes that the line does not already
/// contain, separated by `: `.
pub fn one_line(err: &(dyn Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut cause = err.source();
    while let Some(current) = cause {
        let text = current.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = current.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot listen on 127.0.0.1:8080 (--addr): {source}")]
    struct Shows {
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("the server could not start")]
    struct Hides(#[source] Shows);

    fn in_use() -> std::io::Error {
        std::io::Error::from(std::io::ErrorKind::AddrInUse)
    }

    #[test]
    fn a_cause_the_message_already_shows_is_not_repeated() {
        let err = Shows { source: in_use() };
        let cause = in_use().to_string();
        let line = one_line(&err);
        assert_eq!(line.matches(&cause).count(), 1, "{line}");
        assert_eq!(
            line,
            format!("cannot listen on 127.0.0.1:8080 (--addr): {cause}")
        );
    }

    #[test]
    fn causes_the_message_hides_are_appended_once_each() {
        let err = Hides(Shows { source: in_use() });
        let cause = in_use().to_string();
        assert_eq!(
            one_line(&err),
            format!(
                "the server could not start: cannot listen on 127.0.0.1:8080 (--addr): {cause}"
            )
        );
        // Through anyhow, as the binary prints it: a context above the chain.
        let wrapped = anyhow::Error::new(err).context("pulse serve");
        let line = one_line(wrapped.as_ref());
        assert_eq!(line.matches(&cause).count(), 1, "{line}");
        assert!(
            line.starts_with("pulse serve: the server could not start: "),
            "{line}"
        );
    }
}

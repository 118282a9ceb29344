//! JSON text written by hand for the log lines: strings escaped as they are
//! appended, ids as hex. serde_json would need a value or a `Serialize` per field;
//! these append to the line's reused buffer directly, which the access line's
//! profile asked for (`make profile`).

use std::fmt::{self, Write as _};

/// Appends `value` as a JSON string.
pub(super) fn push_str(line: &mut String, value: &str) {
    line.push('"');
    let _ = Escaped(line).write_str(value);
    line.push('"');
}

/// Whether `bytes` hold a byte a JSON string must escape: a control character,
/// `"` or `\`.
///
/// Eight bytes at a time (the bit tricks of "Bit Twiddling Hacks", *Determine if
/// a word has a byte less than n* and *... equal to n*: exact, no false
/// positives): every access line passes its text through here, and the byte loop
/// it replaces was about 700 instructions per request (`make profile`).
pub(super) fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let has_less_than_space = |v: u64| v.wrapping_sub(ONES * 0x20) & !v & HIGH != 0;
    let mut words = bytes.chunks_exact(8);
    for word in words.by_ref() {
        let v = u64::from_ne_bytes(word.try_into().expect("chunks of eight bytes"));
        if has_less_than_space(v) || has_zero(v ^ (ONES * 0x22)) || has_zero(v ^ (ONES * 0x5c)) {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// A `fmt::Write` that escapes what it is given for a JSON string, so `Debug`
/// and `Display` values are escaped as they are formatted, without a copy.
pub(super) struct Escaped<'a>(pub(super) &'a mut String);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Most text (names, routes, messages) needs no escaping: one scan, one copy.
        if !needs_escape(s.as_bytes()) {
            self.0.push_str(s);
            return Ok(());
        }
        let mut start = 0;
        for (i, b) in s.bytes().enumerate() {
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.push_str(&s[start..i]);
            if escape.is_empty() {
                let _ = write!(self.0, "\\u{b:04x}");
            } else {
                self.0.push_str(escape);
            }
            start = i + 1;
        }
        self.0.push_str(&s[start..]);
        Ok(())
    }
}

/// Appends `bytes` (at most 16: a trace id) as lower-case hex, the W3C form of
/// trace and span ids. Written on the stack and appended once: a `push` per
/// digit cost about 400 instructions per access line.
pub(super) fn push_hex(line: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 32];
    let bytes = &bytes[..bytes.len().min(16)];
    for (pair, b) in digits.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
    // ASCII hex digits: always valid UTF-8.
    line.push_str(std::str::from_utf8(&digits[..2 * bytes.len()]).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceId;

    use super::*;

    #[test]
    fn ids_are_lower_case_hex() {
        let mut line = String::from("x");
        push_hex(&mut line, &[0x00, 0xff, 0x10, 0xab]);
        push_hex(
            &mut line,
            &TraceId::from_hex("0af7651916cd43dd8448eb211c80319c")
                .unwrap()
                .to_bytes(),
        );
        assert_eq!(line, "x00ff10ab0af7651916cd43dd8448eb211c80319c");
    }

    /// The word-at-a-time scan agrees with the byte rule for every byte at every
    /// position of a word and of the remainder.
    #[test]
    fn needs_escape_finds_every_escaped_byte_and_nothing_else() {
        let naive = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
        for len in [1, 7, 8, 9, 16, 23] {
            for at in 0..len {
                for byte in 0..=u8::MAX {
                    let mut text = vec![b'a'; len];
                    text[at] = byte;
                    assert_eq!(
                        needs_escape(&text),
                        naive(byte),
                        "byte {byte:#x} at {at} of {len}"
                    );
                }
            }
        }
        assert!(!needs_escape(b""));
        assert!(!needs_escape("caf\u{e9} \u{1f600} ~\x7f".as_bytes()));
    }

    fn escaped(s: &str) -> String {
        let mut out = String::new();
        push_str(&mut out, s);
        out
    }

    #[test]
    fn strings_are_json_strings() {
        for s in [
            "plain",
            "quote \" and \\ slash",
            "line\nbreak\ttab",
            "\u{1}\u{1f}",
            "é ✓",
        ] {
            let json = escaped(s);
            let back: String = serde_json::from_str(&json).unwrap();
            assert_eq!(back, s, "{json}");
        }
    }
}

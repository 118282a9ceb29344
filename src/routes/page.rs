//! The page `GET /` answers a browser: who is answering, in the `--ui-color`
//! with the `--ui-message`, and its live request rate and errors.
//!
//! Self-contained (page.html): its one stylesheet and one script are inline,
//! allowed by a nonce made per answer, and the Content-Security-Policy allows
//! nothing else but the script's polls of `GET /stats` on the same origin. Every
//! value written into it is HTML-escaped, except the colour, which
//! `config::ui::ui_color` let through only as `#hex` or a plain name.

use std::borrow::Cow;
use std::str::FromStr as _;

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use headers_accept::Accept;
use mediatype::{MediaType, names};

use crate::state::ServiceInfo;
use crate::telemetry::metrics::RequestTotals;

/// The page, with `{{name}}` where a value goes.
const TEMPLATE: &str = include_str!("page.html");

/// What `GET /` can answer, in the server's order of preference: JSON first, so
/// that an `Accept` both satisfy equally (`*/*`, curl's) keeps getting JSON.
const AVAILABLE: [MediaType<'static>; 2] = [
    MediaType::new(names::APPLICATION, names::JSON),
    MediaType::new(names::TEXT, names::HTML),
];

/// Whether the `Accept` header(s) prefer HTML to JSON, by RFC 9110's rules: the
/// highest q-value wins, the most specific range decides a type's q-value, `q=0`
/// refuses a type, and a tie goes to JSON. No header, one that does not parse or
/// one neither type satisfies: JSON, as `GET /` answered before it had a page.
pub fn wants_html(headers: &HeaderMap) -> bool {
    let values: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        return false;
    }
    Accept::from_str(&values.join(","))
        .ok()
        .and_then(|accept| accept.negotiate(&AVAILABLE).cloned())
        .is_some_and(|chosen| chosen == AVAILABLE[1])
}

/// A fresh CSP nonce: 128 random bits in hex (base64 characters, as CSP wants).
pub fn nonce() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The page for `info`, up `uptime_seconds`, with the counters at `totals`.
pub fn render(
    info: &ServiceInfo,
    uptime_seconds: f64,
    totals: RequestTotals,
    nonce: &str,
) -> String {
    let absent = |value: &Option<String>| value.clone().unwrap_or_else(|| "–".to_owned());
    let ui = &info.ui;
    fill(TEMPLATE, |key| {
        let value: Cow<'_, str> = match key {
            "nonce" => nonce.into(),
            "color" => ui.color.css().into(),
            "ink" => ui.color.ink().into(),
            "name" => info.name.as_str().into(),
            "version" => info.build.version.into(),
            "revision" => info.build.revision.into(),
            "message" => ui.message.as_ref().map_or("", |m| m.text()).into(),
            "hostname" => info.hostname.as_str().into(),
            "pod" => absent(&info.pod).into(),
            "namespace" => absent(&info.namespace).into(),
            "node" => absent(&info.node).into(),
            "started_at" => humantime::format_rfc3339_seconds(info.started_at)
                .to_string()
                .into(),
            "uptime_seconds" => format!("{uptime_seconds:.3}").into(),
            "uptime" => uptime(uptime_seconds).into(),
            "requests_total" => totals.requests_total.to_string().into(),
            "server_errors_total" => totals.server_errors_total.to_string().into(),
            _ => return None,
        };
        Some(escape(&value).into_owned())
    })
}

/// The page as an answer: never cached (its figures are of this moment and this
/// process), varying by `Accept` (the same URL answers JSON), its nonce in the
/// Content-Security-Policy.
pub fn answer(page: String, nonce: &str) -> Response {
    // Nothing from anywhere but this origin's /stats; the inline style and script
    // by nonce; `data:` images only for the empty favicon, which spares a request.
    let policy = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    );
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        ),
        (header::VARY, HeaderValue::from_static("accept")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    // ASCII text and a hex nonce: always a header value. Were it not, the page
    // would be shown without its style and script rather than not at all.
    let policy = HeaderValue::try_from(policy)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
    (headers, [(header::CONTENT_SECURITY_POLICY, policy)], page).into_response()
}

/// `template` with each `{{key}}` replaced by `value(key)`, in one pass (a value
/// holding `{{...}}` stays as it is); a key `value` does not know is left.
fn fill(template: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len() + 512);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after
            .find("}}")
            .and_then(|end| Some((end, value(&after[..end])?)))
        {
            Some((end, text)) => {
                out.push_str(&text);
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `text` safe in HTML text and in a quoted attribute.
fn escape(text: &str) -> Cow<'_, str> {
    if !text.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whole seconds as the page's script writes them: `1d 2h 3m 4s`, from the first
/// non-zero unit (`0s` at start).
fn uptime(seconds: f64) -> String {
    let mut left = seconds.max(0.0) as u64;
    let parts = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")].map(|(unit, name)| {
        let n = left / unit;
        left -= n * unit;
        (n, name)
    });
    let first = parts.iter().position(|(n, _)| *n > 0).unwrap_or(3);
    parts[first..]
        .iter()
        .map(|(n, name)| format!("{n}{name}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(values: &[&str]) -> bool {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        }
        wants_html(&headers)
    }

    #[test]
    fn browsers_get_html_and_everyone_else_json() {
        for html in [
            &["text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"][..],
            &["text/html, application/xhtml+xml, */*"],
            &["text/html"],
            &["application/json;q=0.5, text/html;q=0.9"],
            &["text/*"],
            &["application/json;q=0.1", "text/html"],
        ] {
            assert!(accept(html), "{html:?}");
        }
        for json in [
            &[][..],
            &["*/*"],
            &["application/json"],
            &["application/json, text/html"],
            &["text/html;q=0"],
            &["text/html;q=0, */*"],
            &["text/*;q=0.5, text/html;q=0, */*;q=0.1"],
            &["text/html;q=0.4, application/*;q=0.5"],
            &["image/png"],
            &["not a media type"],
            &[""],
        ] {
            assert!(!accept(json), "{json:?}");
        }
    }

    #[test]
    fn values_are_escaped_in_one_pass() {
        assert_eq!(
            escape(r#"<b>"x" & 'y'</b>"#),
            "&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;"
        );
        let filled = fill("a {{x}} b {{y}} {{unknown}} {{", |key| match key {
            "x" => Some("{{y}}".to_owned()),
            "y" => Some("Y".to_owned()),
            _ => None,
        });
        assert_eq!(filled, "a {{y}} b Y {{unknown}} {{");
    }

    #[test]
    fn uptime_starts_at_the_first_unit_that_is_not_zero() {
        assert_eq!(uptime(0.4), "0s");
        assert_eq!(uptime(59.9), "59s");
        assert_eq!(uptime(3_723.0), "1h 2m 3s");
        assert_eq!(uptime(90_061.0), "1d 1h 1m 1s");
    }
}

//! The page `GET /` answers a browser, through the real router (and the real
//! binary for its flags): HTML for a browser's `Accept`, today's JSON for every
//! other, by the q-values; the colour and the escaped message; the counters the
//! page polls (`GET /stats`); a bad colour refused at start.

use crate::common;

use std::process::Command;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Exposition, Pulse, Reply, TestApp, client};
use pulse::config::ServeArgs;
use pulse::config::ui::{ui_color, ui_message};

/// What Chromium and Firefox send for a page.
const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

fn canary() -> TestApp {
    TestApp::with(&ServeArgs {
        ui_color: ui_color("#ff00aa").unwrap(),
        ui_message: Some(ui_message("canary <b>v2</b>").unwrap()),
        ..ServeArgs::default()
    })
}

async fn get_accepting(app: &TestApp, path: &str, accept: &[&str]) -> Reply {
    let mut request = Request::get(path);
    for value in accept {
        request = request.header("accept", *value);
    }
    app.request(request.body(Body::empty()).unwrap()).await
}

fn header<'a>(reply: &'a Reply, name: &str) -> &'a str {
    reply
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn is_html(reply: &Reply) -> bool {
    header(reply, "content-type").starts_with("text/html")
}

/// The value of `attribute="..."` on the first `<tag` of `html`.
fn attribute<'a>(html: &'a str, tag: &str, attribute: &str) -> &'a str {
    let start = html.find(&format!("<{tag} ")).expect(tag);
    let rest = &html[start..];
    let rest =
        &rest[rest.find(&format!("{attribute}=\"")).expect(attribute) + attribute.len() + 2..];
    &rest[..rest.find('"').unwrap()]
}

#[tokio::test]
async fn a_browser_gets_the_page_with_the_version_colour_and_escaped_message() {
    let app = canary();
    let page = get_accepting(&app, "/", &[BROWSER]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&page, "vary"), "accept");
    assert_eq!(header(&page, "cache-control"), "no-store");
    let html = &page.body;
    assert!(
        html.contains(&format!(">{}<", env!("CARGO_PKG_VERSION"))),
        "the version: {html}"
    );
    assert!(html.contains("--accent: #ff00aa;"), "the colour: {html}");
    assert!(
        html.contains("canary &lt;b&gt;v2&lt;/b&gt;") && !html.contains("<b>v2"),
        "the message, escaped: {html}"
    );
    // Self-contained: no URL of another origin anywhere, in the page or its policy.
    assert!(!html.contains("://") && !html.contains("=\"//"), "{html}");
    let policy = header(&page, "content-security-policy");
    assert!(policy.starts_with("default-src 'none';"), "{policy}");
    assert!(
        !policy.contains("http") && !policy.contains("unsafe"),
        "{policy}"
    );
    // The inline style and script run by the nonce of this answer's policy.
    let nonce = attribute(html, "script", "nonce");
    assert_eq!(nonce.len(), 32);
    assert_eq!(attribute(html, "style", "nonce"), nonce);
    assert!(
        policy.contains(&format!("script-src 'nonce-{nonce}';")),
        "{policy}"
    );
    assert!(
        policy.contains(&format!("style-src 'nonce-{nonce}';")),
        "{policy}"
    );
    let again = get_accepting(&app, "/", &[BROWSER]).await;
    assert_ne!(
        attribute(&again.body, "script", "nonce"),
        nonce,
        "a nonce per answer"
    );
}

#[tokio::test]
async fn curl_scripts_and_json_clients_keep_getting_json() {
    let app = canary();
    for accept in [&["*/*"][..], &["application/json"], &[], &["image/png"]] {
        let reply = get_accepting(&app, "/", accept).await;
        assert_eq!(reply.status, StatusCode::OK, "{accept:?}");
        assert_eq!(
            header(&reply, "content-type"),
            "application/json",
            "{accept:?}"
        );
        assert_eq!(header(&reply, "vary"), "accept", "{accept:?}");
        let info = reply.json();
        let mut keys: Vec<_> = info.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "hostname",
                "name",
                "namespace",
                "node",
                "pod",
                "revision",
                "runtime",
                "started_at",
                "uptime_seconds",
                "version"
            ],
            "today's JSON, nothing of the page in it: {accept:?}"
        );
        assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    }
}

#[tokio::test]
async fn q_values_decide() {
    let app = canary();
    for (accept, html) in [
        (&["text/html;q=0"][..], false),
        (&["text/html;q=0, */*"], false),
        (&["text/html;q=0.5, application/json"], false),
        (&["application/json;q=0.5, text/html"], true),
        (
            &["text/*;q=0.9, text/html;q=0, application/json;q=0.1"],
            false,
        ),
        (&["application/json", "text/html;q=0.9"], false),
        (&["application/json;q=0.2", "text/html"], true),
    ] {
        let reply = get_accepting(&app, "/", accept).await;
        assert_eq!(is_html(&reply), html, "{accept:?}");
        assert_eq!(header(&reply, "vary"), "accept", "{accept:?}");
    }
}

#[tokio::test]
async fn stats_sum_the_request_counter_and_do_not_count_themselves() {
    let app = canary();
    for path in ["/status/200", "/status/503", "/status/500", "/status/404"] {
        app.get(path).await;
    }
    let before = app.get("/stats").await.json();
    let after = app.get("/stats").await.json();
    assert_eq!(before["requests_total"], 4, "{before}");
    assert_eq!(before["server_errors_total"], 2, "{before}");
    assert_eq!(after["requests_total"], 4, "polling /stats counts nothing");
    assert!(after["uptime_seconds"].as_f64() > before["uptime_seconds"].as_f64());
    let info = app.get("/").await.json();
    for field in ["hostname", "started_at"] {
        assert_eq!(after[field], info[field], "the process that answered");
    }
    // The same sums the dashboards make of http_requests_total.
    let metrics = app.scrape().await;
    let sum = |status: &dyn Fn(&str) -> bool| -> f64 {
        metrics
            .find("http_requests_total", &[])
            .iter()
            .filter(|s| status(&s.labels["status"]))
            .map(|s| s.value)
            .sum()
    };
    let totals = app.get("/stats").await.json();
    assert_eq!(totals["requests_total"].as_f64(), Some(sum(&|_| true)));
    assert_eq!(
        totals["server_errors_total"].as_f64(),
        Some(sum(&|s| s.starts_with('5')))
    );
    // The page starts from the same counters.
    let page = get_accepting(&app, "/", &[BROWSER]).await;
    assert!(
        page.body.contains(&format!(
            "data-requests=\"{}\" data-errors=\"2\"",
            totals["requests_total"]
        )),
        "{}",
        page.body
    );
}

#[test]
fn the_binary_takes_the_flags_and_their_variables() {
    let pulse = Pulse::start_with_env(
        &["--ui-message", "blue & green"],
        &[("PULSE_UI_COLOR", "Teal")],
    );
    let page = client()
        .get(pulse.url("/"))
        .header("accept", BROWSER)
        .send()
        .unwrap();
    assert_eq!(page.headers()["vary"], "accept");
    let html = page.text().unwrap();
    assert!(html.contains("--accent: teal;"), "{html}");
    assert!(html.contains(">blue &amp; green<"), "{html}");
    let json: serde_json::Value = client().get(pulse.url("/")).send().unwrap().json().unwrap();
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    let metrics = Exposition::parse(
        &client()
            .get(pulse.url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap(),
    );
    assert!(
        !metrics
            .find("http_requests_total", &[("route", "/")])
            .is_empty()
    );
}

#[test]
fn a_bad_colour_or_message_is_refused_at_start_with_one_line() {
    for (args, env, needle) in [
        (vec!["--ui-color", "#ff00aa;}body{x"], vec![], "--ui-color"),
        (vec![], vec![("PULSE_UI_COLOR", "navy")], "--ui-color"),
        (vec!["--ui-color", "rgb(0,0,0)"], vec![], "#rrggbb"),
        (vec!["--ui-message", "a\tb"], vec![], "control characters"),
        (
            vec![],
            vec![("PULSE_UI_MESSAGE", &*"x".repeat(201))],
            "at most 200",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_pulse"))
            .args(&args)
            .envs(env)
            .env("PULSE_KUBE", "off")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: as every bad flag");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.contains(needle), "{args:?}: {first}");
    }
    // A line break too, though clap's message then quotes it over two lines.
    let out = Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args(["--ui-message", "two\nlines"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ui-message"));
}

//! One rule per setting, whichever way it arrives: the command line, the runtime
//! ConfigMap or `PUT /admin/runtime` accept and refuse exactly the same values.

use crate::common;

use std::collections::BTreeMap;

use axum::http::StatusCode;
use clap::Parser as _;
use common::TestApp;
use pulse::cli::{Cli, Command};
use pulse::config::rules::MAX_FAULT_DELAY_TEXT;

/// Whether `pulse --fault-delay-max VALUE` starts (parses).
fn flag_accepts(value: &str) -> bool {
    match Cli::try_parse_from(["pulse", "--fault-delay-max", value]) {
        Ok(cli) => matches!(cli.into_command(), Command::Serve(_)),
        Err(_) => false,
    }
}

/// Whether the runtime ConfigMap may set `fault_delay_max: VALUE`.
fn config_map_accepts(app: &TestApp, value: &str) -> bool {
    let data = BTreeMap::from([("fault_delay_max".to_owned(), value.to_owned())]);
    app.state
        .settings
        .replace_from_config_map(Some(&data))
        .is_ok()
}

/// Whether `PUT /admin/runtime {"fault_delay_max": VALUE}` is applied.
async fn admin_accepts(app: &TestApp, value: &str) -> bool {
    let body = serde_json::json!({ "fault_delay_max": value }).to_string();
    let reply = app.send("PUT", "/admin/runtime", Some(&body)).await;
    match reply.status {
        StatusCode::OK => true,
        StatusCode::BAD_REQUEST => false,
        other => panic!("PUT /admin/runtime answered {other}: {}", reply.body),
    }
}

#[tokio::test]
async fn the_fault_delay_cap_is_the_same_for_the_flag_the_config_map_and_the_admin_route() {
    let app = TestApp::new();
    for (value, accepted) in [
        ("0s", true),
        ("250ms", true),
        (MAX_FAULT_DELAY_TEXT, true),
        ("60s 1ms", false),
        ("5m", false),
    ] {
        assert_eq!(flag_accepts(value), accepted, "--fault-delay-max {value}");
        assert_eq!(
            config_map_accepts(&app, value),
            accepted,
            "ConfigMap fault_delay_max: {value}"
        );
        assert_eq!(
            admin_accepts(&app, value).await,
            accepted,
            "PUT /admin/runtime fault_delay_max: {value}"
        );
    }
}

#[tokio::test]
async fn the_fault_rate_range_is_the_same_everywhere() {
    let app = TestApp::new();
    for (value, accepted) in [("0", true), ("1", true), ("1.5", false), ("-0.1", false)] {
        let flag = Cli::try_parse_from(["pulse", "--fault-error-rate", value]).is_ok();
        assert_eq!(flag, accepted, "--fault-error-rate {value}");
        let data = BTreeMap::from([("fault_error_rate".to_owned(), value.to_owned())]);
        let config_map = app.state.settings.replace_from_config_map(Some(&data));
        assert_eq!(config_map.is_ok(), accepted, "ConfigMap {value}");
        let body = format!(r#"{{"fault_error_rate": {value}}}"#);
        let admin = app.send("PUT", "/admin/runtime", Some(&body)).await;
        assert_eq!(
            admin.status == StatusCode::OK,
            accepted,
            "PUT {value}: {}",
            admin.body
        );
    }
}

#[tokio::test]
async fn a_body_that_is_not_a_patch_is_a_counted_rejection() {
    let app = TestApp::new();
    let unknown = app
        .send("PUT", "/admin/runtime", Some(r#"{"fault_rate": 1}"#))
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown.json()["field"], "fault_rate");
    let not_json = app
        .send_with("PUT", "/admin/runtime", Some("text/plain"), b"{}")
        .await;
    assert_eq!(not_json.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let m = app.scrape().await;
    assert_eq!(
        m.value("pulse_config_reloads_total", &[("result", "rejected")]),
        2.0
    );
}

#[test]
fn the_openapi_document_states_the_same_ranges() {
    use pulse::config::rules;
    let doc = serde_json::to_value(pulse::routes::openapi()).unwrap();
    let patch = &doc["components"]["schemas"]["SettingsPatch"]["properties"];
    let rate = &patch["fault_error_rate"];
    let (min, max) = (
        rate["minimum"].as_f64().unwrap(),
        rate["maximum"].as_f64().unwrap(),
    );
    assert!(rules::check_rate(min).is_ok() && rules::check_rate(max).is_ok());
    assert!(rules::check_rate(min - 1e-9).is_err() && rules::check_rate(max + 1e-9).is_err());
    let delay = patch["fault_delay_max"]["description"].as_str().unwrap();
    assert!(
        delay.contains(&format!("at most `{MAX_FAULT_DELAY_TEXT}`")),
        "{delay}"
    );
}

#[tokio::test]
async fn log_levels_that_name_no_level_are_refused_by_the_config_map_and_the_admin_route() {
    let app = TestApp::new();
    let long = "a".repeat(100_000);
    for bad in ["", "info\u{0}", "[{=}]", long.as_str(), "pulse"] {
        let body = serde_json::json!({ "log_level": bad }).to_string();
        let reply = app.send("PUT", "/admin/runtime", Some(&body)).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{bad:.20?}: {}",
            reply.body
        );
        let data = BTreeMap::from([("log_level".to_owned(), bad.to_owned())]);
        assert!(
            app.state
                .settings
                .replace_from_config_map(Some(&data))
                .is_err(),
            "ConfigMap log_level {bad:.20?}"
        );
        assert!(
            Cli::try_parse_from(["pulse", "--log-level", bad]).is_err(),
            "--log-level {bad:.20?}"
        );
    }
    assert_eq!(
        app.state.settings.current().log_level,
        "info",
        "nothing applied"
    );
    let m = app.scrape().await;
    assert_eq!(
        m.value("pulse_config_reloads_total", &[("result", "applied")]),
        0.0
    );
}

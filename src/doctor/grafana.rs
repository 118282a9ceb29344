//! Grafana, through its HTTP API (<https://grafana.com/docs/grafana/latest/developers/http_api/>):
//! every provisioned datasource healthy, every Pulse dashboard present.

use serde_json::Value;

use super::http::Endpoint;
use super::report::Check;

/// Pulse's dashboards, as the chart ships them: doctor looks each up by its uid.
const DASHBOARDS: [&str; 3] = [
    include_str!("../../dashboards/pulse-overview.json"),
    include_str!("../../dashboards/pulse-runtime.json"),
    include_str!("../../dashboards/pulse-slo.json"),
];

/// The (uid, title) of each Pulse dashboard.
fn dashboards() -> Vec<(String, String)> {
    DASHBOARDS
        .iter()
        .map(|text| {
            let dashboard: Value =
                serde_json::from_str(text).expect("the dashboards are JSON (tests check them)");
            let field = |name: &str| dashboard[name].as_str().unwrap_or_default().to_owned();
            (field("uid"), field("title"))
        })
        .collect()
}

/// The datasource and dashboard checks.
pub async fn checks(grafana: &Endpoint) -> Vec<Check> {
    let sources = match grafana.get_json("/api/datasources", &[]).await {
        Ok(Value::Array(sources)) => sources,
        Ok(other) => {
            return vec![Check::fail(
                "grafana.reachable",
                grafana.base(),
                format!("/api/datasources is not a list: {other}"),
            )];
        }
        Err(e) if matches!(e.status(), Some(401 | 403)) => {
            return vec![Check::fail(
                "grafana.reachable",
                grafana.base(),
                format!("Grafana refused the login: set GRAFANA_USER and GRAFANA_PASSWORD ({e})"),
            )];
        }
        Err(e) => {
            return vec![Check::fail(
                "grafana.reachable",
                grafana.base(),
                format!("Grafana is unreachable: {e}"),
            )];
        }
    };
    let mut checks = vec![Check::pass(
        "grafana.reachable",
        format!("{} datasources at {}", sources.len(), grafana.base()),
    )];
    for source in &sources {
        checks.push(datasource(grafana, source).await);
    }
    for (uid, title) in dashboards() {
        let name = format!("grafana.dashboard.{uid}");
        checks.push(
            match grafana
                .get_json(&format!("/api/dashboards/uid/{uid}"), &[])
                .await
            {
                Ok(_) => Check::pass(name, format!("{title:?} is provisioned")),
                Err(e) if e.status() == Some(404) => Check::fail(
                    name,
                    format!("{title:?} (uid {uid}) is missing"),
                    "the dashboard ConfigMaps are missing, or Grafana's sidecar does not watch \
                     their namespace or label (grafana_dashboard: \"1\")",
                ),
                Err(e) => Check::fail(name, format!("{title:?}"), e.to_string()),
            },
        );
    }
    checks
}

/// One datasource's own health check (`GET /api/datasources/uid/{uid}/health`).
async fn datasource(grafana: &Endpoint, source: &Value) -> Check {
    let uid = source["uid"].as_str().unwrap_or_default();
    let kind = source["type"].as_str().unwrap_or_default();
    let name = format!("grafana.datasource.{uid}");
    match grafana
        .get_json(&format!("/api/datasources/uid/{uid}/health"), &[])
        .await
    {
        Ok(health) if health["status"] == "OK" => Check::pass(
            name,
            format!("{kind}: {}", health["message"].as_str().unwrap_or("OK")),
        ),
        Ok(health) => Check::fail(
            name,
            kind,
            format!(
                "unhealthy: {}",
                health["message"].as_str().unwrap_or("no message")
            ),
        ),
        Err(e) => Check::fail(name, kind, format!("its health check failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn knows_every_dashboard_the_chart_ships() {
        let shipped = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards"))
            .unwrap()
            .count();
        let known = super::dashboards();
        assert_eq!(known.len(), shipped);
        assert!(
            known
                .iter()
                .all(|(uid, title)| !uid.is_empty() && !title.is_empty())
        );
    }
}

//! Prometheus, through its HTTP API (<https://prometheus.io/docs/prometheus/latest/querying/api/>):
//! is Pulse a healthy target, are its rules loaded and producing data, do exemplars
//! come back, and does retention cover the longest window the rules read.

use std::collections::BTreeSet;

use serde_json::Value;
use tokio::time::Instant;

use super::http::Endpoint;
use super::promql::{duration, format, ranges};
use super::report::Check;
use super::{Probe, Scope, poll};

/// Checks that need only Prometheus: reachable, the target, the rule groups, retention.
pub async fn configuration(prometheus: &Endpoint, scope: &Scope, deadline: Instant) -> Vec<Check> {
    let build = match prometheus.get_json("/api/v1/status/buildinfo", &[]).await {
        Ok(answer) => answer,
        Err(e) => {
            return vec![Check::fail(
                "prometheus.reachable",
                prometheus.base(),
                format!("Prometheus is unreachable: {e}"),
            )];
        }
    };
    let version = build["data"]["version"].as_str().unwrap_or("unknown");
    let mut checks = vec![Check::pass(
        "prometheus.reachable",
        format!("Prometheus {version} at {}", prometheus.base()),
    )];
    checks.push(target(prometheus, scope, deadline).await);
    let groups = pulse_groups(prometheus, scope).await;
    checks.push(rules(&groups, scope));
    checks.push(retention(prometheus, &groups).await);
    checks
}

/// Pulse's scrape target: present, and up. Waits (within the deadline) for a
/// target to appear and be scraped once: a Prometheus that just started or
/// reloaded has not yet.
async fn target(prometheus: &Endpoint, scope: &Scope, deadline: Instant) -> Check {
    const NAME: &str = "prometheus.target";
    let mut answer = Ok(Value::Null);
    let scraped = |answer: &Value| {
        let targets = answer["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten();
        let ours: Vec<&Value> = targets.filter(|t| scope.selects(&t["labels"])).collect();
        !ours.is_empty() && ours.iter().all(|t| t["health"] != "unknown")
    };
    poll(deadline, async || {
        answer = prometheus
            .get_json("/api/v1/targets", &[("state", "active")])
            .await;
        answer.as_ref().map_or(true, scraped)
    })
    .await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => return Check::fail(NAME, "", e.to_string()),
    };
    let targets: Vec<&Value> = answer["data"]["activeTargets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| scope.selects(&t["labels"]))
        .collect();
    if targets.is_empty() {
        return Check::fail(
            NAME,
            format!("no active target with {}", scope.describe()),
            "Pulse is not in Prometheus's scrape configuration: no ServiceMonitor (or scrape job) \
             selects it; with --kube see prometheus.selector",
        );
    }
    let down: Vec<&&Value> = targets.iter().filter(|t| t["health"] == "down").collect();
    match down.first() {
        None => Check::pass(
            NAME,
            format!(
                "{} target(s) with {}, none down",
                targets.len(),
                scope.describe()
            ),
        ),
        Some(target) => Check::fail(
            NAME,
            format!(
                "{} of {} target(s) down: {}",
                down.len(),
                targets.len(),
                target["scrapeUrl"].as_str().unwrap_or("?")
            ),
            format!(
                "the scrape fails: {} (a wrong port or path, or Pulse not running)",
                target["lastError"].as_str().unwrap_or("no error given")
            ),
        ),
    }
}

/// A loaded rule group that reads Pulse's series (some query names its job).
#[derive(Debug)]
pub struct Group {
    name: String,
    rules: Vec<Value>,
}

impl Group {
    fn queries(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().filter_map(|r| r["query"].as_str())
    }
}

/// The loaded rule groups whose rules select Pulse's job (empty when the rules
/// cannot be read: [`rules`] says so through the target check's own failure).
async fn pulse_groups(prometheus: &Endpoint, scope: &Scope) -> Result<Vec<Group>, String> {
    let answer = prometheus
        .get_json("/api/v1/rules", &[])
        .await
        .map_err(|e| e.to_string())?;
    let selector = format!("job=\"{}\"", scope.job);
    Ok(answer["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| Group {
            name: g["name"].as_str().unwrap_or_default().to_owned(),
            rules: g["rules"].as_array().cloned().unwrap_or_default(),
        })
        .filter(|g| g.queries().any(|q| q.contains(&selector)))
        .collect())
}

/// Pulse's rule groups are loaded and every rule in them evaluates without error.
fn rules(groups: &Result<Vec<Group>, String>, scope: &Scope) -> Check {
    const NAME: &str = "prometheus.rules";
    let groups = match groups {
        Ok(groups) if groups.is_empty() => {
            return Check::fail(
                NAME,
                format!("no loaded rule group reads job=\"{}\"", scope.job),
                "Pulse's PrometheusRule is not loaded: its rule file is missing, or the \
                 Prometheus's ruleSelector does not select it (with --kube see prometheus.selector)",
            );
        }
        Ok(groups) => groups,
        Err(e) => return Check::fail(NAME, "", e.clone()),
    };
    let unhealthy: Vec<String> = groups
        .iter()
        .flat_map(|g| &g.rules)
        .filter(|r| r["health"] == "err")
        .map(|r| {
            format!(
                "{}: {}",
                r["name"].as_str().unwrap_or("?"),
                r["lastError"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    let count: usize = groups.iter().map(|g| g.rules.len()).sum();
    if unhealthy.is_empty() {
        Check::pass(
            NAME,
            format!("{count} rules in {} loaded and healthy", names.join(", ")),
        )
    } else {
        Check::fail(
            NAME,
            format!("{} of {count} rules fail to evaluate", unhealthy.len()),
            unhealthy.join("; "),
        )
    }
}

/// The recording rules of Pulse's groups have produced data (waits for an
/// evaluation or two, within the deadline).
pub async fn recordings(prometheus: &Endpoint, scope: &Scope, deadline: Instant) -> Check {
    const NAME: &str = "prometheus.recordings";
    let groups = match pulse_groups(prometheus, scope).await {
        Ok(groups) if !groups.is_empty() => groups,
        Ok(_) => return Check::skip(NAME, "no Pulse rule group loaded (see prometheus.rules)"),
        Err(e) => return Check::fail(NAME, "", e),
    };
    let records: BTreeSet<String> = groups
        .iter()
        .flat_map(|g| &g.rules)
        .filter(|r| r["type"] == "recording")
        .filter_map(|r| r["name"].as_str().map(str::to_owned))
        .collect();
    let mut empty = records.clone();
    poll(deadline, async || {
        for record in empty.clone() {
            let query = format!("count({record})");
            if let Ok(answer) = prometheus
                .get_json("/api/v1/query", &[("query", &query)])
                .await
                && answer["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
            {
                empty.remove(&record);
            }
        }
        empty.is_empty()
    })
    .await;
    if empty.is_empty() {
        Check::pass(
            NAME,
            format!("all {} recording rules have data", records.len()),
        )
    } else {
        Check::fail(
            NAME,
            format!(
                "{} of {} recording rules have no data",
                empty.len(),
                records.len()
            ),
            format!(
                "no data for {}: no traffic in their window yet, or the series they read are missing",
                empty.into_iter().collect::<Vec<_>>().join(", ")
            ),
        )
    }
}

/// Retention covers the longest range Pulse's rules read (the SLO window).
async fn retention(prometheus: &Endpoint, groups: &Result<Vec<Group>, String>) -> Check {
    const NAME: &str = "prometheus.retention";
    let Ok(groups) = groups else {
        return Check::skip(NAME, "the rules could not be read");
    };
    let Some(longest) = groups
        .iter()
        .flat_map(Group::queries)
        .flat_map(ranges)
        .max()
    else {
        return Check::skip(NAME, "no Pulse rule reads a range");
    };
    let info = match prometheus.get_json("/api/v1/status/runtimeinfo", &[]).await {
        Ok(answer) => answer,
        Err(e) => return Check::fail(NAME, "", e.to_string()),
    };
    let setting = info["data"]["storageRetention"]
        .as_str()
        .unwrap_or_default();
    // "30d", "30d or 2GiB", or "2GiB" alone (no time limit).
    let kept = setting.split(" or ").find_map(duration);
    let longest_text = format(longest);
    match kept {
        Some(kept) if kept < longest => Check::fail(
            NAME,
            format!("retention {setting}; the rules read {longest_text} back"),
            format!(
                "retention {} is shorter than the {longest_text} the SLO rules read: raise it \
                 (kube-prometheus-stack: prometheus.prometheusSpec.retention) and cap the disk with \
                 retentionSize instead",
                format(kept)
            ),
        ),
        _ => Check::pass(
            NAME,
            format!("retention {setting} covers the {longest_text} the rules read"),
        ),
    }
}

/// Exemplar storage is on and a sampled request's exemplar (or, when a later one
/// took its bucket's place, another request's) comes back for Pulse's job.
pub async fn exemplars(
    prometheus: &Endpoint,
    scope: &Scope,
    probe: Option<&Probe>,
    deadline: Instant,
) -> Check {
    const NAME: &str = "prometheus.exemplars";
    let flags = match prometheus.get_json("/api/v1/status/flags", &[]).await {
        Ok(answer) => answer,
        Err(e) => return Check::fail(NAME, "", e.to_string()),
    };
    let features = flags["data"]["enable-feature"].as_str().unwrap_or_default();
    if !features.split(',').any(|f| f.trim() == "exemplar-storage") {
        return Check::fail(
            NAME,
            format!("enabled features: {features:?}"),
            "exemplar storage is off: start Prometheus with --enable-feature=exemplar-storage \
             (kube-prometheus-stack: prometheus.prometheusSpec.enableFeatures)",
        );
    }
    let query = format!(
        "http_request_duration_seconds_bucket{{{}}}",
        scope.matchers()
    );
    let start = (unix_now() - 600.0).to_string();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let wanted = probe.map(|p| p.trace_id.as_str());
    poll(deadline, async || {
        let end = unix_now().to_string();
        if let Ok(answer) = prometheus
            .get_json(
                "/api/v1/query_exemplars",
                &[("query", &query), ("start", &start), ("end", &end)],
            )
            .await
        {
            seen = trace_ids(&answer);
        }
        match wanted {
            Some(id) => seen.contains(id),
            None => !seen.is_empty(),
        }
    })
    .await;
    match wanted {
        Some(id) if seen.contains(id) => Check::pass(
            NAME,
            format!("the sampled request's exemplar came back (trace {id})"),
        ),
        _ if !seen.is_empty() => Check::pass(
            NAME,
            format!(
                "{} exemplars with trace ids (the sampled request's own was replaced by a later \
                 request in its bucket)",
                seen.len()
            ),
        ),
        _ => Check::fail(
            NAME,
            "no exemplar for Pulse's latency buckets",
            "no exemplars: Prometheus does not scrape Pulse with OpenMetrics, or no request was \
             sampled (OTEL_TRACES_SAMPLER)",
        ),
    }
}

/// The trace ids of a `query_exemplars` answer.
fn trace_ids(answer: &Value) -> BTreeSet<String> {
    answer["data"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|series| series["exemplars"].as_array().into_iter().flatten())
        .filter_map(|e| e["labels"]["trace_id"].as_str().map(str::to_owned))
        .collect()
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

//! The request doctor sends through Pulse, and where its signals must arrive: its
//! trace in Tempo (<https://grafana.com/docs/tempo/latest/api_docs/#query>) and its
//! access line in Loki (<https://grafana.com/docs/loki/latest/reference/loki-http-api/#query-logs-within-a-range-of-time>).

use std::collections::BTreeSet;

use rand::Rng as _;
use serde_json::Value;
use tokio::time::Instant;

use super::http::Endpoint;
use super::report::Check;
use super::{Probe, poll};

/// Pulse is ready, and answers `GET /api/backend` (which calls its backend when it
/// has one) with a `traceparent` doctor chose, sampled.
pub async fn send_probe(pulse: &Endpoint) -> (Vec<Check>, Option<Probe>) {
    let ready = match pulse.get("/readyz", &[], &[]).await {
        Ok(_) => Check::pass("pulse.ready", format!("{} is ready", pulse.base())),
        Err(e) if e.status().is_some() => Check::fail(
            "pulse.ready",
            pulse.base(),
            format!("Pulse is not ready: {e}"),
        ),
        Err(e) => {
            return (
                vec![Check::fail(
                    "pulse.ready",
                    pulse.base(),
                    format!("Pulse is unreachable: {e}"),
                )],
                None,
            );
        }
    };
    let mut rng = rand::rng();
    let trace_id = format!("{:032x}", rng.random::<u128>() | 1);
    let traceparent = format!("00-{trace_id}-{:016x}-01", rng.random::<u64>() | 1);
    let answer = pulse
        .get("/api/backend", &[], &[("traceparent", &traceparent)])
        .await;
    let reply: Value = match &answer {
        Ok((_, body)) => serde_json::from_slice(body).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    let probe = Probe {
        trace_id: trace_id.clone(),
        service: reply["service"].as_str().unwrap_or_default().to_owned(),
        backend: reply["backend"]["service"].as_str().map(str::to_owned),
    };
    let request = match (&answer, &probe.backend) {
        (Ok(_), Some(backend)) => Check::pass(
            "pulse.request",
            format!("GET /api/backend answered through {backend} (trace {trace_id})"),
        ),
        (Ok(_), None) => Check::pass(
            "pulse.request",
            format!("GET /api/backend answered, no backend configured (trace {trace_id})"),
        ),
        (Err(e), _) => Check::fail(
            "pulse.request",
            format!("trace {trace_id}"),
            format!("GET /api/backend failed: {e}"),
        ),
    };
    (vec![ready, request], Some(probe))
}

/// The probe's trace is in Tempo, with the backend's spans when a backend answered.
pub async fn tempo(
    tempo: Option<&Endpoint>,
    pulse: Option<&Endpoint>,
    probe: Option<&Probe>,
    deadline: Instant,
) -> Check {
    const NAME: &str = "tempo.trace";
    let Some(tempo) = tempo else {
        return Check::skip(NAME, "no --tempo URL (or --kube)");
    };
    let Some(probe) = probe else {
        return Check::skip(NAME, "no request sent through Pulse (see pulse.ready)");
    };
    let mut wanted: BTreeSet<&str> = BTreeSet::new();
    wanted.extend(Some(probe.service.as_str()).filter(|s| !s.is_empty()));
    wanted.extend(probe.backend.as_deref());
    let path = format!("/api/traces/{}", probe.trace_id);
    let mut services = BTreeSet::new();
    let mut last_error = String::new();
    let found = poll(deadline, async || match tempo.get_json(&path, &[]).await {
        Ok(trace) => {
            services = service_names(&trace);
            !services.is_empty() && wanted.iter().all(|s| services.contains(*s))
        }
        Err(e) => {
            last_error = e.to_string();
            false
        }
    })
    .await;
    if found {
        let list: Vec<&str> = services.iter().map(String::as_str).collect();
        return Check::pass(
            NAME,
            format!("trace {} with spans of {}", probe.trace_id, list.join(", ")),
        );
    }
    if !services.is_empty() {
        let missing: Vec<&&str> = wanted.iter().filter(|s| !services.contains(**s)).collect();
        return Check::fail(
            NAME,
            format!("trace {} has spans of {services:?}", probe.trace_id),
            format!("no spans of {missing:?} in the trace: that Pulse does not export its spans"),
        );
    }
    Check::fail(
        NAME,
        format!("trace {} not in Tempo ({last_error})", probe.trace_id),
        match pulse {
            Some(pulse) => span_export_cause(pulse).await,
            None => "the trace never reached Tempo".to_owned(),
        },
    )
}

/// Every `service.name` of a Tempo trace, whatever the shape (`batches` or
/// `resourceSpans`, in the `trace` object of the v2 API or not).
fn service_names(trace: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut stack = vec![trace];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                if map.get("key").and_then(Value::as_str) == Some("service.name")
                    && let Some(name) = map["value"]["stringValue"].as_str()
                {
                    names.insert(name.to_owned());
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    names
}

/// Why Pulse's spans are not arriving, from its own counters of them.
async fn span_export_cause(pulse: &Endpoint) -> String {
    let Ok((_, body)) = pulse.get("/metrics", &[], &[]).await else {
        return "the trace never reached Tempo, and Pulse's /metrics cannot be read".to_owned();
    };
    let text = String::from_utf8_lossy(&body);
    let sum = |name: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let (exported, dropped) = (
        sum("pulse_spans_exported_total"),
        sum("pulse_spans_dropped_total"),
    );
    if dropped > 0.0 {
        format!(
            "Pulse dropped {dropped} spans ({exported} exported): its OTLP endpoint \
             (OTEL_EXPORTER_OTLP_ENDPOINT) is unreachable or refusing"
        )
    } else if exported == 0.0 {
        "Pulse has exported no spans: set OTEL_EXPORTER_OTLP_ENDPOINT (chart: \
         otel.exporterOtlpEndpoint, or global.otelCollector.enabled in pulse-stack)"
            .to_owned()
    } else {
        format!(
            "Pulse exported {exported} spans but this trace is not in Tempo: the collector's \
             traces pipeline does not reach Tempo"
        )
    }
}

/// The probe's access line is in Loki, found by its trace id.
pub async fn loki(
    loki: Option<&Endpoint>,
    probe: Option<&Probe>,
    namespace: Option<&str>,
    deadline: Instant,
) -> Check {
    const NAME: &str = "loki.logs";
    let Some(loki) = loki else {
        return Check::skip(NAME, "no --loki URL (or --kube)");
    };
    let Some(probe) = probe else {
        return Check::skip(NAME, "no request sent through Pulse (see pulse.ready)");
    };
    // A stream selector needs one non-empty matcher: the namespace the collector
    // puts on every pod's records, or any service.
    let stream = match namespace {
        Some(ns) => format!("{{k8s_namespace_name=\"{ns}\"}}"),
        None => "{service_name=~\".+\"}".to_owned(),
    };
    let query = format!("{stream} |= \"{}\"", probe.trace_id);
    let start = (std::time::SystemTime::now() - std::time::Duration::from_secs(900))
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        .to_string();
    let mut last_error = String::new();
    let found = poll(deadline, async || {
        match loki
            .get_json(
                "/loki/api/v1/query_range",
                &[("query", &query), ("start", &start), ("limit", "10")],
            )
            .await
        {
            Ok(answer) => answer["data"]["result"]
                .as_array()
                .is_some_and(|streams| !streams.is_empty()),
            Err(e) => {
                last_error = e.to_string();
                false
            }
        }
    })
    .await;
    if found {
        Check::pass(
            NAME,
            format!("the access line of trace {} is in Loki", probe.trace_id),
        )
    } else {
        Check::fail(
            NAME,
            format!(
                "no line for `{query}`{}",
                if last_error.is_empty() {
                    String::new()
                } else {
                    format!(" ({last_error})")
                }
            ),
            "the collector does not ship Pulse's pod logs to Loki: can it read /var/log/pods \
             (root-owned 0640 files)? is its logs pipeline exporting to Loki's /otlp?",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_service_names_in_both_trace_shapes() {
        let attr =
            |name: &str| serde_json::json!({"key": "service.name", "value": {"stringValue": name}});
        let v1 = serde_json::json!({"batches": [{"resource": {"attributes": [attr("pulse")]}}]});
        let v2 = serde_json::json!({"trace": {"resourceSpans": [
            {"resource": {"attributes": [attr("pulse")]}},
            {"resource": {"attributes": [attr("pulse-backend")]}}]}});
        assert_eq!(service_names(&v1), BTreeSet::from(["pulse".to_owned()]));
        assert_eq!(service_names(&v2).len(), 2);
    }
}

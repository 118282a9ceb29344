//! End-to-end checks on a real cluster, after `make kind-up` (or any install of the chart).
//!
//! Ignored by `cargo test` (they report as ignored, not passed); `make e2e` runs them with
//! `--ignored`. Uses the current kube context and only the Kubernetes API (port-forwards and the
//! API server's service proxy): no kubectl needed.
//! `PULSE_E2E_NAMESPACE` (default `monitoring`) and `PULSE_E2E_RELEASE` (default `pulse`) say where;
//! the Pulse objects are found by their labels, so any release name works (the chart names them
//! `<release>-pulse` unless the release name contains `pulse`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

struct Lab {
    client: kube::Client,
    namespace: String,
    release: String,
    /// The name of Pulse's Service and Deployment (and Prometheus's `job` label).
    name: String,
}

/// Why these tests are ignored by `cargo test`: `make e2e` runs them with `--ignored`.
const NEEDS_A_CLUSTER: &str =
    "needs a cluster with the chart installed: make kind-up, then make e2e";

/// The lab in the current kube context.
async fn lab() -> Lab {
    let client = kube::Client::try_default()
        .await
        .unwrap_or_else(|e| panic!("no kube context ({e}): {NEEDS_A_CLUSTER}"));
    let mut lab = Lab {
        client,
        namespace: std::env::var("PULSE_E2E_NAMESPACE").unwrap_or_else(|_| "monitoring".into()),
        release: std::env::var("PULSE_E2E_RELEASE").unwrap_or_else(|_| "pulse".into()),
        name: String::new(),
    };
    let services = lab
        .api::<Service>()
        .list(&ListParams::default().labels(&lab.server_selector()))
        .await
        .unwrap();
    let names: Vec<String> = services
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    let [name] = names.as_slice() else {
        panic!(
            "expected one Pulse Service for release {} in {}, found {names:?}: {NEEDS_A_CLUSTER}",
            lab.release, lab.namespace
        );
    };
    lab.name = name.clone();
    lab
}

impl Lab {
    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// A running, ready pod matching `selector`.
    async fn pod(&self, selector: &str) -> String {
        self.ready_pods(selector)
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no ready pod for {selector}"))
    }

    /// GET through a port-forward to `pod:port`.
    async fn forward_get(
        &self,
        pod: &str,
        port: u16,
        path: &str,
        auth: Option<&str>,
    ) -> (StatusCode, Value) {
        let (status, _, body) = self.forward(pod, port, path, auth).await;
        (status, body)
    }

    /// Like [`Lab::forward_get`], with the response headers.
    async fn forward(
        &self,
        pod: &str,
        port: u16,
        path: &str,
        auth: Option<&str>,
    ) -> (StatusCode, http::HeaderMap, Value) {
        let mut request = Request::get(path);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        self.send(pod, port, request, Bytes::new()).await
    }

    /// POST a JSON body through a port-forward to `pod:port`.
    async fn forward_post(
        &self,
        pod: &str,
        port: u16,
        path: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        let request = Request::post(path).header("content-type", "application/json");
        let (status, _, answer) = self
            .send(pod, port, request, Bytes::from(body.to_string()))
            .await;
        (status, answer)
    }

    /// Sends one request through a port-forward to `pod:port`; the answer as JSON
    /// (`null` when it is not).
    async fn send(
        &self,
        pod: &str,
        port: u16,
        request: http::request::Builder,
        body: Bytes,
    ) -> (StatusCode, http::HeaderMap, Value) {
        let (status, headers, body) = self.send_raw(pod, port, request, body).await;
        (
            status,
            headers,
            serde_json::from_slice(&body).unwrap_or(Value::Null),
        )
    }

    /// GET through a port-forward to `pod:port`, the body as text (`/metrics`).
    async fn forward_text(&self, pod: &str, port: u16, path: &str) -> String {
        let (status, _, body) = self
            .send_raw(pod, port, Request::get(path), Bytes::new())
            .await;
        assert_eq!(status, StatusCode::OK, "GET {path} on {pod}");
        String::from_utf8_lossy(&body).into_owned()
    }

    /// Sends one request through a port-forward to `pod:port`; the answer's bytes.
    async fn send_raw(
        &self,
        pod: &str,
        port: u16,
        request: http::request::Builder,
        body: Bytes,
    ) -> (StatusCode, http::HeaderMap, Bytes) {
        let mut forwarder = self.api::<Pod>().portforward(pod, &[port]).await.unwrap();
        let stream = forwarder.take_stream(port).unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let request = request
            .header("host", "localhost")
            .body(Full::new(body))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, body)
    }

    /// Every running, ready pod matching `selector`.
    async fn ready_pods(&self, selector: &str) -> Vec<String> {
        let pods = self
            .api::<Pod>()
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap();
        pods.items
            .into_iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .filter_map(|p| p.metadata.name)
            .collect()
    }

    /// GET through the API server's service proxy: routed like in-cluster traffic, to ready pods.
    async fn service_get(&self, service: &str, path: &str) -> Result<StatusCode, kube::Error> {
        let uri = format!(
            "/api/v1/namespaces/{}/services/{service}:http/proxy{path}",
            self.namespace
        );
        let request = Request::get(uri).body(Vec::new()).unwrap();
        match self.client.request_text(request).await {
            Ok(_) => Ok(StatusCode::OK),
            Err(kube::Error::Api(status)) => {
                Ok(StatusCode::from_u16(status.code).unwrap_or(StatusCode::BAD_GATEWAY))
            }
            Err(e) => Err(e),
        }
    }

    fn pulse_selector(&self) -> String {
        format!(
            "app.kubernetes.io/name=pulse,app.kubernetes.io/instance={}",
            self.release
        )
    }

    /// Pulse's own objects (not the load generator's or the test pods').
    fn server_selector(&self) -> String {
        format!(
            "{},app.kubernetes.io/component=server",
            self.pulse_selector()
        )
    }
}

async fn eventually<F: std::future::Future<Output = bool>>(
    limit: Duration,
    mut check: impl FnMut() -> F,
) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

#[tokio::test]
#[ignore = "needs a cluster with the chart installed: make kind-up, then make e2e"]
async fn deployment_is_available_and_pulse_answers_through_a_port_forward() {
    let lab = lab().await;
    let deployment = lab.api::<Deployment>().get(&lab.name).await.unwrap();
    let status = deployment.status.unwrap();
    assert_eq!(
        status.available_replicas,
        deployment.spec.unwrap().replicas,
        "all replicas available"
    );
    let pod = lab.pod(&lab.pulse_selector()).await;
    let (code, ready) = lab.forward_get(&pod, 8080, "/readyz", None).await;
    assert_eq!(
        (code, ready["status"].as_str()),
        (StatusCode::OK, Some("ready"))
    );
    let (_, root) = lab.forward_get(&pod, 8080, "/", None).await;
    assert_eq!(
        root["pod"],
        pod.as_str(),
        "the downward API reached the process"
    );
}

#[tokio::test]
#[ignore = "needs a cluster with the chart installed: make kind-up, then make e2e"]
async fn prometheus_scrapes_pulse_and_loaded_its_rules() {
    let lab = lab().await;
    let prometheus = lab.pod("app.kubernetes.io/name=prometheus").await;
    let query = format!("/api/v1/query?query=min(up%7Bjob%3D%22{}%22%7D)", lab.name);
    let up = eventually(Duration::from_secs(120), || async {
        let (_, answer) = lab.forward_get(&prometheus, 9090, &query, None).await;
        answer["data"]["result"][0]["value"][1] == "1"
    })
    .await;
    assert!(up, "up{{job=\"{}\"}} is not 1", lab.name);
    let (_, rules) = lab
        .forward_get(&prometheus, 9090, "/api/v1/rules", None)
        .await;
    let groups = rules["data"]["groups"].as_array().unwrap();
    for name in ["pulse.alerts", "pulse.slo.recording"] {
        let group = groups
            .iter()
            .find(|g| g["name"] == name)
            .unwrap_or_else(|| panic!("{name} not loaded"));
        for rule in group["rules"].as_array().unwrap() {
            assert_eq!(
                rule["health"], "ok",
                "{}: {}",
                rule["name"], rule["lastError"]
            );
        }
    }
}

#[tokio::test]
#[ignore = "needs a cluster with the chart installed: make kind-up, then make e2e"]
async fn grafana_lists_the_three_pulse_dashboards() {
    let lab = lab().await;
    let secret = lab
        .api::<Secret>()
        .get("pulse-grafana-admin")
        .await
        .unwrap();
    let data = secret.data.unwrap();
    let user = String::from_utf8(data["admin-user"].0.clone()).unwrap();
    let password = String::from_utf8(data["admin-password"].0.clone()).unwrap();
    use base64::Engine as _;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    let grafana = lab.pod("app.kubernetes.io/name=grafana").await;
    let listed = eventually(Duration::from_secs(120), || async {
        let (_, found) = lab
            .forward_get(
                &grafana,
                3000,
                "/api/search?tag=pulse&type=dash-db",
                Some(&auth),
            )
            .await;
        let uids: Vec<&str> = found
            .as_array()
            .map(|a| a.iter().filter_map(|d| d["uid"].as_str()).collect())
            .unwrap_or_default();
        ["pulse-overview", "pulse-runtime", "pulse-slo"]
            .iter()
            .all(|u| uids.contains(u))
    })
    .await;
    assert!(listed, "Grafana does not list the Pulse dashboards");
}

#[tokio::test]
#[ignore = "needs a cluster with the chart installed: make kind-up, then make e2e"]
async fn editing_the_runtime_configmap_changes_behaviour_and_publishes_an_event() {
    let lab = lab().await;
    let configmaps = lab.api::<ConfigMap>();
    let name = format!("{}-runtime", lab.name);
    let patch = |rate: &str| Patch::Merge(json!({"data": {"fault_error_rate": rate}}));
    let since = k8s_openapi::jiff::Timestamp::now();
    configmaps
        .patch(&name, &PatchParams::default(), &patch("1"))
        .await
        .unwrap();
    let failing = eventually(Duration::from_secs(10), || async {
        lab.service_get(&lab.name, "/api/users").await.ok()
            == Some(StatusCode::INTERNAL_SERVER_ERROR)
    })
    .await;
    configmaps
        .patch(&name, &PatchParams::default(), &patch("0"))
        .await
        .unwrap();
    assert!(failing, "fault_error_rate=1 did not apply within 10 s");
    let announced = eventually(Duration::from_secs(10), || async {
        let events = lab
            .api::<Event>()
            .list(&ListParams::default())
            .await
            .unwrap();
        events.items.iter().any(|e| {
            e.reason.as_deref() == Some("ConfigApplied")
                && e.event_time.as_ref().is_some_and(|t| t.0 >= since)
        })
    })
    .await;
    assert!(announced, "no ConfigApplied Event");
}

#[tokio::test]
#[ignore = "needs a cluster with the chart installed: make kind-up, then make e2e"]
async fn a_rolling_restart_under_steady_load_fails_no_request() {
    let lab = lab().await;
    let lab = Arc::new(lab);
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stop = Arc::new(tokio::sync::Notify::new());
    let load = {
        let (lab, sent, failed, stop) = (lab.clone(), sent.clone(), failed.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.notified() => return,
                    result = lab.service_get(&lab.name, "/api/users") => {
                        sent.fetch_add(1, Ordering::Relaxed);
                        if result.ok() != Some(StatusCode::OK) {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let deployments = lab.api::<Deployment>();
    let restarted_at = k8s_openapi::jiff::Timestamp::now().to_string();
    let restart = json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": restarted_at}}}}});
    deployments
        .patch(&lab.name, &PatchParams::default(), &Patch::Merge(restart))
        .await
        .unwrap();
    let done = eventually(Duration::from_secs(300), || async {
        let d = deployments.get(&lab.name).await.unwrap();
        let (spec, status) = (d.spec.unwrap(), d.status.unwrap_or_default());
        let want = spec.replicas.unwrap_or(1);
        status.observed_generation >= d.metadata.generation
            && status.updated_replicas == Some(want)
            && status.available_replicas == Some(want)
            && status.replicas == Some(want)
    })
    .await;
    stop.notify_one();
    load.await.unwrap();
    assert!(done, "the rollout did not complete");
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(sent > 50, "only {sent} requests sent");
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed during the rollout"
    );
}

#[tokio::test]
#[ignore = "needs a cluster with the chart installed: make kind-up, then make e2e"]
async fn the_lab_pulse_calls_its_backend_pulse_in_another_pod() {
    let lab = lab().await;
    let pulse = lab.pod(&lab.server_selector()).await;
    let backend = lab
        .pod(&format!(
            "app.kubernetes.io/name=pulse-backend,app.kubernetes.io/instance={}",
            lab.release
        ))
        .await;
    let (status, answer) = lab.forward_get(&pulse, 8080, "/api/backend", None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["pod"], pulse.as_str());
    assert_eq!(answer["hop"], 0);
    let downstream = &answer["backend"];
    assert_eq!(downstream["hop"], 1, "{answer}");
    assert!(
        downstream["pod"]
            .as_str()
            .is_some_and(|p| p.starts_with(backend.rsplitn(3, '-').last().unwrap_or(""))),
        "the backend's answer comes from a pulse-backend pod: {answer}"
    );
    assert_eq!(
        downstream["backend"],
        Value::Null,
        "the backend ends the chain"
    );
}

#[tokio::test]
#[ignore = "needs a cluster with the chart installed: make kind-up, then make e2e"]
async fn both_replicas_tell_the_same_story_from_the_bundled_postgresql() {
    let lab = lab().await;
    let pods = lab.ready_pods(&lab.server_selector()).await;
    let [first, second, ..] = pods.as_slice() else {
        panic!("the lab runs two Pulse replicas, found {pods:?}");
    };
    let (status, created) = lab
        .forward_post(
            first,
            8080,
            "/api/users",
            &json!({"name": "e2e", "email": "e2e@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_u64().unwrap();
    let (status, read) = lab
        .forward_get(second, 8080, &format!("/api/users/{id}"), None)
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "written on {first}, read on {second}"
    );
    assert_eq!(read, created);
}

/// The lab's Pulse runs with the bundled Redis in front of PostgreSQL: a user
/// written on one replica and read twice on the other is a miss, then a hit there,
/// and the hit shows in that pod's `pulse_cache_requests_total`.
#[tokio::test]
#[ignore = "needs a cluster with the chart installed: make kind-up, then make e2e"]
async fn a_second_read_through_the_lab_is_a_cache_hit() {
    let lab = lab().await;
    let pods = lab.ready_pods(&lab.server_selector()).await;
    let [first, second, ..] = pods.as_slice() else {
        panic!("the lab runs two Pulse replicas, found {pods:?}");
    };
    let hits = |metrics: &str| -> f64 {
        metrics
            .lines()
            .filter(|line| {
                line.starts_with("pulse_cache_requests_total{")
                    && line.contains("entity=\"user\"")
                    && line.contains("result=\"hit\"")
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let before = lab.forward_text(second, 8080, "/metrics").await;
    assert!(
        before.contains("pulse_cache_requests_total"),
        "the lab's Pulse has no cache (redis.enabled in the kind values?)"
    );
    let (status, created) = lab
        .forward_post(
            first,
            8080,
            "/api/users",
            &json!({"name": "cached", "email": "cached@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let path = format!("/api/users/{}", created["id"]);
    for _ in 0..2 {
        let (status, read) = lab.forward_get(second, 8080, &path, None).await;
        assert_eq!((status, &read), (StatusCode::OK, &created));
    }
    let after = lab.forward_text(second, 8080, "/metrics").await;
    assert!(
        hits(&after) > hits(&before),
        "no cache hit on {second}: {} before, {} after",
        hits(&before),
        hits(&after)
    );
}

#[tokio::test]
#[ignore = "needs a cluster with the chart installed: make kind-up, then make e2e"]
async fn a_requests_trace_and_its_logs_reach_tempo_and_loki_from_both_pods() {
    let lab = lab().await;
    let pulse = lab.pod(&lab.server_selector()).await;
    let (status, headers, _) = lab.forward(&pulse, 8080, "/api/backend", None).await;
    assert_eq!(status, StatusCode::OK);
    let traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let trace = traceparent.split('-').nth(1).unwrap_or_default().to_owned();
    assert_eq!(trace.len(), 32, "traceparent {traceparent:?}");

    // Tempo: the trace, with spans of both Pulses (their service.name is their Service's name).
    let tempo = lab.pod("app.kubernetes.io/name=tempo").await;
    let backend = format!("{}-pulse-backend", lab.release);
    let found = eventually(Duration::from_secs(60), || async {
        let (status, answer) = lab
            .forward_get(&tempo, 3200, &format!("/api/traces/{trace}"), None)
            .await;
        let text = answer.to_string();
        status == StatusCode::OK
            && text.contains(&format!("\"{}\"", lab.name))
            && text.contains(&backend)
    })
    .await;
    assert!(
        found,
        "trace {trace} with spans of {} and {backend} not in Tempo within 60 s",
        lab.name
    );

    // Loki: the request's log lines, found by its trace id.
    let loki = lab.pod("app.kubernetes.io/name=loki").await;
    let query = format!(
        "/loki/api/v1/query_range?since=10m&limit=10&query=%7Bk8s_namespace_name%3D%22{}%22%7D%20%7C%3D%20%22{trace}%22",
        lab.namespace
    );
    let logged = eventually(Duration::from_secs(60), || async {
        let (status, answer) = lab.forward_get(&loki, 3100, &query, None).await;
        status == StatusCode::OK
            && answer["data"]["result"]
                .as_array()
                .is_some_and(|streams| !streams.is_empty())
    })
    .await;
    assert!(
        logged,
        "no log line with trace_id {trace} in Loki within 60 s"
    );
}

/// One instant query's first value through a port-forward to the lab's Prometheus.
async fn prometheus_value(lab: &Lab, prometheus: &str, promql: &str) -> Option<f64> {
    let query = serde_urlencoded::to_string([("query", promql)]).ok()?;
    let (_, answer) = lab
        .forward_get(prometheus, 9090, &format!("/api/v1/query?{query}"), None)
        .await;
    answer["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
#[ignore = "needs a cluster with the chart installed: make kind-up, then make e2e"]
async fn the_labs_prometheus_keeps_native_and_classic_latency_histograms() {
    // The both-kinds mode of serviceMonitor.nativeHistograms, which the tests on this machine's
    // Prometheus 2.42 cannot check (it keeps one kind per scrape): the lab's Prometheus 3 scrapes
    // protobuf and keeps the native histogram and the classic buckets of the same requests.
    let lab = lab().await;
    let prometheus = lab.pod("app.kubernetes.io/name=prometheus").await;
    let job = &lab.name;
    let classic =
        format!("sum(rate(http_request_duration_seconds_bucket{{job=\"{job}\",le=\"+Inf\"}}[2m]))");
    let native =
        format!("sum(histogram_count(rate(http_request_duration_seconds{{job=\"{job}\"}}[2m])))");
    let last = std::sync::Mutex::new((None, None));
    let both = eventually(Duration::from_secs(180), || {
        let (classic, native) = (classic.clone(), native.clone());
        let (lab, prometheus, last) = (&lab, &prometheus, &last);
        async move {
            let read = (
                prometheus_value(lab, prometheus, &classic).await,
                prometheus_value(lab, prometheus, &native).await,
            );
            *last.lock().unwrap() = read;
            matches!(read, (Some(c), Some(n)) if c > 0.0 && (n - c).abs() <= 0.1 * c)
        }
    })
    .await;
    assert!(
        both,
        "classic and native request rates of job {job} (the load generator runs): {:?}",
        last.lock().unwrap()
    );
}

//! The ConfigMap watcher and the Event publisher against kube's mock API service
//! (`tower_test::mock::pair`): the exact requests they make, how they react to
//! add/modify/delete, to 403 and to timeouts.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Exposition;
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use pulse::cluster::events::{self, EventPublisher, PodEvent};
use pulse::cluster::{KubeConfig, KubeErrors, configmap};
use pulse::config::PodIdentity;
use pulse::settings::RuntimeSettings;
use pulse::settings::{LiveSettings, Notifier, SettingsChange, Source};
use pulse::telemetry::Metrics;
use serde_json::{Value, json};
use tower_test::mock;

type Handle = mock::Handle<Request<Body>, Response<Body>>;

fn mock_client() -> (kube::Client, Handle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

fn metrics() -> Arc<Metrics> {
    Metrics::new(
        opentelemetry_sdk::Resource::builder_empty().build(),
        &pulse::BuildInfo::current(),
        Instant::now(),
    )
    .unwrap()
}

fn counter(metrics: &Metrics, name: &str, label: (&str, &str)) -> f64 {
    let text = String::from_utf8(metrics.encode().unwrap()).unwrap();
    Exposition::parse(&text).value(name, &[label])
}

#[derive(Default)]
struct Recorded(Mutex<Vec<SettingsChange>>);

impl Notifier for Recorded {
    fn notify(&self, change: &SettingsChange) {
        self.0.lock().unwrap().push(change.clone());
    }
}

async fn next_request(handle: &mut Handle) -> (Request<Body>, mock::SendResponse<Response<Body>>) {
    tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .expect("the client made no request in time")
        .expect("the client went away")
}

fn respond(send: mock::SendResponse<Response<Body>>, status: StatusCode, body: Vec<u8>) {
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(body))
            .unwrap(),
    );
}

fn config_map(rv: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "pulse-runtime", "namespace": "default", "resourceVersion": rv},
           "data": data})
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Watch {
    settings: Arc<LiveSettings>,
    recorded: Arc<Recorded>,
    metrics: Arc<Metrics>,
    handle: Handle,
}

fn start_watch() -> Watch {
    let (client, handle) = mock_client();
    let metrics = metrics();
    let recorded = Arc::new(Recorded::default());
    let settings = Arc::new(
        LiveSettings::new(RuntimeSettings::default(), metrics.clone())
            .with_notifier(Some(recorded.clone())),
    );
    let errors = KubeErrors::new(metrics.clone());
    tokio::spawn(configmap::watch(
        client,
        "default".into(),
        "pulse-runtime".into(),
        settings.clone(),
        errors,
    ));
    Watch {
        settings,
        recorded,
        metrics,
        handle,
    }
}

#[tokio::test]
async fn watcher_lists_one_configmap_by_name_then_follows_changes() {
    let mut w = start_watch();

    // 1. A list of exactly that ConfigMap, selected by name (what RBAC resourceNames allows).
    let (req, send) = next_request(&mut w.handle).await;
    assert_eq!(req.method(), Method::GET);
    assert_eq!(req.uri().path(), "/api/v1/namespaces/default/configmaps");
    let query = req.uri().query().unwrap_or_default().to_owned();
    assert!(
        query.contains("fieldSelector=metadata.name%3Dpulse-runtime"),
        "{query}"
    );
    assert!(!query.contains("watch=true"), "{query}");
    let list = json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {"resourceVersion": "1"},
                      "items": [config_map("1", json!({"fault_error_rate": "0.5"}))]});
    respond(send, StatusCode::OK, serde_json::to_vec(&list).unwrap());
    eventually("the listed data", || {
        w.settings.current().fault_error_rate == 0.5
    })
    .await;

    // 2. A watch from that resourceVersion: a change, a bad change, a delete.
    let (req, send) = next_request(&mut w.handle).await;
    let query = req.uri().query().unwrap_or_default().to_owned();
    assert_eq!(req.uri().path(), "/api/v1/namespaces/default/configmaps");
    assert!(
        query.contains("watch=true") && query.contains("resourceVersion=1"),
        "{query}"
    );
    assert!(
        query.contains("fieldSelector=metadata.name%3Dpulse-runtime"),
        "{query}"
    );
    let events = [
        json!({"type": "MODIFIED", "object": config_map("2", json!({"fault_error_rate": "0.75", "force_unready": "true"}))}),
        json!({"type": "MODIFIED", "object": config_map("3", json!({"fault_error_rate": "2"}))}),
        json!({"type": "DELETED", "object": config_map("4", json!({}))}),
    ];
    let body = events
        .iter()
        .map(|e| e.to_string() + "\n")
        .collect::<String>();
    respond(send, StatusCode::OK, body.into_bytes());

    eventually("all three watch events", || {
        w.recorded.0.lock().unwrap().len() == 4
    })
    .await;
    let changes = w.recorded.0.lock().unwrap().clone();
    let applied: Vec<Value> = changes
        .iter()
        .filter_map(|c| match c {
            SettingsChange::Applied { settings, .. } => serde_json::from_str(settings).ok(),
            SettingsChange::Rejected { .. } => None,
        })
        .collect();
    assert_eq!(applied[0]["fault_error_rate"], 0.5);
    assert_eq!(
        (
            applied[1]["fault_error_rate"].clone(),
            applied[1]["force_unready"].clone()
        ),
        (json!(0.75), json!(true))
    );
    assert!(
        matches!(&changes[2], SettingsChange::Rejected { source: Source::ConfigMap, reason } if reason.contains("between 0 and 1"))
    );
    assert_eq!(
        applied[2]["fault_error_rate"], 0.0,
        "the delete restored the flags"
    );
    assert_eq!(*w.settings.current(), RuntimeSettings::default());
    assert_eq!(
        counter(
            &w.metrics,
            "pulse_config_reloads_total",
            ("result", "applied")
        ),
        3.0
    );
    assert_eq!(
        counter(
            &w.metrics,
            "pulse_config_reloads_total",
            ("result", "rejected")
        ),
        1.0
    );
}

#[tokio::test]
async fn a_missing_configmap_leaves_the_flags_in_force() {
    let mut w = start_watch();
    let (_, send) = next_request(&mut w.handle).await;
    let empty = json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {"resourceVersion": "7"}, "items": []});
    respond(send, StatusCode::OK, serde_json::to_vec(&empty).unwrap());
    let (req, _send) = next_request(&mut w.handle).await;
    assert!(
        req.uri()
            .query()
            .unwrap_or_default()
            .contains("resourceVersion=7")
    );
    assert_eq!(*w.settings.current(), RuntimeSettings::default());
    assert!(
        w.recorded.0.lock().unwrap().is_empty(),
        "nothing changed, nothing announced"
    );
}

#[tokio::test]
async fn forbidden_and_timed_out_calls_are_counted_and_retried() {
    let mut w = start_watch();
    let forbidden = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
                           "message": "configmaps \"pulse-runtime\" is forbidden: User cannot list resource"});
    let (_, send) = next_request(&mut w.handle).await;
    respond(
        send,
        StatusCode::FORBIDDEN,
        serde_json::to_vec(&forbidden).unwrap(),
    );
    // The watcher backs off and tries again.
    let (_, send) = next_request(&mut w.handle).await;
    send.send_error(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "request timed out",
    ));
    let (req, _send) = next_request(&mut w.handle).await;
    assert_eq!(req.uri().path(), "/api/v1/namespaces/default/configmaps");
    assert_eq!(
        counter(
            &w.metrics,
            "pulse_kube_errors_total",
            ("operation", "watch")
        ),
        2.0
    );
    assert_eq!(
        *w.settings.current(),
        RuntimeSettings::default(),
        "errors change nothing"
    );
}

fn pod() -> KubeConfig {
    KubeConfig {
        configmap: "pulse-runtime".into(),
        pod: PodIdentity {
            name: Some("pulse-7d9f-abcde".into()),
            namespace: Some("monitoring".into()),
            node: None,
            uid: Some("2f0c6a9e-1111-2222-3333-444455556666".into()),
        },
    }
}

#[tokio::test]
async fn events_are_posted_about_the_pod_and_failures_do_not_stop_the_publisher() {
    let (client, mut handle) = mock_client();
    let metrics = metrics();
    let errors = KubeErrors::new(metrics.clone());
    let (publisher, queue) = EventPublisher::channel();
    let reference = events::pod_reference(&pod(), "monitoring").unwrap();
    tokio::spawn(events::run(client, reference, queue, errors));

    publisher.publish(PodEvent::normal("Started", "pulse 0.1.0 started"));
    let (req, send) = next_request(&mut handle).await;
    assert_eq!(req.method(), Method::POST);
    assert_eq!(
        req.uri().path(),
        "/apis/events.k8s.io/v1/namespaces/monitoring/events"
    );
    let body: Value =
        serde_json::from_slice(&req.into_body().collect_bytes().await.unwrap()).unwrap();
    assert_eq!(body["reason"], "Started");
    assert_eq!(body["type"], "Normal");
    assert_eq!(body["note"], "pulse 0.1.0 started");
    assert_eq!(body["reportingController"], "pulse");
    assert_eq!(body["reportingInstance"], "pulse-7d9f-abcde");
    assert_eq!(
        body["regarding"],
        json!({"apiVersion": "v1", "kind": "Pod", "name": "pulse-7d9f-abcde",
        "namespace": "monitoring", "uid": "2f0c6a9e-1111-2222-3333-444455556666"})
    );
    respond(
        send,
        StatusCode::CREATED,
        serde_json::to_vec(&body).unwrap(),
    );

    // A rejected configuration becomes a Warning; RBAC denies it.
    publisher.notify(&SettingsChange::Rejected {
        source: Source::ConfigMap,
        reason: "fault_error_rate: 2 is not between 0 and 1".into(),
    });
    let (req, send) = next_request(&mut handle).await;
    let body: Value =
        serde_json::from_slice(&req.into_body().collect_bytes().await.unwrap()).unwrap();
    assert_eq!(
        (body["reason"].clone(), body["type"].clone()),
        (json!("ConfigRejected"), json!("Warning"))
    );
    assert!(body["note"].as_str().unwrap().contains("previous kept"));
    respond(send, StatusCode::FORBIDDEN, br#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403}"#.to_vec());

    // The publisher goes on with the next event.
    publisher.publish(PodEvent::normal("ShuttingDown", "SIGTERM"));
    let (req, _send) = next_request(&mut handle).await;
    let body: Value =
        serde_json::from_slice(&req.into_body().collect_bytes().await.unwrap()).unwrap();
    assert_eq!(body["reason"], "ShuttingDown");
    assert_eq!(
        counter(&metrics, "pulse_kube_errors_total", ("operation", "event")),
        1.0
    );
}

#[test]
fn without_pod_name_there_is_nothing_to_publish_about() {
    let mut config = pod();
    config.pod.name = None;
    assert!(events::pod_reference(&config, "monitoring").is_none());
}

/// A kube API double for `pulse doctor`'s selector check: answers each request by its path from
/// `objects` (path -> JSON), 404 otherwise, until the check is done.
async fn doctor_selector_checks(objects: Vec<(&'static str, Value)>) -> Vec<pulse::doctor::Check> {
    let (client, mut handle) = mock_client();
    let check = tokio::spawn(async move {
        pulse::doctor::selector_checks(&client, "monitoring", "pulse").await
    });
    let server = tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let path = req.uri().path().to_owned();
            match objects.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => respond(send, StatusCode::OK, serde_json::to_vec(body).unwrap()),
                None => respond(
                    send,
                    StatusCode::NOT_FOUND,
                    serde_json::to_vec(
                        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "NotFound", "code": 404, "message": format!("{path} not found")}),
                    )
                    .unwrap(),
                ),
            }
        }
    });
    let checks = tokio::time::timeout(Duration::from_secs(10), check)
        .await
        .expect("the selector check finished")
        .unwrap();
    server.abort();
    checks
}

/// The cluster kube-prometheus-stack makes: a Prometheus selecting ServiceMonitors and rules by
/// `release`, in `monitoring`, and Pulse's objects labelled with `labels`.
fn cluster(
    selector: Value,
    namespace_selector: Value,
    labels: Value,
) -> Vec<(&'static str, Value)> {
    let prometheus = json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus",
        "metadata": {"name": "pulse-kps-prometheus", "namespace": "monitoring"},
        "spec": {"serviceMonitorSelector": selector, "serviceMonitorNamespaceSelector": namespace_selector,
                 "ruleSelector": {"matchLabels": {"release": "pulse"}}, "ruleNamespaceSelector": {}}});
    let object = |kind: &str| {
        json!({"apiVersion": "monitoring.coreos.com/v1", "kind": kind,
        "metadata": {"name": "pulse", "namespace": "monitoring", "labels": labels.clone()}, "spec": {}})
    };
    vec![
        (
            "/apis/monitoring.coreos.com/v1/prometheuses",
            json!({"apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusList", "metadata": {}, "items": [prometheus]}),
        ),
        (
            "/apis/monitoring.coreos.com/v1/namespaces/monitoring/servicemonitors/pulse",
            object("ServiceMonitor"),
        ),
        (
            "/apis/monitoring.coreos.com/v1/namespaces/monitoring/prometheusrules/pulse",
            object("PrometheusRule"),
        ),
        (
            "/api/v1/namespaces/monitoring",
            json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "monitoring", "labels": {"kubernetes.io/metadata.name": "monitoring"}}}),
        ),
    ]
}

fn verdict(checks: &[pulse::doctor::Check], name: &str) -> (pulse::doctor::Status, String) {
    let check = checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no {name} in {checks:?}"));
    (check.status, check.cause.clone())
}

#[tokio::test]
async fn doctor_sees_the_prometheus_select_pulses_servicemonitor_and_rules() {
    let checks = doctor_selector_checks(cluster(
        json!({"matchLabels": {"release": "pulse"}}),
        json!({}),
        json!({"release": "pulse", "app.kubernetes.io/name": "pulse"}),
    ))
    .await;
    assert_eq!(
        verdict(&checks, "prometheus.selector").0,
        pulse::doctor::Status::Pass,
        "{checks:?}"
    );
    assert_eq!(
        verdict(&checks, "prometheus.rule_selector").0,
        pulse::doctor::Status::Pass
    );
}

#[tokio::test]
async fn doctor_names_the_label_the_servicemonitor_lacks() {
    // The most common kube-prometheus-stack complaint: installed under another release name.
    let checks = doctor_selector_checks(cluster(
        json!({"matchLabels": {"release": "kps"}}),
        json!({}),
        json!({"release": "pulse"}),
    ))
    .await;
    let (status, cause) = verdict(&checks, "prometheus.selector");
    assert_eq!(status, pulse::doctor::Status::Fail);
    assert!(
        cause.contains("has label release=pulse, the Prometheus selects release=kps"),
        "{cause}"
    );
    let checks = doctor_selector_checks(cluster(
        json!({"matchLabels": {"release": "pulse"}, "matchExpressions": [
            {"key": "team", "operator": "Exists"}]}),
        json!({}),
        json!({"release": "pulse"}),
    ))
    .await;
    let (_, cause) = verdict(&checks, "prometheus.selector");
    assert!(cause.contains("does not match team Exists"), "{cause}");
    let checks = doctor_selector_checks(cluster(json!({}), json!({}), json!({}))).await;
    let (status, cause) = verdict(&checks, "prometheus.rule_selector");
    assert_eq!(status, pulse::doctor::Status::Fail);
    assert!(cause.contains("lacks label release=pulse"), "{cause}");
    assert_eq!(
        verdict(&checks, "prometheus.selector").0,
        pulse::doctor::Status::Pass,
        "{{}} selects all"
    );
}

#[tokio::test]
async fn doctor_explains_a_null_selector_and_a_namespace_it_does_not_watch() {
    let checks =
        doctor_selector_checks(cluster(Value::Null, json!({}), json!({"release": "pulse"}))).await;
    let (status, cause) = verdict(&checks, "prometheus.selector");
    assert_eq!(status, pulse::doctor::Status::Fail);
    assert!(cause.contains("no serviceMonitorSelector"), "{cause}");
    let checks = doctor_selector_checks(cluster(
        json!({}),
        json!({"matchLabels": {"kubernetes.io/metadata.name": "default"}}),
        json!({"release": "pulse"}),
    ))
    .await;
    let (_, cause) = verdict(&checks, "prometheus.selector");
    assert!(
        cause
            .contains("namespace the Prometheus does not select (serviceMonitorNamespaceSelector)"),
        "{cause}"
    );
}

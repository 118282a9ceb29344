//! The ConfigMap watcher and the Event publisher against kube's mock API service
//! (`tower_test::mock::pair`): the exact requests they make, how they react to
//! add/modify/delete, to 403 and to timeouts.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Exposition;
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use pulse::cluster::events::{self, EventPublisher, PodEvent};
use pulse::cluster::{KubeConfig, KubeErrors, configmap};
use pulse::config::PodIdentity;
use pulse::settings::RuntimeSettings;
use pulse::settings::{LiveSettings, Notifier, SettingsChange};
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
    let settings = Arc::new(LiveSettings::new(
        RuntimeSettings::default(),
        metrics.clone(),
    ));
    let recorded = Arc::new(Recorded::default());
    settings.set_notifier(recorded.clone());
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
        matches!(&changes[2], SettingsChange::Rejected { source: "configmap", reason } if reason.contains("between 0 and 1"))
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
        source: "configmap",
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

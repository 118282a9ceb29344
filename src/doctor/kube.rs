//! `pulse doctor --kube`: finds Pulse and the lab in the current kube context by
//! their labels, reaches each through a port-forward of the API server (so no
//! kubectl and no URLs are needed), and checks that the Prometheus custom resource
//! selects Pulse's ServiceMonitor and PrometheusRule: the most common reason a
//! kube-prometheus-stack user sees no Pulse target.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::report::Check;

/// The URLs doctor uses, from its flags; discovery fills in what they leave out.
#[derive(Debug, Default, Clone)]
pub struct Urls {
    /// Prometheus's base URL.
    pub prometheus: Option<String>,
    /// Pulse's base URL.
    pub pulse: Option<String>,
    /// Grafana's base URL.
    pub grafana: Option<String>,
    /// Tempo's base URL.
    pub tempo: Option<String>,
    /// Loki's base URL.
    pub loki: Option<String>,
    /// Grafana's user and password.
    pub grafana_auth: Option<(String, String)>,
    /// Pulse's `job` (its Service's name).
    pub job: Option<String>,
    /// Pulse's namespace.
    pub namespace: Option<String>,
}

/// The port-forwards doctor opened; they close when this is dropped.
#[derive(Debug, Default)]
pub struct Forwards(Vec<JoinHandle<()>>);

impl Drop for Forwards {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Labels Pulse's own Service carries (the chart's standard labels).
const PULSE_SERVICE: &str = "app.kubernetes.io/name=pulse,app.kubernetes.io/component=server";

/// What to look for besides Pulse: the label upstream charts give each pod, and
/// the port to forward to.
const LAB: [(&str, &str, u16); 4] = [
    ("prometheus", "app.kubernetes.io/name=prometheus", 9090),
    ("grafana", "app.kubernetes.io/name=grafana", 3000),
    ("tempo", "app.kubernetes.io/name=tempo", 3200),
    ("loki", "app.kubernetes.io/name=loki", 3100),
];

/// Finds what `urls` leaves out and forwards to it; the checks say what was found.
pub async fn discover(urls: &mut Urls) -> (Forwards, Vec<Check>) {
    let mut forwards = Forwards::default();
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(e) => {
            return (
                forwards,
                vec![Check::fail(
                    "kube.context",
                    "",
                    format!("no usable kube context: {e} (KUBECONFIG, or run inside the cluster)"),
                )],
            );
        }
    };
    let namespace = urls
        .namespace
        .get_or_insert_with(|| client.default_namespace().to_owned())
        .clone();
    let mut checks = Vec::new();
    let mut found = Vec::new();
    match pulse_service(&client, &namespace, urls.job.as_deref()).await {
        Ok((service, pod)) => {
            urls.job.get_or_insert(service.clone());
            if urls.pulse.is_none() {
                match forward(client.clone(), &namespace, &pod, 8080).await {
                    Ok((url, task)) => {
                        forwards.0.push(task);
                        urls.pulse = Some(url);
                    }
                    Err(e) => checks.push(Check::fail(
                        "kube.pulse",
                        &pod,
                        format!("cannot listen for the port-forward: {e}"),
                    )),
                }
            }
            found.push(format!("pulse (Service {service}, pod {pod})"));
        }
        Err(cause) => checks.push(Check::fail(
            "kube.pulse",
            format!("namespace {namespace}"),
            cause,
        )),
    }
    for (what, selector, port) in LAB {
        let slot = match what {
            "prometheus" => &mut urls.prometheus,
            "grafana" => &mut urls.grafana,
            "tempo" => &mut urls.tempo,
            _ => &mut urls.loki,
        };
        if slot.is_some() {
            continue;
        }
        let Some((pod_namespace, pod)) = ready_pod(&client, &namespace, selector).await else {
            continue;
        };
        if what == "grafana" && urls.grafana_auth.is_none() {
            urls.grafana_auth = grafana_login(&client, &pod_namespace, &pod).await;
        }
        if let Ok((url, task)) = forward(client.clone(), &pod_namespace, &pod, port).await {
            forwards.0.push(task);
            *slot = Some(url);
            found.push(format!("{what} ({pod_namespace}/{pod})"));
        }
    }
    checks.insert(
        0,
        Check::pass("kube.discovery", format!("found {}", found.join(", "))),
    );
    if let Some(job) = &urls.job {
        checks.extend(selector_checks(&client, &namespace, job).await);
    }
    (forwards, checks)
}

/// Pulse's Service in `namespace` (the one named `job` when given) and a ready pod of it.
async fn pulse_service(
    client: &kube::Client,
    namespace: &str,
    job: Option<&str>,
) -> Result<(String, String), String> {
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let list = services
        .list(&ListParams::default().labels(PULSE_SERVICE))
        .await
        .map_err(|e| format!("cannot list Services: {e}"))?;
    let names: Vec<String> = list
        .items
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .filter(|name| job.is_none_or(|job| job == name))
        .collect();
    let service = match names.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(format!(
                "no Pulse Service ({PULSE_SERVICE}){}: is the chart installed here? (-n NAMESPACE)",
                job.map(|j| format!(" named {j}")).unwrap_or_default()
            ));
        }
        many => {
            return Err(format!(
                "several Pulse Services ({}): pick one with --job",
                many.join(", ")
            ));
        }
    };
    let selector = list
        .items
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some(service.as_str()))
        .and_then(|s| s.spec.as_ref()?.selector.as_ref())
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let (_, pod) = ready_pod(client, namespace, &selector)
        .await
        .ok_or_else(|| format!("Service {service} has no ready pod"))?;
    Ok((service, pod))
}

/// A running, ready pod matching `selector`: in `namespace` first, else anywhere.
async fn ready_pod(
    client: &kube::Client,
    namespace: &str,
    selector: &str,
) -> Option<(String, String)> {
    let params = ListParams::default().labels(selector);
    let here: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let everywhere: Api<Pod> = Api::all(client.clone());
    for api in [here, everywhere] {
        let Ok(pods) = api.list(&params).await else {
            continue;
        };
        let ready = pods.items.into_iter().find(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        });
        if let Some(pod) = ready {
            return Some((pod.metadata.namespace?, pod.metadata.name?));
        }
    }
    None
}

/// Grafana's admin login, from the Secret its pod reads it from (the Grafana
/// chart's `GF_SECURITY_ADMIN_USER` and `GF_SECURITY_ADMIN_PASSWORD`).
async fn grafana_login(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
) -> Option<(String, String)> {
    let pod = Api::<Pod>::namespaced(client.clone(), namespace)
        .get(pod)
        .await
        .ok()?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let env: Vec<_> = pod
        .spec?
        .containers
        .into_iter()
        .flat_map(|c| c.env.unwrap_or_default())
        .collect();
    let read = async |name: &str| -> Option<String> {
        let var = env.iter().find(|e| e.name == name)?;
        if let Some(value) = &var.value {
            return Some(value.clone());
        }
        let key = var.value_from.as_ref()?.secret_key_ref.as_ref()?;
        let secret = secrets.get(&key.name).await.ok()?;
        let bytes = secret.data?.remove(&key.key)?;
        String::from_utf8(bytes.0).ok()
    };
    let user = read("GF_SECURITY_ADMIN_USER").await?;
    let password = read("GF_SECURITY_ADMIN_PASSWORD").await?;
    Some((user, password))
}

/// Listens on a loopback port and forwards each connection to `pod:port` through
/// the API server; the URL to use, and the task to abort when done.
async fn forward(
    client: kube::Client,
    namespace: &str,
    pod: &str,
    port: u16,
) -> std::io::Result<(String, JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    let pod = pod.to_owned();
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (pods, pod) = (pods.clone(), pod.clone());
            tokio::spawn(async move {
                let Ok(mut forwarder) = pods.portforward(&pod, &[port]).await else {
                    return;
                };
                if let Some(mut upstream) = forwarder.take_stream(port) {
                    // Either side closing ends the copy; nothing to report here (the
                    // HTTP client sees the connection end).
                    let _ = tokio::io::copy_bidirectional(&mut socket, &mut upstream).await;
                }
                let _ = forwarder.join().await;
            });
        }
    });
    Ok((url, task))
}

/// Which custom resource a selector check is about.
#[derive(Debug, Clone, Copy)]
enum Selected {
    ServiceMonitor,
    PrometheusRule,
}

impl Selected {
    /// The check's name, the resource's plural and the Prometheus spec fields that select it.
    fn fields(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Self::ServiceMonitor => (
                "prometheus.selector",
                "servicemonitors",
                "serviceMonitorSelector",
                "serviceMonitorNamespaceSelector",
            ),
            Self::PrometheusRule => (
                "prometheus.rule_selector",
                "prometheusrules",
                "ruleSelector",
                "ruleNamespaceSelector",
            ),
        }
    }
}

impl fmt::Display for Selected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ServiceMonitor => "ServiceMonitor",
            Self::PrometheusRule => "PrometheusRule",
        })
    }
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", kind),
        plural,
    )
}

/// Whether some Prometheus custom resource selects Pulse's ServiceMonitor and
/// PrometheusRule (both named `job`, as the chart names them, in `namespace`).
pub async fn selector_checks(client: &kube::Client, namespace: &str, job: &str) -> Vec<Check> {
    let prometheuses: Api<DynamicObject> =
        Api::all_with(client.clone(), &resource("Prometheus", "prometheuses"));
    let prometheuses = match prometheuses.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(e) => {
            return vec![Check::fail(
                "prometheus.selector",
                "",
                format!(
                    "cannot list Prometheus resources: {e} (is the Prometheus Operator installed?)"
                ),
            )];
        }
    };
    // Namespace labels; `kubernetes.io/metadata.name` is always among them.
    let namespace_labels = Api::<Namespace>::all(client.clone())
        .get(namespace)
        .await
        .ok()
        .and_then(|n| n.metadata.labels)
        .unwrap_or_else(|| {
            BTreeMap::from([(
                "kubernetes.io/metadata.name".to_owned(),
                namespace.to_owned(),
            )])
        });
    let mut checks = Vec::new();
    for selected in [Selected::ServiceMonitor, Selected::PrometheusRule] {
        let (name, plural, _, _) = selected.fields();
        let api: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            namespace,
            &resource(&selected.to_string(), plural),
        );
        let object = match api.get_opt(job).await {
            Ok(Some(object)) => object,
            Ok(None) => {
                checks.push(Check::fail(
                    name,
                    format!("no {selected} {namespace}/{job}"),
                    format!("the chart did not create Pulse's {selected} (is it switched off in the values?)"),
                ));
                continue;
            }
            Err(e) => {
                checks.push(Check::fail(
                    name,
                    "",
                    format!("cannot read {selected} {namespace}/{job}: {e}"),
                ));
                continue;
            }
        };
        let labels = object.metadata.labels.clone().unwrap_or_default();
        let verdicts: Vec<(String, Result<(), Mismatch>)> = prometheuses
            .iter()
            .map(|p| {
                let who = format!(
                    "{}/{}",
                    p.metadata.namespace.as_deref().unwrap_or_default(),
                    p.metadata.name.as_deref().unwrap_or_default()
                );
                let own = p.metadata.namespace.as_deref().unwrap_or_default();
                let verdict = selects(
                    &p.data["spec"],
                    own,
                    selected,
                    &labels,
                    namespace,
                    &namespace_labels,
                );
                (who, verdict)
            })
            .collect();
        checks.push(match verdicts.iter().find(|(_, v)| v.is_ok()) {
            Some((who, _)) => Check::pass(
                name,
                format!("Prometheus {who} selects {selected} {namespace}/{job}"),
            ),
            None => match verdicts.first() {
                None => Check::fail(
                    name,
                    "no Prometheus resource in the cluster",
                    "install the Prometheus Operator's Prometheus (kube-prometheus-stack)",
                ),
                Some((who, Err(why))) => Check::fail(
                    name,
                    format!("Prometheus {who} does not select {selected} {namespace}/{job}"),
                    format!("{selected} {namespace}/{job} {why}"),
                ),
                Some((_, Ok(()))) => unreachable!("a passing verdict was found above"),
            },
        });
    }
    checks
}

/// Why a Prometheus does not select an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// The Prometheus has no selector: it selects no object of that kind.
    NoSelector(&'static str),
    /// A label the selector requires is missing or has another value.
    Label {
        /// The selector field.
        field: &'static str,
        /// The label's key.
        key: String,
        /// The value required.
        want: String,
        /// The value the object has, if any.
        have: Option<String>,
    },
    /// A `matchExpressions` term does not hold.
    Expression {
        /// The selector field.
        field: &'static str,
        /// The term, as written.
        term: String,
    },
    /// The object's namespace is not one the Prometheus looks in.
    Namespace {
        /// The namespace selector field.
        field: &'static str,
        /// When that field is unset: the Prometheus's own namespace, the only one it watches.
        only: Option<String>,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSelector(field) => {
                write!(f, "is selected by nothing: the Prometheus has no {field}")
            }
            Self::Label {
                field,
                key,
                want,
                have: None,
            } => {
                write!(
                    f,
                    "lacks label {key}={want} that the Prometheus selects by ({field})"
                )
            }
            Self::Label {
                field,
                key,
                want,
                have: Some(have),
            } => {
                write!(
                    f,
                    "has label {key}={have}, the Prometheus selects {key}={want} ({field})"
                )
            }
            Self::Expression { field, term } => write!(f, "does not match {term} ({field})"),
            Self::Namespace {
                field,
                only: Some(own),
            } => write!(
                f,
                "is outside namespace {own}, the only one the Prometheus watches ({field} is unset)"
            ),
            Self::Namespace { field, only: None } => {
                write!(
                    f,
                    "is in a namespace the Prometheus does not select ({field})"
                )
            }
        }
    }
}

/// Whether a Prometheus `spec` selects an object of kind `selected` with `labels`
/// in `namespace` (prometheus-operator's rules: a null selector selects nothing,
/// an empty one everything; a null namespace selector means its own namespace).
fn selects(
    spec: &serde_json::Value,
    own_namespace: &str,
    selected: Selected,
    labels: &BTreeMap<String, String>,
    namespace: &str,
    namespace_labels: &BTreeMap<String, String>,
) -> Result<(), Mismatch> {
    let (_, _, field, namespace_field) = selected.fields();
    let selector: Option<LabelSelector> = serde_json::from_value(spec[field].clone()).ok();
    let Some(selector) = selector else {
        return Err(Mismatch::NoSelector(field));
    };
    matches(&selector, labels, field)?;
    let namespace_selector: Option<LabelSelector> =
        serde_json::from_value(spec[namespace_field].clone()).ok();
    match namespace_selector {
        Some(selector) => {
            matches(&selector, namespace_labels, namespace_field).map_err(|_| Mismatch::Namespace {
                field: namespace_field,
                only: None,
            })
        }
        None if own_namespace == namespace => Ok(()),
        None => Err(Mismatch::Namespace {
            field: namespace_field,
            only: Some(own_namespace.to_owned()),
        }),
    }
}

/// A Kubernetes label selector against labels.
fn matches(
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
    field: &'static str,
) -> Result<(), Mismatch> {
    for (key, want) in selector.match_labels.iter().flatten() {
        if labels.get(key) != Some(want) {
            return Err(Mismatch::Label {
                field,
                key: key.clone(),
                want: want.clone(),
                have: labels.get(key).cloned(),
            });
        }
    }
    for term in selector.match_expressions.iter().flatten() {
        let values = term.values.clone().unwrap_or_default();
        let value = labels.get(&term.key);
        let holds = match term.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        };
        if !holds {
            return Err(Mismatch::Expression {
                field,
                term: format!("{} {} {values:?}", term.key, term.operator),
            });
        }
    }
    Ok(())
}

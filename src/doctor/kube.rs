//! `pulse doctor --kube`: finds Pulse and the lab in the current kube context by
//! their labels, reaches each through a port-forward of the API server (so no
//! kubectl and no URLs are needed), and runs the selector checks ([`super::selectors`]).

use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::{Api, ListParams};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::report::Check;
use super::selectors::selector_checks;

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
        Err(check) => checks.push(check),
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
) -> Result<(String, String), Check> {
    let fail = |cause: String| Check::fail("kube.pulse", format!("namespace {namespace}"), cause);
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let list = services
        .list(&ListParams::default().labels(PULSE_SERVICE))
        .await
        .map_err(|e| fail(format!("cannot list Services: {e}")))?;
    let names: Vec<String> = list
        .items
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .filter(|name| job.is_none_or(|job| job == name))
        .collect();
    let service = match names.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(fail(format!(
                "no Pulse Service ({PULSE_SERVICE}){}: is the chart installed here? (-n NAMESPACE)",
                job.map(|j| format!(" named {j}")).unwrap_or_default()
            )));
        }
        many => {
            return Err(fail(format!(
                "several Pulse Services ({}): pick one with --job",
                many.join(", ")
            )));
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
        .ok_or_else(|| fail(format!("Service {service} has no ready pod")))?;
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

//! Kubernetes awareness: the runtime-settings ConfigMap watcher and Events on Pulse's own pod.
//!
//! None of it is needed to serve: if the API is unreachable or RBAC denies a call,
//! Pulse logs it once, counts it (`pulse_kube_errors_total{operation}`), keeps
//! serving and stays ready, and retries with backoff.

pub mod configmap;
pub mod events;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use events::{EventPublisher, PodEvent};

use crate::config::PodIdentity;
use crate::settings::LiveSettings;
use crate::telemetry::Metrics;
use crate::telemetry::labels::KubeOperation;

/// Where Pulse runs and what to watch.
#[derive(Debug, Clone)]
pub struct KubeConfig {
    /// The runtime ConfigMap's name.
    pub configmap: String,
    /// The pod's identity: its name and uid for Events, its namespace for the
    /// ConfigMap (the client's default namespace otherwise).
    pub pod: PodIdentity,
}

/// Counts every failed API call and logs the first failure of each operation at
/// `warn` (later ones at `debug`, until the operation succeeds again).
#[derive(Debug)]
pub struct KubeErrors {
    metrics: Arc<Metrics>,
    failing: Mutex<HashSet<KubeOperation>>,
}

impl KubeErrors {
    /// Reports into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        metrics.kube_errors_start();
        Arc::new(Self {
            metrics,
            failing: Mutex::new(HashSet::new()),
        })
    }

    /// One failed call.
    pub fn failed(&self, operation: KubeOperation, error: &dyn std::fmt::Display) {
        self.metrics.kube_error(operation);
        let first = crate::sync::lock(&self.failing).insert(operation);
        let operation = operation.as_str();
        if first {
            tracing::warn!(operation, %error, "Kubernetes API call failed; serving on, retrying with backoff");
        } else {
            tracing::debug!(operation, %error, "Kubernetes API call failed again");
        }
    }

    /// The operation works (again).
    pub fn succeeded(&self, operation: KubeOperation) {
        let was_failing = crate::sync::lock(&self.failing).remove(&operation);
        if was_failing {
            tracing::info!(
                operation = operation.as_str(),
                "Kubernetes API call works again"
            );
        }
    }
}

/// Backoff between attempts to build a client: 1 s doubling to 60 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(6)).min(Duration::from_secs(60))
}

/// The Kubernetes side: connects (retrying with backoff), then watches the runtime
/// ConfigMap into `settings` and publishes the Events queued in `queue` (the
/// other half of the application's [`EventPublisher::channel`]; Events published
/// before the API is reachable wait there, bounded). Runs until the process ends.
///
/// The error counter is registered when this is called, not when the future is
/// first polled, so `pulse_kube_errors_total` is in the first scrape.
pub fn run(
    config: KubeConfig,
    queue: tokio::sync::mpsc::Receiver<PodEvent>,
    settings: Arc<LiveSettings>,
    metrics: Arc<Metrics>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let errors = KubeErrors::new(metrics);
    async move { watch_and_publish(config, queue, settings, errors).await }
}

async fn watch_and_publish(
    config: KubeConfig,
    queue: tokio::sync::mpsc::Receiver<PodEvent>,
    settings: Arc<LiveSettings>,
    errors: Arc<KubeErrors>,
) {
    let client = connect(&errors).await;
    let namespace = config
        .pod
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    tokio::spawn(configmap::watch(
        client.clone(),
        namespace.clone(),
        config.configmap.clone(),
        settings,
        errors.clone(),
    ));
    match events::pod_reference(&config, &namespace) {
        Some(pod) => events::run(client, pod, queue, errors).await,
        None => tracing::info!("POD_NAME is not set: no Kubernetes Events will be published"),
    }
}

/// Builds a client, retrying with backoff until the configuration can be loaded.
async fn connect(errors: &KubeErrors) -> kube::Client {
    let mut attempt = 0;
    loop {
        match kube::Client::try_default().await {
            Ok(client) => {
                errors.succeeded(KubeOperation::Connect);
                return client;
            }
            Err(e) => errors.failed(KubeOperation::Connect, &e),
        }
        tokio::time::sleep(backoff(attempt)).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let waits: Vec<u64> = (0..9).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}

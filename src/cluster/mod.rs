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

use clap::ValueEnum;
use opentelemetry::KeyValue;

pub use events::{EventPublisher, PodEvent};

use crate::settings::LiveSettings;
use crate::telemetry::Metrics;

/// `--kube`: whether to use the Kubernetes API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KubeMode {
    /// On when running in a cluster (`KUBERNETES_SERVICE_HOST` is set).
    Auto,
    /// Always (in-cluster config or the kubeconfig).
    On,
    /// Never.
    Off,
}

impl KubeMode {
    /// Whether the API should be used in this environment.
    pub fn enabled(self) -> bool {
        match self {
            Self::On => true,
            Self::Off => false,
            Self::Auto => std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
        }
    }
}

/// Where Pulse runs and what to watch.
#[derive(Debug, Clone)]
pub struct KubeConfig {
    /// The runtime ConfigMap's name.
    pub configmap: String,
    /// The pod's name (`POD_NAME`), for Events.
    pub pod: Option<String>,
    /// The pod's namespace (`POD_NAMESPACE`); the client's default otherwise.
    pub namespace: Option<String>,
    /// The pod's uid (`POD_UID`), for Events.
    pub pod_uid: Option<String>,
}

impl KubeConfig {
    /// Reads the pod's identity from the downward-API variables.
    pub fn from_env(configmap: String) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            configmap,
            pod: var("POD_NAME"),
            namespace: var("POD_NAMESPACE"),
            pod_uid: var("POD_UID"),
        }
    }
}

/// Counts every failed API call and logs the first failure of each operation at
/// `warn` (later ones at `debug`, until the operation succeeds again).
#[derive(Debug)]
pub struct KubeErrors {
    metrics: Arc<Metrics>,
    failing: Mutex<HashSet<&'static str>>,
}

impl KubeErrors {
    /// Reports into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        for operation in ["connect", "watch", "event"] {
            metrics
                .kube_errors
                .add(0, &[KeyValue::new("operation", operation)]);
        }
        Arc::new(Self {
            metrics,
            failing: Mutex::new(HashSet::new()),
        })
    }

    /// One failed call.
    pub fn failed(&self, operation: &'static str, error: &dyn std::fmt::Display) {
        self.metrics
            .kube_errors
            .add(1, &[KeyValue::new("operation", operation)]);
        let first = self
            .failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(operation);
        if first {
            tracing::warn!(operation, %error, "Kubernetes API call failed; serving on, retrying with backoff");
        } else {
            tracing::debug!(operation, %error, "Kubernetes API call failed again");
        }
    }

    /// The operation works (again).
    pub fn succeeded(&self, operation: &'static str) {
        let was_failing = self
            .failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(operation);
        if was_failing {
            tracing::info!(operation, "Kubernetes API call works again");
        }
    }
}

/// Backoff between attempts to build a client: 1 s doubling to 60 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(6)).min(Duration::from_secs(60))
}

/// Starts the Kubernetes side in the background and returns the Event publisher.
/// Events published before the API is reachable wait in a bounded queue.
pub fn start(
    config: KubeConfig,
    settings: Arc<LiveSettings>,
    metrics: Arc<Metrics>,
) -> EventPublisher {
    let errors = KubeErrors::new(metrics);
    let (publisher, queue) = EventPublisher::channel();
    settings.set_notifier(Arc::new(publisher.clone()));
    tokio::spawn(async move {
        let client = connect(&errors).await;
        let namespace = config
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
    });
    publisher
}

/// Builds a client, retrying with backoff until the configuration can be loaded.
async fn connect(errors: &KubeErrors) -> kube::Client {
    let mut attempt = 0;
    loop {
        match kube::Client::try_default().await {
            Ok(client) => {
                errors.succeeded("connect");
                return client;
            }
            Err(e) => errors.failed("connect", &e),
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

    #[test]
    fn modes() {
        assert!(KubeMode::On.enabled());
        assert!(!KubeMode::Off.enabled());
    }
}

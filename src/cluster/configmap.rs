//! Watches the runtime ConfigMap and applies its data to the live settings.

use std::sync::Arc;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::runtime::{WatchStreamExt as _, watcher};

use super::KubeErrors;
use crate::settings::LiveSettings;
use crate::telemetry::labels::KubeOperation;

/// Watches `namespace/name` until the process ends. Each add or change applies the
/// ConfigMap's data (within the watch latency: well under the 2 s the chart
/// promises); a delete restores the command-line settings. Errors are counted and
/// retried with the watcher's backoff.
pub async fn watch(
    client: kube::Client,
    namespace: String,
    name: String,
    settings: Arc<LiveSettings>,
    errors: Arc<KubeErrors>,
) {
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    // A field selector on the name: RBAC can then grant list/watch on this one ConfigMap.
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher(api, config).default_backoff().boxed();
    // During a (re)list: whether the ConfigMap was in it. If not, it was deleted.
    let mut seen_in_list = false;
    while let Some(event) = stream.next().await {
        let event = match event {
            // `Init` only announces a (re)list, which may still fail: not proof of success.
            Ok(watcher::Event::Init) => watcher::Event::Init,
            Ok(event) => {
                errors.succeeded(KubeOperation::Watch);
                event
            }
            Err(e) => {
                errors.failed(KubeOperation::Watch, &e);
                continue;
            }
        };
        // Rejections are counted, logged and published by LiveSettings.
        let _ = match event {
            watcher::Event::Init => {
                seen_in_list = false;
                continue;
            }
            watcher::Event::InitApply(cm) => {
                seen_in_list = true;
                settings.replace_from_config_map(Some(&cm.data.unwrap_or_default()))
            }
            watcher::Event::Apply(cm) => {
                settings.replace_from_config_map(Some(&cm.data.unwrap_or_default()))
            }
            watcher::Event::InitDone if seen_in_list => continue,
            watcher::Event::InitDone | watcher::Event::Delete(_) => {
                settings.replace_from_config_map(None)
            }
        };
    }
}

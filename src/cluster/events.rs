//! Kubernetes Events (events.k8s.io/v1) about Pulse's own pod: Started, Ready,
//! ConfigApplied, ConfigRejected and ShuttingDown, as `kubectl describe pod` shows them.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;

use super::{KubeConfig, KubeErrors};
use crate::settings::{Notifier, SettingsChange};
use crate::telemetry::labels::KubeOperation;

/// Events waiting for the API; beyond this, new ones are dropped (they are informational).
const QUEUE: usize = 64;
/// The `reportingController` of Pulse's Events.
pub const REPORTER: &str = "pulse";

/// One Event about the pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodEvent {
    /// Normal or Warning.
    pub warning: bool,
    /// `PascalCase` reason: Started, Ready, ConfigApplied, ConfigRejected, ShuttingDown.
    pub reason: &'static str,
    /// Human-readable detail.
    pub note: String,
}

impl PodEvent {
    /// A Normal event.
    pub fn normal(reason: &'static str, note: impl Into<String>) -> Self {
        Self {
            warning: false,
            reason,
            note: note.into(),
        }
    }
}

/// Queues Events for the background publisher; never blocks the caller.
#[derive(Debug, Clone)]
pub struct EventPublisher {
    queue: Option<mpsc::Sender<PodEvent>>,
}

impl EventPublisher {
    /// A publisher that drops everything (Kubernetes features off).
    pub fn disabled() -> Self {
        Self { queue: None }
    }

    /// A publisher and the queue its background task drains.
    pub fn channel() -> (Self, mpsc::Receiver<PodEvent>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Self { queue: Some(tx) }, rx)
    }

    /// Queues an Event.
    pub fn publish(&self, event: PodEvent) {
        if let Some(queue) = &self.queue
            && queue.try_send(event).is_err()
        {
            tracing::debug!("event queue full or closed; event dropped");
        }
    }
}

impl Notifier for EventPublisher {
    fn notify(&self, change: &SettingsChange) {
        self.publish(match change {
            SettingsChange::Applied { source, settings } => PodEvent::normal(
                "ConfigApplied",
                format!("runtime settings from {source} applied: {settings}"),
            ),
            SettingsChange::Rejected { source, reason } => PodEvent {
                warning: true,
                reason: "ConfigRejected",
                note: format!("runtime settings from {source} rejected, previous kept: {reason}"),
            },
        });
    }
}

/// The pod the Events are about; `None` without `POD_NAME`.
pub fn pod_reference(config: &KubeConfig, namespace: &str) -> Option<ObjectReference> {
    Some(ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(config.pod.name.clone()?),
        namespace: Some(namespace.to_owned()),
        uid: config.pod.uid.clone(),
        ..Default::default()
    })
}

/// Publishes queued Events until the queue closes. A failed publish is counted
/// (`operation="event"`) and the Event dropped: Events are best effort.
pub async fn run(
    client: kube::Client,
    pod: ObjectReference,
    mut queue: mpsc::Receiver<PodEvent>,
    errors: Arc<KubeErrors>,
) {
    let reporter = Reporter {
        controller: REPORTER.into(),
        instance: pod.name.clone(),
    };
    let recorder = Recorder::new(client, reporter);
    while let Some(event) = queue.recv().await {
        let event = Event {
            type_: if event.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: event.reason.into(),
            note: Some(truncate(event.note, 1024)),
            action: event.reason.into(),
            secondary: None,
        };
        match recorder.publish(&event, &pod).await {
            Ok(()) => errors.succeeded(KubeOperation::Event),
            Err(e) => errors.failed(KubeOperation::Event, &e),
        }
    }
}

/// Event notes are limited to 1 kB.
fn truncate(mut note: String, max: usize) -> String {
    if note.len() > max {
        let mut end = max - 3;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push_str("...");
    }
    note
}

#[cfg(test)]
mod tests {
    #[test]
    fn notes_are_truncated_on_a_char_boundary() {
        let note = super::truncate("é".repeat(600), 1024);
        assert!(note.len() <= 1024 && note.ends_with("..."));
        assert_eq!(super::truncate("short".into(), 1024), "short");
    }
}

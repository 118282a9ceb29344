//! The settings in force, shared by the request path and the sources that change them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::{FaultConfig, RuntimeSettings, SettingsError, SettingsPatch};
use crate::telemetry::labels::ReloadResult;
use crate::telemetry::{LogReloader, Metrics};

/// Where a change of the runtime settings came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `PUT /admin/runtime`: a partial update of the settings in force.
    Admin,
    /// The runtime ConfigMap: declarative, applied over the command line's
    /// settings, so a key removed from it goes back to its flag.
    ConfigMap,
}

impl Source {
    /// Its name in logs and Events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::ConfigMap => "configmap",
        }
    }

    /// Whether a change from it replaces every setting it does not name with the
    /// command line's (declarative) or keeps the one in force.
    fn is_declarative(self) -> bool {
        matches!(self, Self::ConfigMap)
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change that was applied or rejected, for whoever publishes such things (Kubernetes Events).
#[derive(Debug, Clone, PartialEq)]
pub enum SettingsChange {
    /// New settings are in force.
    Applied {
        /// Where it came from.
        source: Source,
        /// The settings now in force, as JSON.
        settings: String,
    },
    /// A change was refused; the previous settings stay.
    Rejected {
        /// Where it came from.
        source: Source,
        /// Every problem found.
        reason: String,
    },
}

/// Receives applied and rejected changes.
pub trait Notifier: Send + Sync + 'static {
    /// Called after each applied or rejected change.
    fn notify(&self, change: &SettingsChange);
}

/// The runtime settings: read on every request (lock-free), changed as a whole.
pub struct LiveSettings {
    /// From the command line; what a declarative source starts from.
    base: RuntimeSettings,
    current: ArcSwap<RuntimeSettings>,
    /// Present when the binary installed the global log subscriber (never in most tests).
    log_reloader: Option<LogReloader>,
    metrics: Arc<Metrics>,
    /// Present when Kubernetes features are on (Events about each change).
    notifier: Option<Arc<dyn Notifier>>,
    /// Serialises writers, so check-then-swap is atomic across sources.
    writer: Mutex<()>,
}

impl std::fmt::Debug for LiveSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSettings")
            .field("current", &self.current.load())
            .finish_non_exhaustive()
    }
}

impl LiveSettings {
    /// Starts with `base` in force.
    pub fn new(base: RuntimeSettings, metrics: Arc<Metrics>) -> Self {
        record_gauges(&metrics, &base);
        Self {
            current: ArcSwap::from_pointee(base.clone()),
            base,
            log_reloader: None,
            metrics,
            notifier: None,
            writer: Mutex::new(()),
        }
    }

    /// The settings in force.
    pub fn current(&self) -> Arc<RuntimeSettings> {
        self.current.load_full()
    }

    /// The faults to inject now (the hot path: one atomic load).
    pub fn faults(&self) -> FaultConfig {
        self.current.load().faults()
    }

    /// Whether the settings force `/readyz` to 503.
    pub fn force_unready(&self) -> bool {
        self.current.load().force_unready
    }

    /// Lets `log_level` changes reach the log subscriber. A builder step, taken
    /// before the settings are shared: there is no second call to ignore.
    #[must_use]
    pub fn with_log_reloader(mut self, reloader: Option<LogReloader>) -> Self {
        self.log_reloader = reloader;
        self
    }

    /// Sends every change to `notifier` (Kubernetes Events). A builder step, like
    /// [`Self::with_log_reloader`].
    #[must_use]
    pub fn with_notifier(mut self, notifier: Option<Arc<dyn Notifier>>) -> Self {
        self.notifier = notifier;
        self
    }

    /// `PUT /admin/runtime`: changes the named fields of the current settings.
    pub fn update(&self, patch: &SettingsPatch) -> Result<Arc<RuntimeSettings>, SettingsError> {
        self.apply(Source::Admin, patch)
    }

    /// `PUT /admin/runtime` with a body that is not a settings patch: a rejected
    /// change too, counted and published like an invalid value.
    pub fn reject_update(&self, err: &SettingsError) {
        self.rejected(Source::Admin, err);
    }

    /// The runtime ConfigMap's `data`, or `None` when it does not exist: its keys over
    /// the command-line settings.
    pub fn replace_from_config_map(
        &self,
        data: Option<&BTreeMap<String, String>>,
    ) -> Result<Arc<RuntimeSettings>, SettingsError> {
        let patch = match data.map(SettingsPatch::from_config_map).transpose() {
            Ok(patch) => patch.unwrap_or_default(),
            Err(err) => {
                self.rejected(Source::ConfigMap, &err);
                return Err(err);
            }
        };
        self.apply(Source::ConfigMap, &patch)
    }

    fn apply(
        &self,
        source: Source,
        patch: &SettingsPatch,
    ) -> Result<Arc<RuntimeSettings>, SettingsError> {
        let _writer = crate::sync::lock(&self.writer);
        let current = self.current.load_full();
        let from = if source.is_declarative() {
            &self.base
        } else {
            &*current
        };
        let next = match patch.apply_to(from) {
            Ok(next) => next,
            Err(err) => {
                self.rejected(source, &err);
                return Err(err);
            }
        };
        if next == *current {
            // A relist or an unrelated edit: nothing to announce.
            return Ok(current);
        }
        if next.log_level != current.log_level
            && let Some(reload) = &self.log_reloader
            && let Err(e) = reload(&next.log_level)
        {
            let err = SettingsError {
                problems: vec![format!("log_level: {e}")],
            };
            self.rejected(source, &err);
            return Err(err);
        }
        let next = Arc::new(next);
        self.current.store(next.clone());
        record_gauges(&self.metrics, &next);
        self.metrics.config_reload(ReloadResult::Applied);
        let settings = serde_json::to_string(&*next).unwrap_or_default();
        tracing::info!(source = source.as_str(), %settings, "runtime settings applied");
        self.notify(SettingsChange::Applied { source, settings });
        Ok(next)
    }

    fn rejected(&self, source: Source, err: &SettingsError) {
        self.metrics.config_reload(ReloadResult::Rejected);
        tracing::warn!(source = source.as_str(), reason = %err, "runtime settings rejected; previous settings kept");
        self.notify(SettingsChange::Rejected {
            source,
            reason: err.to_string(),
        });
    }

    fn notify(&self, change: SettingsChange) {
        if let Some(notifier) = &self.notifier {
            notifier.notify(&change);
        }
    }
}

/// `pulse_runtime_settings{setting}`: the numeric settings in force.
fn record_gauges(metrics: &Metrics, s: &RuntimeSettings) {
    metrics.runtime_settings(s.fault_error_rate, s.fault_delay_max, s.force_unready);
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::settings::tests::data;

    fn base() -> RuntimeSettings {
        RuntimeSettings::default()
    }

    #[derive(Default)]
    struct Recorded(Mutex<Vec<SettingsChange>>);

    impl Notifier for Recorded {
        fn notify(&self, change: &SettingsChange) {
            self.0.lock().unwrap().push(change.clone());
        }
    }

    fn live(reloader: Option<LogReloader>) -> (LiveSettings, Arc<Recorded>) {
        let metrics = Metrics::new(
            opentelemetry_sdk::Resource::builder_empty().build(),
            &crate::BuildInfo::current(),
            Instant::now(),
        )
        .unwrap();
        let recorded = Arc::new(Recorded::default());
        let settings = LiveSettings::new(base(), metrics)
            .with_log_reloader(reloader)
            .with_notifier(Some(recorded.clone()));
        (settings, recorded)
    }

    #[test]
    fn admin_updates_change_only_named_fields_of_the_current_settings() {
        let (s, _) = live(None);
        s.update(&SettingsPatch {
            fault_error_rate: Some(0.5),
            ..Default::default()
        })
        .unwrap();
        s.update(&SettingsPatch {
            force_unready: Some(true),
            ..Default::default()
        })
        .unwrap();
        let now = s.current();
        assert_eq!((now.fault_error_rate, now.force_unready), (0.5, true));
        assert!(s.force_unready());
    }

    #[test]
    fn the_config_map_is_declarative_over_the_flags() {
        let (s, _) = live(None);
        s.update(&SettingsPatch {
            force_unready: Some(true),
            ..Default::default()
        })
        .unwrap();
        // The ConfigMap starts from the flags, not from the admin change.
        s.replace_from_config_map(Some(&data(&[("fault_error_rate", "0.2")])))
            .unwrap();
        assert_eq!(s.current().fault_error_rate, 0.2);
        assert!(!s.current().force_unready);
        // Deleting it restores the flags.
        s.replace_from_config_map(None).unwrap();
        assert_eq!(*s.current(), base());
    }

    #[test]
    fn a_bad_change_is_rejected_whole_and_published() {
        let (s, recorded) = live(None);
        s.replace_from_config_map(Some(&data(&[("fault_error_rate", "0.3")])))
            .unwrap();
        let before = s.current();
        let bad = data(&[("fault_error_rate", "0.9"), ("fault_delay_max", "forever")]);
        assert!(s.replace_from_config_map(Some(&bad)).is_err());
        assert_eq!(s.current(), before, "the valid half was not applied either");
        let changes = recorded.0.lock().unwrap();
        assert!(matches!(
            changes[0],
            SettingsChange::Applied {
                source: Source::ConfigMap,
                ..
            }
        ));
        assert!(
            matches!(&changes[1], SettingsChange::Rejected { source: Source::ConfigMap, reason } if reason.contains("forever"))
        );
    }

    #[test]
    fn an_unchanged_result_is_not_announced() {
        let (s, recorded) = live(None);
        s.replace_from_config_map(Some(&data(&[("log_level", "info")])))
            .unwrap();
        s.replace_from_config_map(None).unwrap();
        assert!(recorded.0.lock().unwrap().is_empty());
    }

    #[test]
    fn the_log_filter_is_reloaded_and_its_failure_rejects_the_change() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = calls.clone();
        let reloader: LogReloader = Box::new(move |directive| {
            seen.lock().unwrap().push(directive.to_owned());
            if directive == "pulse=trace" {
                Err(crate::telemetry::TelemetryError::Subscriber(
                    "subscriber gone".into(),
                ))
            } else {
                Ok(())
            }
        });
        let (s, _) = live(Some(reloader));
        s.update(&SettingsPatch {
            log_level: Some("debug".into()),
            ..Default::default()
        })
        .unwrap();
        let err = s
            .update(&SettingsPatch {
                log_level: Some("pulse=trace".into()),
                fault_error_rate: Some(1.0),
                ..Default::default()
            })
            .unwrap_err();
        assert!(err.to_string().contains("subscriber gone"));
        assert_eq!(s.current().log_level, "debug");
        assert_eq!(s.current().fault_error_rate, 0.0, "nothing else applied");
        assert_eq!(*calls.lock().unwrap(), ["debug", "pulse=trace"]);
    }
}

//! Settings that can change while Pulse runs: the log filter, fault injection and
//! forced unreadiness.
//!
//! They start from the command line ([`RuntimeSettings`] built from flags) and
//! change through two sources: `PUT /admin/runtime` (a partial JSON update of the
//! current settings) and, in a cluster, the runtime ConfigMap (declarative: its
//! keys over the flags, so deleting it restores the flags). The latest change wins.
//! A change is parsed and validated as a whole before anything is applied: one bad
//! key rejects it all and the previous settings stay.

pub mod live;

pub use live::{LiveSettings, Notifier, SettingsChange};

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::middleware::fault::FaultConfig;

/// The keys a runtime ConfigMap (and `PUT /admin/runtime`) may hold.
pub const KEYS: [&str; 4] = [
    "log_level",
    "fault_error_rate",
    "fault_delay_max",
    "force_unready",
];

/// The settings in force.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RuntimeSettings {
    /// Log filter (`EnvFilter` directive).
    #[schema(example = "info")]
    pub log_level: String,
    /// Fraction of API requests answered with an injected 500.
    pub fault_error_rate: f64,
    /// Upper bound of the random delay added to API requests.
    #[serde(serialize_with = "serialize_duration")]
    #[schema(value_type = String, example = "250ms")]
    pub fault_delay_max: Duration,
    /// Report not ready whatever else is true.
    pub force_unready: bool,
}

impl Default for RuntimeSettings {
    /// The command line's defaults: `info` logs, no faults, ready.
    fn default() -> Self {
        Self {
            log_level: "info".into(),
            fault_error_rate: 0.0,
            fault_delay_max: Duration::ZERO,
            force_unready: false,
        }
    }
}

impl RuntimeSettings {
    /// The faults these settings inject.
    pub fn faults(&self) -> FaultConfig {
        FaultConfig {
            error_rate: self.fault_error_rate,
            delay_max: self.fault_delay_max,
        }
    }
}

fn serialize_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

/// A partial change: `None` leaves a setting as the source's base has it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    /// Log filter, e.g. `info` or `pulse=debug,warn`.
    pub log_level: Option<String>,
    /// 0 to 1.
    #[schema(minimum = 0, maximum = 1)]
    pub fault_error_rate: Option<f64>,
    /// A duration such as `250ms`, at most `60s`; `0s` disables delays.
    #[serde(default, deserialize_with = "deserialize_duration")]
    #[schema(value_type = Option<String>, example = "250ms")]
    pub fault_delay_max: Option<Duration>,
    /// `true` makes `/readyz` answer 503.
    pub force_unready: Option<bool>,
}

fn deserialize_duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    let text = Option::<String>::deserialize(d)?;
    text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
        .transpose()
}

/// Why a change was rejected: every problem found, not just the first.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", .problems.join("; "))]
pub struct SettingsError {
    /// One sentence per bad key.
    pub problems: Vec<String>,
}

impl SettingsError {
    fn one(problem: String) -> Self {
        Self {
            problems: vec![problem],
        }
    }
}

impl SettingsPatch {
    /// Parses a ConfigMap's `data`. Values are strings there, so each key is parsed
    /// by hand; unknown keys are errors (a typo must not be silently ignored).
    pub fn from_config_map(data: &BTreeMap<String, String>) -> Result<Self, SettingsError> {
        let mut patch = Self::default();
        let mut problems = Vec::new();
        for (key, value) in data {
            let value = value.trim();
            match key.as_str() {
                "log_level" => patch.log_level = Some(value.to_owned()),
                "fault_error_rate" => match value.parse::<f64>() {
                    Ok(rate) => patch.fault_error_rate = Some(rate),
                    Err(_) => problems.push(format!("fault_error_rate: {value:?} is not a number")),
                },
                "fault_delay_max" => match humantime::parse_duration(value) {
                    Ok(d) => patch.fault_delay_max = Some(d),
                    Err(e) => problems.push(format!("fault_delay_max: {value:?}: {e}")),
                },
                "force_unready" => match value {
                    "true" => patch.force_unready = Some(true),
                    "false" => patch.force_unready = Some(false),
                    _ => problems.push(format!("force_unready: {value:?} is not true or false")),
                },
                other => problems.push(format!(
                    "unknown key {other:?} (known: {})",
                    KEYS.join(", ")
                )),
            }
        }
        if problems.is_empty() {
            Ok(patch)
        } else {
            Err(SettingsError { problems })
        }
    }

    /// Applies the patch over `base`, validating every value. Nothing is partly applied.
    pub fn apply_to(&self, base: &RuntimeSettings) -> Result<RuntimeSettings, SettingsError> {
        let mut problems = Vec::new();
        if let Some(level) = &self.log_level
            && let Err(e) = crate::telemetry::log_filter(level)
        {
            problems.push(format!("log_level: {level:?}: {e}"));
        }
        if let Some(rate) = self.fault_error_rate
            && !(0.0..=1.0).contains(&rate)
        {
            problems.push(format!("fault_error_rate: {rate} is not between 0 and 1"));
        }
        if let Some(delay) = self.fault_delay_max
            && delay > MAX_FAULT_DELAY
        {
            problems.push(format!(
                "fault_delay_max: {} is above the maximum of 60s",
                humantime::format_duration(delay)
            ));
        }
        if !problems.is_empty() {
            return Err(SettingsError { problems });
        }
        Ok(RuntimeSettings {
            log_level: self
                .log_level
                .clone()
                .unwrap_or_else(|| base.log_level.clone()),
            fault_error_rate: self.fault_error_rate.unwrap_or(base.fault_error_rate),
            fault_delay_max: self.fault_delay_max.unwrap_or(base.fault_delay_max),
            force_unready: self.force_unready.unwrap_or(base.force_unready),
        })
    }

    /// Parses a JSON body of `PUT /admin/runtime`.
    pub fn from_json(body: &[u8]) -> Result<Self, SettingsError> {
        serde_json::from_slice(body).map_err(|e| SettingsError::one(e.to_string()))
    }
}

/// Longest fault delay a runtime change may set: beyond it requests would time out anyway.
pub const MAX_FAULT_DELAY: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> RuntimeSettings {
        RuntimeSettings::default()
    }

    /// ConfigMap data from pairs (also used by `live`'s tests).
    pub(crate) fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn config_map_keys_parse_and_apply_over_the_base() {
        let patch = SettingsPatch::from_config_map(&data(&[
            ("log_level", "pulse=debug"),
            ("fault_error_rate", " 0.25 "),
            ("fault_delay_max", "250ms"),
            ("force_unready", "true"),
        ]))
        .unwrap();
        let applied = patch.apply_to(&base()).unwrap();
        assert_eq!(
            applied,
            RuntimeSettings {
                log_level: "pulse=debug".into(),
                fault_error_rate: 0.25,
                fault_delay_max: Duration::from_millis(250),
                force_unready: true,
            }
        );
    }

    #[test]
    fn missing_keys_keep_the_base() {
        let patch = SettingsPatch::from_config_map(&data(&[("fault_error_rate", "0.5")])).unwrap();
        let mut expected = base();
        expected.fault_error_rate = 0.5;
        assert_eq!(patch.apply_to(&base()).unwrap(), expected);
        assert_eq!(SettingsPatch::default().apply_to(&base()).unwrap(), base());
    }

    #[test]
    fn every_problem_is_reported_and_nothing_applies() {
        let err = SettingsPatch::from_config_map(&data(&[
            ("fault_error_rate", "lots"),
            ("fault_delay_max", "soon"),
            ("force_unready", "yes"),
            ("fault_eror_rate", "0.1"),
        ]))
        .unwrap_err();
        assert_eq!(err.problems.len(), 4, "{err}");
        assert!(err.to_string().contains("unknown key \"fault_eror_rate\""));
    }

    #[test]
    fn values_are_validated_as_a_whole() {
        let patch = SettingsPatch {
            log_level: Some("[[".into()),
            fault_error_rate: Some(1.5),
            fault_delay_max: Some(Duration::from_secs(120)),
            force_unready: Some(true),
        };
        let err = patch.apply_to(&base()).unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
        let nan = SettingsPatch {
            fault_error_rate: Some(f64::NAN),
            ..Default::default()
        };
        assert!(nan.apply_to(&base()).is_err(), "NaN is not a rate");
    }

    #[test]
    fn json_patches_name_only_what_changes() {
        let patch =
            SettingsPatch::from_json(br#"{"fault_error_rate": 1, "fault_delay_max": "1s"}"#)
                .unwrap();
        assert_eq!(patch.fault_error_rate, Some(1.0));
        assert_eq!(patch.fault_delay_max, Some(Duration::from_secs(1)));
        assert!(patch.log_level.is_none() && patch.force_unready.is_none());
        assert!(SettingsPatch::from_json(br#"{"fault_rate": 1}"#).is_err());
        assert!(SettingsPatch::from_json(b"{bad").is_err());
    }

    #[test]
    fn settings_serialize_durations_readably() {
        let mut s = base();
        s.fault_delay_max = Duration::from_millis(1500);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["fault_delay_max"], "1s 500ms");
    }
}

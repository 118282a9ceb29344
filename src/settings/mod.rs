//! Settings that can change while Pulse runs: the log filter, fault injection and
//! forced unreadiness.
//!
//! They start from the command line ([`RuntimeSettings`] from [`ServeArgs`]) and
//! change through two sources: `PUT /admin/runtime` (a partial JSON update of the
//! current settings) and, in a cluster, the runtime ConfigMap (declarative: its
//! keys over the flags, so deleting it restores the flags). The latest change wins.
//! A change is parsed and validated as a whole before anything is applied: one bad
//! key rejects it all and the previous settings stay. Values are checked by the
//! same [`rules`] as the flags, so what starts is what a change may set.

pub(crate) mod live;

pub use live::{LiveSettings, Notifier, SettingsChange, Source};

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::{ServeArgs, rules};

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

impl From<&ServeArgs> for RuntimeSettings {
    fn from(args: &ServeArgs) -> Self {
        Self {
            log_level: args.log_level.clone(),
            fault_error_rate: args.fault_error_rate,
            fault_delay_max: args.fault_delay_max,
            force_unready: false,
        }
    }
}

impl Default for RuntimeSettings {
    /// The command line's defaults.
    fn default() -> Self {
        Self::from(&ServeArgs::default())
    }
}

/// How often and how much to misbehave (API routes only).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultConfig {
    /// Fraction of requests answered with an injected 500, in 0..=1.
    pub error_rate: f64,
    /// Upper bound of a uniformly random extra delay; zero disables delays.
    pub delay_max: Duration,
}

impl FaultConfig {
    /// Whether any fault can be injected at all.
    pub fn is_active(&self) -> bool {
        self.error_rate > 0.0 || !self.delay_max.is_zero()
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
///
/// The same type reads `PUT /admin/runtime`'s JSON and the runtime ConfigMap's
/// string values (through `envy`, which parses each string as the field's type):
/// one set of keys, one validation.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    /// Log filter, e.g. `info` or `pulse=debug,warn`: comma-separated directives,
    /// each a level or `target=level`.
    // The schema says what it can of `rules::log_level`: not blank, no control
    // characters, at most 1024 characters (the directive grammar is beyond it).
    #[schema(value_type = Option<LogLevel>)]
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

/// The schema of a log filter (see [`SettingsPatch::log_level`]).
pub struct LogLevel;

impl utoipa::PartialSchema for LogLevel {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .min_length(Some(1))
            .max_length(Some(rules::MAX_LOG_LEVEL_CHARS))
            .pattern(Some(rules::NOT_BLANK_PATTERN))
            .examples(["info", "pulse=debug,warn"])
            .into()
    }
}

impl ToSchema for LogLevel {}

fn deserialize_duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    let text = Option::<String>::deserialize(d)?;
    text.map(|t| rules::duration(&t).map_err(serde::de::Error::custom))
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
    /// A rejection with one problem.
    pub fn one(problem: impl Into<String>) -> Self {
        Self {
            problems: vec![problem.into()],
        }
    }
}

impl SettingsPatch {
    /// Parses a ConfigMap's `data`. Each key is read on its own, so that every bad
    /// key is reported, not just the first; unknown keys are errors (a typo must not
    /// be silently ignored).
    pub fn from_config_map(data: &BTreeMap<String, String>) -> Result<Self, SettingsError> {
        let mut patch = Self::default();
        let mut problems = Vec::new();
        for (key, value) in data {
            let one = std::iter::once((key.clone(), value.trim().to_owned()));
            match envy::from_iter::<_, Self>(one) {
                Ok(single) => patch = patch.or(single),
                Err(e) => problems.push(format!("{key}: {:?}: {e}", value.trim())),
            }
        }
        if problems.is_empty() {
            Ok(patch)
        } else {
            Err(SettingsError { problems })
        }
    }

    /// The fields set here, else those of `other`.
    fn or(self, other: Self) -> Self {
        Self {
            log_level: self.log_level.or(other.log_level),
            fault_error_rate: self.fault_error_rate.or(other.fault_error_rate),
            fault_delay_max: self.fault_delay_max.or(other.fault_delay_max),
            force_unready: self.force_unready.or(other.force_unready),
        }
    }

    /// Applies the patch over `base`, validating every value. Nothing is partly applied.
    pub fn apply_to(&self, base: &RuntimeSettings) -> Result<RuntimeSettings, SettingsError> {
        let mut problems = Vec::new();
        let mut check = |key: &str, result: Result<(), rules::RuleError>| {
            if let Err(e) = result {
                problems.push(format!("{key}: {e}"));
            }
        };
        if let Some(level) = &self.log_level {
            check("log_level", rules::log_level(level).map(drop));
        }
        if let Some(rate) = self.fault_error_rate {
            check("fault_error_rate", rules::check_rate(rate).map(drop));
        }
        if let Some(delay) = self.fault_delay_max {
            check("fault_delay_max", rules::check_fault_delay(delay).map(drop));
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
}

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
        assert!(
            err.to_string().contains("unknown field `fault_eror_rate`"),
            "{err}"
        );
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
    fn settings_serialize_durations_readably() {
        let mut s = base();
        s.fault_delay_max = Duration::from_millis(1500);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["fault_delay_max"], "1s 500ms");
    }
}

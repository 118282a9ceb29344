//! Whether the Prometheus custom resources select Pulse's ServiceMonitor and
//! PrometheusRule, with prometheus-operator's rules: the most common reason a
//! kube-prometheus-stack user sees no Pulse target is a label its selector wants.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};

use super::report::Check;

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
    let target = Target {
        namespace,
        job,
        namespace_labels: namespace_labels(client, namespace).await,
    };
    let mut checks = Vec::new();
    for selected in [Selected::ServiceMonitor, Selected::PrometheusRule] {
        checks.push(match target.labels(client, selected).await {
            Ok(labels) => target.verdict(&prometheuses, selected, &labels),
            Err(check) => check,
        });
    }
    checks
}

/// A namespace's labels; `kubernetes.io/metadata.name` is always among them,
/// so it stands in when the namespace cannot be read.
async fn namespace_labels(client: &kube::Client, namespace: &str) -> BTreeMap<String, String> {
    Api::<Namespace>::all(client.clone())
        .get(namespace)
        .await
        .ok()
        .and_then(|n| n.metadata.labels)
        .unwrap_or_else(|| {
            BTreeMap::from([(
                "kubernetes.io/metadata.name".to_owned(),
                namespace.to_owned(),
            )])
        })
}

/// Pulse's objects: where they are and what they are called.
struct Target<'a> {
    namespace: &'a str,
    job: &'a str,
    namespace_labels: BTreeMap<String, String>,
}

impl Target<'_> {
    /// The labels of Pulse's object of kind `selected`, or the failed check.
    async fn labels(
        &self,
        client: &kube::Client,
        selected: Selected,
    ) -> Result<BTreeMap<String, String>, Check> {
        let (name, plural, _, _) = selected.fields();
        let (namespace, job) = (self.namespace, self.job);
        let api: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            namespace,
            &resource(&selected.to_string(), plural),
        );
        match api.get_opt(job).await {
            Ok(Some(object)) => Ok(object.metadata.labels.unwrap_or_default()),
            Ok(None) => Err(Check::fail(
                name,
                format!("no {selected} {namespace}/{job}"),
                format!(
                    "the chart did not create Pulse's {selected} (is it switched off in the values?)"
                ),
            )),
            Err(e) => Err(Check::fail(
                name,
                "",
                format!("cannot read {selected} {namespace}/{job}: {e}"),
            )),
        }
    }

    /// Passes when one of `prometheuses` selects the object; else names why the
    /// first does not.
    fn verdict(
        &self,
        prometheuses: &[DynamicObject],
        selected: Selected,
        labels: &BTreeMap<String, String>,
    ) -> Check {
        let (name, _, _, _) = selected.fields();
        let object = format!("{selected} {}/{}", self.namespace, self.job);
        let mut first_refusal = None;
        for prometheus in prometheuses {
            let own = prometheus.metadata.namespace.as_deref().unwrap_or_default();
            let who = format!(
                "{own}/{}",
                prometheus.metadata.name.as_deref().unwrap_or_default()
            );
            let spec = &prometheus.data["spec"];
            match selects(
                spec,
                own,
                selected,
                labels,
                self.namespace,
                &self.namespace_labels,
            ) {
                Ok(()) => return Check::pass(name, format!("Prometheus {who} selects {object}")),
                Err(why) => {
                    first_refusal.get_or_insert((who, why));
                }
            }
        }
        match first_refusal {
            Some((who, why)) => Check::fail(
                name,
                format!("Prometheus {who} does not select {object}"),
                format!("{object} {why}"),
            ),
            None => Check::fail(
                name,
                "no Prometheus resource in the cluster",
                "install the Prometheus Operator's Prometheus (kube-prometheus-stack)",
            ),
        }
    }
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

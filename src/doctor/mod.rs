//! `pulse doctor`: checks a running installation the way a user would (is Pulse
//! scraped, are its rules loaded, do exemplars, traces and logs arrive, are
//! Grafana's datasources and dashboards there) and names the cause of each failure
//! in one line.
//!
//! Each service is reached by a URL (`--prometheus`, `--pulse`, ...) or, with
//! `--kube`, found in the current kube context by its labels and reached through a
//! port-forward of the API server (`kube.rs`). One request with a known
//! `traceparent` goes through Pulse (`signals::send_probe`); the exemplar, trace
//! and log checks look for that trace id.

mod grafana;
mod http;
mod kube;
mod prometheus;
mod promql;
mod report;
mod selectors;
mod signals;

use std::future::Future;
use std::time::Duration;

use clap::{ArgGroup, Args, ValueEnum};
use tokio::time::Instant;

pub use report::{Check, Report, Status};
pub use selectors::selector_checks;

use http::Endpoint;

/// How doctor prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// One line per check, the cause under each failure.
    Table,
    /// `{"checks":[{"name","status","detail","cause"}]}`.
    Json,
}

/// Options of `pulse doctor`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("targets").required(true).multiple(true)
    .args(["prometheus", "pulse", "grafana", "tempo", "loki", "kube"])))]
pub struct DoctorArgs {
    /// Prometheus's base URL, e.g. `http://127.0.0.1:9090`.
    #[arg(long, env = "PULSE_DOCTOR_PROMETHEUS", value_parser = crate::config::rules::http_url)]
    pub prometheus: Option<String>,
    /// Pulse's base URL, e.g. `http://127.0.0.1:8080`.
    #[arg(long, env = "PULSE_DOCTOR_PULSE", value_parser = crate::config::rules::http_url)]
    pub pulse: Option<String>,
    /// Grafana's base URL; credentials from `GRAFANA_USER` (default `admin`) and `GRAFANA_PASSWORD`.
    #[arg(long, env = "PULSE_DOCTOR_GRAFANA", value_parser = crate::config::rules::http_url)]
    pub grafana: Option<String>,
    /// Tempo's HTTP API base URL, e.g. `http://127.0.0.1:3200`.
    #[arg(long, env = "PULSE_DOCTOR_TEMPO", value_parser = crate::config::rules::http_url)]
    pub tempo: Option<String>,
    /// Loki's base URL, e.g. `http://127.0.0.1:3100`.
    #[arg(long, env = "PULSE_DOCTOR_LOKI", value_parser = crate::config::rules::http_url)]
    pub loki: Option<String>,
    /// Prometheus's `job` label of Pulse's targets (the Service's name); with
    /// `--kube`, found from the Service; otherwise `pulse`.
    #[arg(long, env = "PULSE_DOCTOR_JOB")]
    pub job: Option<String>,
    /// Kubernetes namespace: Pulse's targets carry it as `namespace`; with `--kube`,
    /// where to look (default: the kube context's).
    #[arg(long, short = 'n', env = "PULSE_DOCTOR_NAMESPACE")]
    pub namespace: Option<String>,
    /// Find Pulse, Prometheus, Grafana, Tempo and Loki in the current kube context by
    /// their labels and reach them through port-forwards; URLs given still win.
    #[arg(long, env = "PULSE_DOCTOR_KUBE")]
    pub kube: bool,
    /// How long to wait for data to arrive (exemplars, traces, logs, recordings).
    #[arg(long, env = "PULSE_DOCTOR_TIMEOUT", default_value = "60s",
          value_parser = crate::config::rules::positive_duration)]
    pub timeout: Duration,
    /// Report format.
    #[arg(long, env = "PULSE_DOCTOR_OUTPUT", value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Whose series Prometheus's checks look at: Pulse's `job` and, when given, `namespace`.
#[derive(Debug, Clone)]
pub struct Scope {
    job: String,
    namespace: Option<String>,
}

impl Scope {
    /// True when a target's labels are Pulse's.
    fn selects(&self, labels: &serde_json::Value) -> bool {
        labels["job"] == self.job.as_str()
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| labels["namespace"] == ns)
    }

    /// The PromQL matchers of the scope.
    fn matchers(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("job=\"{}\", namespace=\"{ns}\"", self.job),
            None => format!("job=\"{}\"", self.job),
        }
    }

    fn describe(&self) -> String {
        self.matchers()
    }
}

/// The request doctor sent through Pulse, which the exemplar, trace and log checks
/// look for.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Its W3C trace id (32 hex digits).
    trace_id: String,
    /// The `service.name` of the Pulse that answered.
    service: String,
    /// The `service.name` of its backend, when one answered too.
    backend: Option<String>,
}

/// The services doctor talks to.
#[derive(Debug, Default)]
struct Endpoints {
    prometheus: Option<Endpoint>,
    pulse: Option<Endpoint>,
    grafana: Option<Endpoint>,
    tempo: Option<Endpoint>,
    loki: Option<Endpoint>,
}

/// Runs every check it can and returns the report (never fails: a failure is a check).
pub async fn run(args: &DoctorArgs) -> Report {
    let mut report = Report::default();
    let deadline = Instant::now() + args.timeout;
    let mut urls = kube::Urls {
        prometheus: args.prometheus.clone(),
        pulse: args.pulse.clone(),
        grafana: args.grafana.clone(),
        tempo: args.tempo.clone(),
        loki: args.loki.clone(),
        grafana_auth: grafana_credentials(),
        job: args.job.clone(),
        namespace: args.namespace.clone(),
    };
    // Held to the end: the port-forwards live as long as it does.
    let _forwards = if args.kube {
        let (forwards, checks) = kube::discover(&mut urls).await;
        report.extend(checks);
        Some(forwards)
    } else {
        None
    };
    let scope = Scope {
        job: urls.job.clone().unwrap_or_else(|| "pulse".to_owned()),
        namespace: urls.namespace.clone(),
    };
    let (endpoints, errors) = endpoints(&urls, args.timeout);
    report.extend(errors);

    let probe = match &endpoints.pulse {
        Some(pulse) => {
            let (checks, probe) = signals::send_probe(pulse).await;
            report.extend(checks);
            probe
        }
        None => {
            report.extend([Check::skip("pulse", "no --pulse URL (or --kube)")]);
            None
        }
    };
    match &endpoints.prometheus {
        Some(prometheus) => {
            report.extend(prometheus::configuration(prometheus, &scope, deadline).await)
        }
        None => report.extend([Check::skip("prometheus", "no --prometheus URL (or --kube)")]),
    }
    // The checks that wait for data to arrive wait together.
    let waiting = async {
        let p = endpoints.prometheus.as_ref();
        let recordings = optional(p, |p| prometheus::recordings(p, &scope, deadline));
        let exemplars = optional(p, |p| {
            prometheus::exemplars(p, &scope, probe.as_ref(), deadline)
        });
        let traces = signals::tempo(
            endpoints.tempo.as_ref(),
            endpoints.pulse.as_ref(),
            probe.as_ref(),
            deadline,
        );
        let logs = signals::loki(
            endpoints.loki.as_ref(),
            probe.as_ref(),
            scope.namespace.as_deref(),
            deadline,
        );
        let (r, e, t, l) = tokio::join!(recordings, exemplars, traces, logs);
        [r, e, Some(t), Some(l)]
    };
    report.extend(waiting.await.into_iter().flatten());
    match &endpoints.grafana {
        Some(grafana) => report.extend(grafana::checks(grafana).await),
        None => report.extend([Check::skip("grafana", "no --grafana URL (or --kube)")]),
    }
    report
}

/// `f(endpoint)` when there is one.
async fn optional<'a, F, Fut>(endpoint: Option<&'a Endpoint>, f: F) -> Option<Check>
where
    F: FnOnce(&'a Endpoint) -> Fut,
    Fut: Future<Output = Check>,
{
    match endpoint {
        Some(endpoint) => Some(f(endpoint).await),
        None => None,
    }
}

/// Grafana's login from `GRAFANA_USER` (default `admin`) and `GRAFANA_PASSWORD`.
fn grafana_credentials() -> Option<(String, String)> {
    let password = std::env::var("GRAFANA_PASSWORD").ok()?;
    let user = std::env::var("GRAFANA_USER").unwrap_or_else(|_| "admin".to_owned());
    Some((user, password))
}

/// Clients for the URLs; a client that cannot be built is a failed check.
fn endpoints(urls: &kube::Urls, timeout: Duration) -> (Endpoints, Vec<Check>) {
    let mut errors = Vec::new();
    let mut make = |name: &str, url: &Option<String>, auth: Option<(&str, &str)>| {
        let url = url.as_deref()?;
        Endpoint::new(url, timeout, auth)
            .map_err(|e| errors.push(Check::fail(name, url, e.to_string())))
            .ok()
    };
    let auth = urls
        .grafana_auth
        .as_ref()
        .map(|(u, p)| (u.as_str(), p.as_str()));
    let endpoints = Endpoints {
        prometheus: make("prometheus", &urls.prometheus, None),
        pulse: make("pulse", &urls.pulse, None),
        grafana: make("grafana", &urls.grafana, auth),
        tempo: make("tempo", &urls.tempo, None),
        loki: make("loki", &urls.loki, None),
    };
    (endpoints, errors)
}

/// Calls `check` about once a second until it returns true or the deadline passes;
/// true when it did.
async fn poll(deadline: Instant, mut check: impl AsyncFnMut() -> bool) -> bool {
    loop {
        if check().await {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        tokio::time::sleep((deadline - now).min(Duration::from_secs(1))).await;
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn doctor(args: &[&str]) -> Result<super::DoctorArgs, clap::Error> {
        let argv = ["pulse", "doctor"].into_iter().chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|cli| match cli.into_command() {
            Command::Doctor(args) => args,
            other => panic!("expected doctor, got {other:?}"),
        })
    }

    #[test]
    fn needs_something_to_check_and_urls_that_are_urls() {
        let err = doctor(&[]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = doctor(&["--prometheus", "localhost:9090"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--prometheus"), "{err}");
        let args = doctor(&["--prometheus", "http://127.0.0.1:9090/", "-n", "monitoring"]).unwrap();
        assert_eq!(args.prometheus.as_deref(), Some("http://127.0.0.1:9090"));
        assert_eq!(args.namespace.as_deref(), Some("monitoring"));
        assert_eq!(args.timeout, std::time::Duration::from_secs(60));
        assert!(doctor(&["--kube"]).is_ok());
    }
}

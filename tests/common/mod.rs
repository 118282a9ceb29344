//! Helpers shared by the integration tests: an in-process router, a real
//! `pulse` process, and a small parser for the Prometheus text format.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use pulse::BuildInfo;
use pulse::readiness::Readiness;
use pulse::routes::{self, HttpConfig};
use pulse::settings::{LiveSettings, RuntimeSettings};
use pulse::state::{AppState, ServiceInfo};
use pulse::store::MemoryStore;
use pulse::telemetry::Metrics;
use tower::ServiceExt as _;

/// The real router over a fresh store and registry.
pub struct TestApp {
    pub router: Router,
    pub state: AppState,
}

impl TestApp {
    pub fn new() -> Self {
        Self::with_config(&HttpConfig::default())
    }

    pub fn with_config(config: &HttpConfig) -> Self {
        Self::with(config, default_settings())
    }

    /// Starts with `settings` as the command-line runtime settings.
    pub fn with_settings(settings: RuntimeSettings) -> Self {
        Self::with(&HttpConfig::default(), settings)
    }

    fn with(config: &HttpConfig, settings: RuntimeSettings) -> Self {
        let started = Instant::now();
        let build = BuildInfo::current();
        let resource = pulse::telemetry::resource(&build);
        let name = pulse::telemetry::service_name(&resource);
        let metrics = Metrics::new(resource, &build, started).expect("metrics");
        let readiness = Arc::new(Readiness::default());
        readiness.set_ready();
        let state = AppState {
            store: Arc::new(MemoryStore::new()),
            metrics: metrics.clone(),
            readiness,
            info: Arc::new(ServiceInfo::from_env(name, build, started)),
            settings: Arc::new(LiveSettings::new(settings, metrics.clone(), None)),
        };
        Self {
            router: routes::router(state.clone(), config),
            state,
        }
    }

    /// Sends one request; a body is sent as `application/json`.
    pub async fn send(&self, method: &str, uri: &str, body: Option<&str>) -> Reply {
        let content_type = body.map(|_| "application/json");
        self.send_with(
            method,
            uri,
            content_type,
            body.unwrap_or_default().as_bytes(),
        )
        .await
    }

    /// Sends one request with an explicit content type (or none).
    pub async fn send_with(
        &self,
        method: &str,
        uri: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Reply {
        let mut builder = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).expect("method"))
            .uri(uri);
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        let request = builder.body(Body::from(body.to_vec())).expect("request");
        self.request(request).await
    }

    pub async fn request(&self, request: Request<Body>) -> Reply {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.send("GET", uri, None).await
    }

    /// The current exposition, parsed.
    pub async fn scrape(&self) -> Exposition {
        let reply = self.get("/metrics").await;
        assert_eq!(reply.status, StatusCode::OK);
        Exposition::parse(&reply.body)
    }
}

/// The command-line defaults: info logs, no faults.
pub fn default_settings() -> RuntimeSettings {
    RuntimeSettings::default()
}

/// A buffered response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// One sample of the text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    /// Name and labels: what makes a series one series.
    pub fn key(&self) -> String {
        format!("{}{:?}", self.name, self.labels)
    }
}

/// A parsed exposition: samples plus `# TYPE` lines.
#[derive(Debug, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    pub types: BTreeMap<String, String>,
    pub text: String,
}

impl Exposition {
    pub fn parse(text: &str) -> Self {
        let mut out = Exposition {
            text: text.to_owned(),
            ..Default::default()
        };
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE line");
                out.types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value = value.parse().expect("value");
            let (name, labels) = match series.split_once('{') {
                None => (series.to_owned(), BTreeMap::new()),
                Some((name, rest)) => (name.to_owned(), parse_labels(rest.trim_end_matches('}'))),
            };
            out.samples.push(Sample {
                name,
                labels,
                value,
            });
        }
        out
    }

    /// Samples of one metric whose labels include all of `matching`.
    pub fn find(&self, name: &str, matching: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                matching
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The one value of a series; 0 when it does not exist.
    pub fn value(&self, name: &str, matching: &[(&str, &str)]) -> f64 {
        match self.find(name, matching).as_slice() {
            [] => 0.0,
            [one] => one.value,
            many => panic!("{name}{matching:?} matches {} series", many.len()),
        }
    }

    /// Number of distinct series.
    pub fn series_count(&self) -> usize {
        self.samples.len()
    }

    /// The identity (name and labels) of every series.
    pub fn series(&self) -> BTreeSet<String> {
        self.samples.iter().map(Sample::key).collect()
    }
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    // Label values Pulse emits contain no escaped quotes or commas in quotes
    // except route templates, which contain neither.
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let end = after.find('"').expect("closing quote");
        labels.insert(
            key.trim_start_matches(',').to_owned(),
            after[..end].to_owned(),
        );
        rest = &after[end + 1..];
    }
    labels
}

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A running `pulse` binary, killed when dropped. Its stdout and stderr are
/// collected line by line.
pub struct Pulse {
    pub child: Child,
    pub port: u16,
    pub output: Arc<Mutex<Vec<String>>>,
}

impl Pulse {
    /// Starts `pulse serve` on a free port with `args` and waits until ready.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// Like [`Pulse::start`], with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_pulse"))
            .args(["--addr", &addr])
            .args(args)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pulse");
        let output = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let sink = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    sink.lock().expect("log sink").push(line);
                }
            });
        }
        let pulse = Self {
            child,
            port,
            output,
        };
        pulse.wait_ready(Duration::from_secs(10));
        pulse
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn wait_ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let client = client();
        while Instant::now() < deadline {
            if let Ok(r) = client.get(self.url("/readyz")).send()
                && r.status().is_success()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "pulse not ready after {limit:?}; output: {:?}",
            self.lines()
        );
    }

    /// GET /metrics, parsed.
    pub fn scrape(&self) -> Exposition {
        let text = client()
            .get(self.url("/metrics"))
            .send()
            .expect("scrape")
            .text()
            .expect("body");
        Exposition::parse(&text)
    }

    pub fn lines(&self) -> Vec<String> {
        self.output.lock().expect("log sink").clone()
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("kill");
    }

    /// Waits for exit; `None` if still running after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Pulse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking HTTP client with a bounded timeout.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client")
}

//! Helpers shared by the integration tests: the real router in process, a real
//! `pulse` process, and the text exposition read by a real parser.

pub mod otlp;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use pulse::app::{App, Identity};
use pulse::config::ServeArgs;
use pulse::state::AppState;
use pulse::telemetry::Handles;
use tower::ServiceExt as _;

/// A Redis database of its own on the test server (`PULSE_TEST_REDIS_URL`),
/// emptied: the cache's keys are the same in every test (`pulse:v1:user:1`), so
/// tests must not share one, nor find an earlier run's keys.
async fn empty_redis_database() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let base = std::env::var("PULSE_TEST_REDIS_URL")
        .expect("PULSE_TEST_STORE=cached needs PULSE_TEST_REDIS_URL (scripts/with-redis.sh)");
    let db = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    assert!(db <= 15, "more cached API tests than Redis databases");
    let url = format!("{}/{db}", base.trim_end_matches('/'));
    let client = redis::Client::open(url.as_str()).expect("Redis URL");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("the test Redis");
    redis::cmd("FLUSHDB")
        .query_async::<()>(&mut connection)
        .await
        .expect("FLUSHDB");
    url
}

/// The real router over a fresh store and registry.
pub struct TestApp {
    pub router: Router,
    pub state: AppState,
}

impl TestApp {
    pub fn new() -> Self {
        Self::with(&ServeArgs::default())
    }

    /// A fresh app on the store the run asks for: in memory, or, with
    /// `PULSE_TEST_STORE=postgres`, PostgreSQL (a new database on the server
    /// `PULSE_TEST_DATABASE_URL` names, migrated, its supervisor running). The API
    /// suite runs once per store (`make test`).
    ///
    /// `PULSE_TEST_STORE=cached` adds the Redis cache (`PULSE_TEST_REDIS_URL`, a
    /// Redis database of this test's own, emptied first): the suite's third run,
    /// which must give the same answers.
    pub async fn fresh() -> Self {
        let store = std::env::var("PULSE_TEST_STORE").unwrap_or_default();
        if store != "postgres" && store != "cached" {
            return Self::new();
        }
        let url = fresh_database().await;
        let mut args = ServeArgs {
            database_url: Some(pulse::config::urls::database_url(&url).expect("database URL")),
            ..ServeArgs::default()
        };
        if store == "cached" {
            let redis = empty_redis_database().await;
            args.redis_url = Some(pulse::config::urls::redis_url(&redis).expect("Redis URL"));
            // Generous: a first connection on a loaded machine can take past 50 ms, and
            // a timed-out lookup would only fall through to PostgreSQL, hiding nothing.
            args.cache_timeout = Duration::from_secs(2);
        }
        let app =
            App::new(&args, Identity::current(Instant::now()), Handles::default()).expect("app");
        let database = app.database.clone().expect("the PostgreSQL store");
        database.migrate().await.expect("migrations");
        tokio::spawn(database.clone().supervise());
        let deadline = Instant::now() + Duration::from_secs(10);
        while app.state.store.unavailable().is_some() {
            assert!(
                Instant::now() < deadline,
                "the database never became available"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        app.state.readiness.set_ready();
        Self {
            router: app.main,
            state: app.state,
        }
    }

    /// The app `pulse serve` would run with `args`, ready.
    pub fn with(args: &ServeArgs) -> Self {
        let app =
            App::new(args, Identity::current(Instant::now()), Handles::default()).expect("app");
        app.state.readiness.set_ready();
        Self {
            router: app.main,
            state: app.state,
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

    /// Sends `request`, with a `Host` header when it has none (as every HTTP/1.1
    /// client sends one; Pulse refuses a request without).
    pub async fn request(&self, mut request: Request<Body>) -> Reply {
        if !request.headers().contains_key("host") {
            request
                .headers_mut()
                .insert("host", axum::http::HeaderValue::from_static("pulse.test"));
        }
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

/// `text` with every sample of a family given the same label names, a missing
/// one as `name=""`. The text format lets the series of one family carry different
/// labels (Pulse's `db_client_operation_duration_seconds`: PostgreSQL operations
/// name a collection, Redis commands have none), and Prometheus reads an empty
/// value as no label; `openmetrics-parser` refuses such a family, so the missing
/// names are filled in here and dropped again after parsing.
fn same_label_names(text: &str) -> String {
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let family_of = |sample: &str| {
        families
            .iter()
            .filter(|f| {
                sample.strip_prefix(**f).is_some_and(|rest| {
                    ["", "_bucket", "_sum", "_count", "_total", "_created"].contains(&rest)
                })
            })
            .max_by_key(|f| f.len())
            .copied()
    };
    let mut union: BTreeMap<&str, std::collections::BTreeSet<String>> = BTreeMap::new();
    let parsed: Vec<Option<(&str, Vec<String>)>> = text
        .lines()
        .map(|line| {
            if line.starts_with('#') || line.trim().is_empty() {
                return None;
            }
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let (name, names) = (&line[..name_end], label_names(&line[name_end..]));
            if let Some(family) = family_of(name) {
                union.entry(family).or_default().extend(
                    names
                        .iter()
                        .filter(|n| *n != "le" && *n != "quantile")
                        .cloned(),
                );
            }
            Some((name, names))
        })
        .collect();
    let mut out = String::with_capacity(text.len());
    for (line, parsed) in text.lines().zip(parsed) {
        let missing: Vec<&String> = match &parsed {
            Some((name, names)) => family_of(name)
                .and_then(|f| union.get(f))
                .map(|all| all.iter().filter(|n| !names.contains(n)).collect())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        if missing.is_empty() {
            out.push_str(line);
        } else {
            let filled: Vec<String> = missing.iter().map(|n| format!("{n}=\"\"")).collect();
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            if line[name_end..].starts_with('{') {
                let close = line.rfind('}').expect("a closing brace");
                let sep = if close == name_end + 1 { "" } else { "," };
                out.push_str(&format!(
                    "{}{sep}{}{}",
                    &line[..close],
                    filled.join(","),
                    &line[close..]
                ));
            } else {
                out.push_str(&format!(
                    "{}{{{}}}{}",
                    &line[..name_end],
                    filled.join(","),
                    &line[name_end..]
                ));
            }
        }
        out.push('\n');
    }
    out
}

/// The label names of a sample line's `{...}` part (empty without one).
fn label_names(rest: &str) -> Vec<String> {
    let Some(body) = rest.strip_prefix('{') else {
        return Vec::new();
    };
    let mut names = Vec::new();
    let mut chars = body.chars();
    let mut name = String::new();
    while let Some(c) = chars.next() {
        match c {
            '}' => break,
            ',' | ' ' => {}
            '=' => {
                names.push(std::mem::take(&mut name));
                // The quoted value, escapes included.
                let _ = chars.next(); // the opening quote
                while let Some(v) = chars.next() {
                    match v {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            c => name.push(c),
        }
    }
    names
}

/// A parsed exposition: samples plus `# TYPE` lines.
#[derive(Debug, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    pub types: BTreeMap<String, String>,
    pub text: String,
}

impl Exposition {
    /// Reads the text format (0.0.4) with `openmetrics-parser`, and lists every
    /// sample as the text has it (histograms as `_bucket{le}`, `_sum`, `_count`).
    pub fn parse(text: &str) -> Self {
        use openmetrics_parser::{MetricNumber, PrometheusType, PrometheusValue};
        let parsed = openmetrics_parser::prometheus::parse_prometheus(&same_label_names(text))
            .unwrap_or_else(|e| panic!("not a valid exposition ({e:?}):\n{text}"));
        let mut out = Exposition {
            text: text.to_owned(),
            ..Default::default()
        };
        for (name, family) in &parsed.families {
            out.types
                .insert(name.clone(), family.family_type.to_string());
            for sample in family.iter_samples() {
                // An empty value is no label (Prometheus's rule; see `same_label_names`).
                let labels: BTreeMap<String, String> = sample
                    .get_labelset()
                    .expect("label set")
                    .iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let mut push = |suffix: &str, extra: Option<(&str, String)>, value: f64| {
                    let mut labels = labels.clone();
                    if let Some((k, v)) = extra {
                        labels.insert(k.to_owned(), v);
                    }
                    out.samples.push(Sample {
                        name: format!("{name}{suffix}"),
                        labels,
                        value,
                    });
                };
                match &sample.value {
                    PrometheusValue::Unknown(n) | PrometheusValue::Gauge(n) => {
                        push("", None, n.as_f64())
                    }
                    PrometheusValue::Counter(c) => {
                        // The family is named without `_total`; the sample has it.
                        let suffix = if family.family_type == PrometheusType::Counter
                            && !name.ends_with("_total")
                        {
                            "_total"
                        } else {
                            ""
                        };
                        push(suffix, None, c.value.as_f64())
                    }
                    PrometheusValue::Histogram(h) => {
                        for bucket in &h.buckets {
                            push(
                                "_bucket",
                                Some(("le", le(bucket.upper_bound))),
                                bucket.count.as_f64(),
                            );
                        }
                        push(
                            "_sum",
                            None,
                            h.sum.as_ref().map_or(0.0, MetricNumber::as_f64),
                        );
                        push("_count", None, h.count.unwrap_or(0) as f64);
                    }
                    PrometheusValue::Summary(_) => panic!("Pulse exports no summaries: {name}"),
                }
            }
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

    /// The identity (name and labels) of every series.
    pub fn series(&self) -> BTreeSet<String> {
        self.samples.iter().map(Sample::key).collect()
    }
}

/// A bucket bound as the text format writes it.
fn le(bound: f64) -> String {
    if bound == f64::INFINITY {
        "+Inf".to_owned()
    } else {
        bound.to_string()
    }
}

pub use crate::server::free_port;
use crate::server::{Launch, PULSE, Server};

/// A running `pulse` binary, started through the shared start-up helper
/// (`tests/support/server.rs`, which the benchmarks use too) and killed when
/// dropped. Its stdout and stderr are collected line by line.
pub struct Pulse {
    server: Server,
    pub port: u16,
}

impl Pulse {
    /// Starts `pulse serve` on a free port with `args` and waits until ready.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// Like [`Pulse::start`], with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_on(free_port(), args, env)
    }

    /// Like [`Pulse::start_with_env`], on a given port (known before it starts).
    pub fn start_on(port: u16, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut pulse = Self::spawn_on(port, args, env);
        pulse.wait_ready_for(Duration::from_secs(10));
        pulse
    }

    /// Starts `pulse serve` like [`Pulse::start_on`] without waiting for it to be
    /// ready; [`Pulse::wait_listening`] waits for it to answer at all.
    pub fn spawn_on(port: u16, args: &[&str], env: &[(&str, &str)]) -> Self {
        let server = Launch::new(PULSE)
            .port(port)
            .arg("--addr")
            .arg_addr()
            .args(args)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .envs(env)
            // Tests that need the graceful exit ask for it (`terminate`).
            .grace(Duration::ZERO)
            .spawn();
        Self { server, port }
    }

    /// Waits until it answers `/healthz` (ready or not).
    pub fn wait_listening(&mut self, limit: Duration) {
        self.server.wait_answering("/healthz", limit);
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready_for(&mut self, limit: Duration) {
        self.server.wait_ready("/readyz", limit);
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.server.pid()
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
        self.server.lines()
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        self.server.signal(signal);
    }

    /// SIGTERM, then waits for the graceful exit (0) that flushes telemetry.
    pub fn terminate(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let status = self
            .wait_exit(Duration::from_secs(10))
            .and_then(|s| s.code());
        assert_eq!(status, Some(0), "pulse did not exit 0 after SIGTERM");
    }

    /// Waits for exit; `None` if still running after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        self.server.wait_exit(limit)
    }
}

/// A blocking HTTP client with a bounded timeout.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client")
}

/// The test PostgreSQL server (`PULSE_TEST_DATABASE_URL`, an admin connection;
/// `make test` starts a private one with scripts/with-postgres.sh).
pub fn test_database_server() -> String {
    std::env::var("PULSE_TEST_DATABASE_URL")
        .expect("PULSE_TEST_DATABASE_URL: run the PostgreSQL tests through `make test` (scripts/with-postgres.sh)")
}

/// A new, empty database on the test server; returns its URL.
pub async fn fresh_database() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let server = test_database_server();
    let name = format!(
        "pulse_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&server)
        .await
        .expect("connect to the test PostgreSQL server");
    sqlx::Executor::execute(
        &mut admin,
        sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
    )
    .await
    .expect("create a test database");
    with_database(&server, &name)
}

/// `server` (a postgres:// URL) with its database replaced by `name`.
pub fn with_database(server: &str, name: &str) -> String {
    let (base, query) = server
        .split_once('?')
        .map_or((server, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| i + scheme_end);
    let url = format!("{}/{name}", &base[..authority_end]);
    match query {
        Some(q) => format!("{url}?{q}"),
        None => url,
    }
}

/// What a suite needs beyond Rust, which `make test` provides and a bare `cargo test`
/// may not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A PostgreSQL server (`PULSE_TEST_DATABASE_URL`; `make test` starts one).
    Postgres,
    /// A Redis server (`PULSE_TEST_REDIS_URL`; `make test` starts one) and PostgreSQL.
    Redis,
    /// `promtool` on the `PATH` (Debian's `prometheus` package).
    Promtool,
    /// A minute to spare: the soak test (`make test` runs it).
    Soak,
}

impl Need {
    fn present(self) -> bool {
        match self {
            Self::Postgres => std::env::var_os("PULSE_TEST_DATABASE_URL").is_some(),
            Self::Redis => {
                Self::Postgres.present() && std::env::var_os("PULSE_TEST_REDIS_URL").is_some()
            }
            Self::Promtool => std::process::Command::new("promtool")
                .arg("--version")
                .output()
                .is_ok(),
            // Asked for by make test, or by a length given on purpose.
            Self::Soak => std::env::var_os("PULSE_SOAK_SECONDS").is_some(),
        }
    }

    fn what(self) -> &'static str {
        match self {
            Self::Postgres => "PostgreSQL (PULSE_TEST_DATABASE_URL)",
            Self::Redis => "Redis and PostgreSQL (PULSE_TEST_REDIS_URL, PULSE_TEST_DATABASE_URL)",
            Self::Promtool => "promtool",
            Self::Soak => "PULSE_SOAK_SECONDS",
        }
    }
}

/// Whether a test needing `need` runs here. `make test` sets `PULSE_TEST_ALL=1`: then
/// everything must be present, and a missing need fails the test. Under a bare
/// `cargo test` the test is left to `make test`, and each suite says so once, on
/// stderr itself (libtest captures only the print macros).
pub fn runs_here(need: Need, suite: &str) -> bool {
    if need.present() {
        return true;
    }
    assert!(
        std::env::var_os("PULSE_TEST_ALL").is_none(),
        "{suite} needs {}: make test provides it (make deps says how)",
        need.what()
    );
    // The suites share one process (main.rs): once per suite, not once per process.
    static SAID: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let first = SAID
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(suite.to_owned());
    if first {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "note: {suite} left to `make test` (needs {})",
            need.what()
        );
    }
    false
}

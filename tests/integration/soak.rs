//! Soak: steady mixed load from `pulse load` plus a flood of random paths,
//! methods, headers and bodies, against the real binary. 60 s by default;
//! `PULSE_SOAK_SECONDS` makes it longer, `PULSE_SOAK_SEED` replays a flood.
//!
//! Afterwards: resident memory grew less than 10%; the random traffic created no
//! series (every label value comes from a fixed set); every request was
//! answered; and the server's counters agree with what the clients saw, status
//! class by status class and error by error.

use crate::common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Exposition, Pulse};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom as _;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use reqwest::blocking::Client;

/// Small enough that the flood can send bodies over it.
const MAX_BODY: usize = 16 * 1024;

/// Where the flood aims. Each target answers one status per method whatever
/// the random parts are, so one pass over every (target, method) pair creates
/// every series the flood can create.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// A path no route matches.
    RandomPath,
    /// `/api/users/{id}` with an id that is not a number.
    BadUserId,
    /// `/data/{key}` with a key nobody stored.
    MissingKey,
    /// `/data` with a body that is not JSON at all.
    BrokenJson,
    /// `/data` with JSON of the wrong shape.
    WrongShape,
    /// `/data` with a body that says it is text.
    TextBody,
    /// `/data` with a body over `--max-body-bytes`.
    Oversized,
    /// `/echo` with random bytes.
    Echo,
}

const TARGETS: [Target; 8] = [
    Target::RandomPath,
    Target::BadUserId,
    Target::MissingKey,
    Target::BrokenJson,
    Target::WrongShape,
    Target::TextBody,
    Target::Oversized,
    Target::Echo,
];

/// Standard methods plus one invented per request (all exported as `_OTHER`).
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"];

fn token<R: Rng + ?Sized>(rng: &mut R, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
    (0..len)
        .map(|_| char::from(*ALPHABET.choose(rng).unwrap_or(&b'x')))
        .collect()
}

/// Path-safe text with percent-escapes, dots and unicode, never a number.
fn junk_segment(rng: &mut impl Rng) -> String {
    let parts = [
        "%20",
        "%2e%2e",
        "..",
        "%F0%9F%92%A5",
        "~",
        "%00",
        ";x=1",
        "%ZZ",
    ];
    let len = rng.random_range(1..40);
    let mut s = format!("z{}", token(rng, len));
    for _ in 0..rng.random_range(0..4) {
        s.push_str(parts.choose(rng).unwrap_or(&"_"));
    }
    s
}

struct Flood {
    client: Client,
    base: String,
    /// Answers by status, as this client saw them.
    seen: BTreeMap<u16, u64>,
    /// Requests that got no answer.
    failed: u64,
}

impl Flood {
    fn new(base: &str) -> Self {
        Self {
            client: Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .expect("client"),
            base: base.to_owned(),
            seen: BTreeMap::new(),
            failed: 0,
        }
    }

    fn send(&mut self, rng: &mut impl Rng, target: Target, method: &str) {
        let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
        let (path, content_type, body): (String, &str, Vec<u8>) = match target {
            Target::RandomPath => {
                let depth = rng.random_range(1..6);
                let path: Vec<String> = (0..depth).map(|_| junk_segment(rng)).collect();
                let query = format!("?{}={}", token(rng, 5), token(rng, 30));
                (format!("/{}{query}", path.join("/")), "", Vec::new())
            }
            Target::BadUserId => (format!("/api/users/{}", junk_segment(rng)), "", Vec::new()),
            Target::MissingKey => (format!("/data/{}", junk_segment(rng)), "", Vec::new()),
            Target::BrokenJson => (
                "/data".into(),
                "application/json",
                format!("{{\"{}", token(rng, 50)).into_bytes(),
            ),
            Target::WrongShape => (
                "/data".into(),
                "application/json",
                format!("[{}]", rng.random_range(0..1_000_000)).into_bytes(),
            ),
            Target::TextBody => ("/data".into(), "text/plain", token(rng, 200).into_bytes()),
            Target::Oversized => (
                "/data".into(),
                "application/json",
                vec![b' '; MAX_BODY + rng.random_range(1..MAX_BODY)],
            ),
            Target::Echo => {
                let len = rng.random_range(0..4096);
                (
                    "/echo".into(),
                    "application/octet-stream",
                    (0..len).map(|_| rng.random()).collect(),
                )
            }
        };
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .body(body);
        if !content_type.is_empty() {
            request = request.header("content-type", content_type);
        }
        for _ in 0..rng.random_range(0..12) {
            request = request.header(format!("x-{}", token(rng, 12)), token(rng, 60));
        }
        if rng.random_bool(0.2) {
            request = request.header("traceparent", token(rng, 55));
        }
        match request.send() {
            Ok(response) => *self.seen.entry(response.status().as_u16()).or_default() += 1,
            Err(_) => self.failed += 1,
        }
    }
}

/// Resident memory of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Sum of `http_requests_total` by status class ("2", "4", "5").
fn served_by_class(m: &Exposition) -> BTreeMap<char, f64> {
    let mut classes = BTreeMap::new();
    for s in m.find("http_requests_total", &[]) {
        let class = s.labels["status"].chars().next().unwrap_or('?');
        *classes.entry(class).or_default() += s.value;
    }
    classes
}

fn answered_errors(m: &Exposition) -> f64 {
    m.find("api_errors_total", &[])
        .iter()
        .map(|s| s.value)
        .sum()
}

#[test]
fn random_traffic_grows_no_memory_no_series_and_is_counted_exactly() {
    if !common::runs_here(common::Need::Soak, "tests/integration/soak.rs (60 s)") {
        return;
    }
    let seconds: u64 = std::env::var("PULSE_SOAK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let seed: u64 = std::env::var("PULSE_SOAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("soak: {seconds}s, PULSE_SOAK_SEED={seed}");
    let max_body = MAX_BODY.to_string();
    let pulse = Pulse::start(&["--log-level", "warn", "--max-body-bytes", &max_body]);
    let base = pulse.url("");

    // Steady mixed load for the whole run, counted by `pulse load` itself.
    let warm_up = Duration::from_secs(10);
    let load = Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args([
            "load", "--target", &base, "--mix", "default", "--rate", "50",
        ])
        .args(["--output", "json", "--duration"])
        .arg(format!("{}s", warm_up.as_secs() + seconds))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pulse load");

    // One request per (target, method): every series the flood can create now exists.
    let mut rng = StdRng::seed_from_u64(seed);
    let mut prime = Flood::new(&base);
    for target in TARGETS {
        for method in METHODS.iter().copied().chain(["INVENTED"]) {
            prime.send(&mut rng, target, method);
        }
    }
    thread::sleep(warm_up);
    let baseline = pulse.scrape();
    let rss_before = rss_kib(pulse.pid());

    let stop = Arc::new(AtomicBool::new(false));
    let floods: Vec<_> = (0..2u64)
        .map(|i| {
            let (base, stop) = (base.clone(), stop.clone());
            thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(seed.wrapping_add(i + 1));
                let mut flood = Flood::new(&base);
                while !stop.load(Ordering::Relaxed) {
                    let target = *TARGETS.choose(&mut rng).unwrap_or(&Target::Echo);
                    let method = if rng.random_bool(0.1) {
                        token(&mut rng, 8).to_uppercase()
                    } else {
                        (*METHODS.choose(&mut rng).unwrap_or(&"GET")).to_owned()
                    };
                    flood.send(&mut rng, target, &method);
                    thread::sleep(Duration::from_millis(2));
                }
                flood
            })
        })
        .collect();
    let started = Instant::now();
    thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let floods: Vec<Flood> = floods
        .into_iter()
        .map(|f| f.join().expect("flood"))
        .collect();
    let output = load.wait_with_output().expect("pulse load");
    let summary: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("pulse load summary");
    let end = pulse.scrape();
    let rss_after = rss_kib(pulse.pid());

    // Every request was answered.
    let flooded: u64 = floods.iter().flat_map(|f| f.seen.values()).sum();
    eprintln!(
        "soak: {flooded} random requests in {:?}, load {summary}",
        started.elapsed()
    );
    assert!(flooded > 1000, "the flood ran ({flooded} requests)");
    assert_eq!(
        floods.iter().map(|f| f.failed).sum::<u64>() + prime.failed,
        0
    );
    assert_eq!(summary["status"]["failed"], 0, "{summary}");

    // Memory.
    let growth = rss_after as f64 / rss_before as f64 - 1.0;
    eprintln!(
        "soak: RSS {rss_before} KiB -> {rss_after} KiB ({:+.1}%)",
        growth * 100.0
    );
    assert!(growth < 0.10, "RSS grew {:.1}%", growth * 100.0);

    // Series: any new one comes from the steady mix's rarer requests, never
    // from a random path, method or header.
    let before = baseline.series();
    let new: Vec<_> = end
        .samples
        .iter()
        .filter(|s| !before.contains(&s.key()))
        .collect();
    let mix_routes = [
        "/api/users",
        "/api/users/{id}",
        "/data",
        "/data/{key}",
        "/items/{item_id}",
        "/update",
        "/cpu",
        "/version",
        "unmatched",
        "/api/error",
        "/api/slow",
    ];
    for s in new {
        let label = |k: &str| s.labels.get(k).map(String::as_str);
        let from_the_mix = match label("error_type") {
            // The mix's errors: /api/error, bad ids, unknown pages.
            Some(t) => ["simulated", "validation", "not_found"].contains(&t),
            None => {
                label("route").is_some_and(|r| mix_routes.contains(&r))
                    && label("method")
                        .is_some_and(|m| ["GET", "POST", "PUT", "DELETE"].contains(&m))
                    && label("status")
                        .is_none_or(|c| ["200", "201", "204", "400", "404", "500"].contains(&c))
            }
        };
        assert!(
            from_the_mix,
            "series not explained by the steady load: {} {:?}",
            s.name, s.labels
        );
    }
    assert!(before.is_subset(&end.series()), "no series disappeared");

    // Counters agree with the clients, status class by status class...
    let mut seen: BTreeMap<char, f64> = BTreeMap::new();
    for flood in floods.iter().chain([&prime]) {
        for (status, n) in &flood.seen {
            let class = status.to_string().chars().next().unwrap_or('?');
            *seen.entry(class).or_default() += *n as f64;
        }
    }
    for (class, key) in [('2', "2xx"), ('4', "4xx"), ('5', "5xx")] {
        *seen.entry(class).or_default() += summary["status"][key].as_f64().unwrap_or(0.0);
    }
    let served = served_by_class(&end);
    for class in ['2', '4', '5'] {
        assert_eq!(
            served.get(&class).copied().unwrap_or(0.0),
            seen.get(&class).copied().unwrap_or(0.0),
            "{class}xx: server counted vs clients saw"
        );
    }
    // ...and every error answer is an error counted once.
    assert_eq!(
        answered_errors(&end),
        seen.get(&'4').copied().unwrap_or(0.0) + seen.get(&'5').copied().unwrap_or(0.0),
        "api_errors_total vs 4xx + 5xx answers"
    );
}

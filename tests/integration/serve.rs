//! `App::run` in process: the shutdown sequence and the drain, without
//! spawning the binary (shutdown.rs does that, with real signals).

use std::time::{Duration, Instant};

use pulse::app::{App, Identity};
use pulse::config::ServeArgs;
use pulse::server::{Listeners, ServeError};
use pulse::telemetry::Handles;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Running {
    base: String,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<Result<(), ServeError>>,
}

/// Serves the app `args` describe on a free loopback port until `stop`.
async fn start(args: ServeArgs) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = App::new(&args, Identity::current(Instant::now()), Handles::default()).expect("app");
    let (stop, stopped) = oneshot::channel::<()>();
    let listeners = Listeners {
        main: listener,
        admin: None,
    };
    let served = tokio::spawn(app.run(listeners, async move {
        let _ = stopped.await;
        "test"
    }));
    Running {
        base,
        stop: Some(stop),
        served,
    }
}

impl Running {
    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A client that opens a new connection per request, so "refused" means refused.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn args(delay_ms: u64, timeout_ms: u64) -> ServeArgs {
    ServeArgs {
        shutdown_delay: Duration::from_millis(delay_ms),
        shutdown_timeout: Duration::from_millis(timeout_ms),
        ..ServeArgs::default()
    }
}

#[tokio::test]
async fn shutdown_turns_unready_serves_through_the_delay_then_drains_in_flight_requests() {
    let mut pulse = start(args(600, 5_000)).await;
    let client = client();
    let ready = client
        .get(format!("{}/readyz", pulse.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    // In flight across the whole sequence: started before, ends after accepting stops.
    let in_flight = tokio::spawn(client.get(format!("{}/delay/1.2", pulse.base)).send());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let signalled = Instant::now();
    pulse.shut_down();
    tokio::time::sleep(Duration::from_millis(50)).await;

    let during = client
        .get(format!("{}/readyz", pulse.base))
        .send()
        .await
        .unwrap();
    assert_eq!(during.status(), 503, "not ready at once");
    assert_eq!(
        during.headers()["connection"],
        "close",
        "keep-alive clients are told to go"
    );
    let body: serde_json::Value = during.json().await.unwrap();
    assert_eq!(body["reason"], "shutting down");
    let api = client
        .get(format!("{}/api/users", pulse.base))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 200, "still serving during the delay");

    tokio::time::sleep(Duration::from_millis(700)).await;
    let after = client.get(format!("{}/healthz", pulse.base)).send().await;
    assert!(
        after.is_err(),
        "no longer accepting after the delay: {after:?}"
    );

    let finished = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(finished.status(), 200);
    pulse.served.await.unwrap().expect("serve returns Ok");
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "returned once drained"
    );
}

#[tokio::test]
async fn the_drain_gives_up_after_the_shutdown_timeout() {
    let mut pulse = start(args(0, 300)).await;
    let client = client();
    let stuck = tokio::spawn(client.get(format!("{}/delay/5", pulse.base)).send());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let signalled = Instant::now();
    pulse.shut_down();
    pulse.served.await.unwrap().expect("serve returns Ok");
    let waited = signalled.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
        "waited {waited:?} for a request that needs 5 s"
    );
    stuck.abort();
}

#[tokio::test]
async fn connection_close_while_draining_does_not_depend_on_the_telemetry_layer() {
    let mut pulse = start(ServeArgs {
        disable_http_telemetry: true,
        ..args(500, 1_000)
    })
    .await;
    let client = client();
    pulse.shut_down();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let reply = client
        .get(format!("{}/api/users", pulse.base))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.headers()["connection"], "close");
    pulse.served.await.unwrap().expect("serve returns Ok");
}

/// Reads one answer (head and a Content-Length body) from `stream`.
async fn read_answer(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt as _;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&data).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .to_ascii_lowercase()
                .lines()
                .find_map(|l| {
                    l.strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(
            n > 0,
            "closed without an answer: {:?}",
            String::from_utf8_lossy(&data)
        );
        data.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn a_request_on_an_idle_keep_alive_connection_during_the_drain_is_answered() {
    use tokio::io::AsyncWriteExt as _;
    let mut pulse = start(args(0, 5_000)).await;
    let addr = pulse.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = b"GET /api/users HTTP/1.1\r\nHost: pulse\r\n\r\n";
    stream.write_all(request).await.unwrap();
    assert!(read_answer(&mut stream).await.starts_with("HTTP/1.1 200"));
    // Idle on keep-alive when the drain starts: hyper's own graceful shutdown
    // closes such a connection at once, losing a request already on its way.
    pulse.shut_down();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream.write_all(request).await.unwrap();
    let answer = read_answer(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    pulse.served.await.unwrap().expect("serve returns Ok");
}

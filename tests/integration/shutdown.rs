//! SIGTERM under load, on the real binary: while `pulse load` sends a steady
//! rate, the server is told to stop. Nothing sent while it accepted may fail,
//! and what was written before the signal stays readable until it stops
//! accepting (README "Graceful shutdown").

use crate::common;

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{Pulse, client};
use nix::sys::signal::Signal;

#[test]
fn sigterm_under_load_fails_no_request_and_loses_no_write() {
    let delay = Duration::from_secs(4);
    let mut pulse = Pulse::start(&[
        "--log-level",
        "warn",
        "--shutdown-delay",
        "4s",
        "--shutdown-timeout",
        "10s",
    ]);
    let http = client();
    let written: Vec<(String, String)> = (0..20)
        .map(|i| (format!("before-sigterm-{i}"), format!("value {i}")))
        .collect();
    for (key, value) in &written {
        let body = serde_json::json!({ "key": key, "value": value });
        let response = http.post(pulse.url("/data")).json(&body).send().unwrap();
        assert_eq!(response.status(), 201, "write of {key} acknowledged");
    }

    // Load from before the signal until shortly before accepting stops. The
    // default mix includes /api/slow (2-3 s), so requests are in flight when
    // the drain starts.
    let load = Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args(["load", "--target", &pulse.url(""), "--mix", "default"])
        .args(["--rate", "100", "--duration", "4s", "--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pulse load");
    thread::sleep(Duration::from_secs(1));
    pulse.signal(Signal::SIGTERM);
    let signalled = Instant::now();

    // A request still running when accepting stops must be answered too.
    let in_flight = {
        let url = pulse.url("/delay/2");
        thread::spawn(move || {
            thread::sleep(delay - Duration::from_millis(500));
            client().get(url).send().map(|r| r.status().as_u16())
        })
    };

    // Read everything back, again and again, until the server stops answering.
    // It must answer every read until the shutdown delay ends; after that a
    // refused (or, in the instant the listener closes, reset) connection is
    // the expected end.
    let mut reads = 0;
    let stopped_answering = 'reading: loop {
        for (key, value) in &written {
            let response = match http.get(pulse.url(&format!("/data/{key}"))).send() {
                Ok(response) => response,
                Err(_) => break 'reading signalled.elapsed(),
            };
            assert_eq!(response.status(), 200, "{key} readable during shutdown");
            let item: serde_json::Value = response.json().unwrap();
            assert_eq!(item["value"], value.as_str());
            reads += 1;
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert!(
        stopped_answering + Duration::from_millis(100) >= delay,
        "answered until the shutdown delay ended (stopped after {stopped_answering:?})"
    );
    assert!(
        reads >= 20 * 10,
        "read back repeatedly during the delay ({reads})"
    );

    let output = load.wait_with_output().expect("pulse load");
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).expect("summary");
    assert_eq!(
        summary["status"]["failed"], 0,
        "no request failed: {summary}"
    );
    assert!(
        summary["requests"].as_u64().unwrap_or(0) >= 350,
        "the load ran: {summary}"
    );
    assert_eq!(
        in_flight.join().unwrap().unwrap(),
        200,
        "in flight across the drain"
    );
    let exit = pulse.wait_exit(Duration::from_secs(15)).expect("exits");
    assert!(exit.success(), "{exit:?}");
}

/// One keep-alive client: requests `/api/users` back to back on one connection
/// (a new one after an answer that says `Connection: close`) until a connection
/// is refused, the expected end once Pulse stops accepting. Returns (answered,
/// failed): a request failed when its connection was accepted and it was sent
/// but no answer came.
fn keep_alive_client(port: u16) -> (u64, u64) {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    use std::net::TcpStream;
    let (mut answered, mut failed) = (0, 0);
    'connections: loop {
        let stream = match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => stream,
            Err(_) => return (answered, failed),
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(15)));
        let mut writer = stream.try_clone().expect("clone");
        let mut reader = BufReader::new(stream);
        loop {
            if writer
                .write_all(b"GET /api/users HTTP/1.1\r\nHost: pulse\r\n\r\n")
                .is_err()
            {
                failed += 1;
                continue 'connections;
            }
            let (mut length, mut close, mut status) = (0usize, false, None);
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => {
                        failed += 1;
                        continue 'connections;
                    }
                    Ok(_) => {}
                }
                let line = line.trim_end().to_ascii_lowercase();
                if status.is_none() {
                    status = line.split(' ').nth(1).map(str::to_owned);
                } else if line.is_empty() {
                    break;
                } else if let Some(v) = line.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                } else if line == "connection: close" {
                    close = true;
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_err() || status.as_deref() != Some("200") {
                failed += 1;
                continue 'connections;
            }
            answered += 1;
            if close {
                continue 'connections;
            }
        }
    }
}

#[test]
fn sigterm_fails_no_request_of_16_keep_alive_clients() {
    // The moment the listener closes is where requests were lost: connections
    // the kernel had accepted but Pulse had not, or had but not read yet.
    for run in 0..3 {
        let mut pulse = Pulse::start(&[
            "--log-level",
            "warn",
            "--shutdown-delay",
            "2s",
            "--shutdown-timeout",
            "5s",
        ]);
        let port = pulse.port;
        let clients: Vec<_> = (0..16)
            .map(|_| thread::spawn(move || keep_alive_client(port)))
            .collect();
        thread::sleep(Duration::from_secs(1));
        pulse.signal(Signal::SIGTERM);
        let (mut answered, mut failed) = (0, 0);
        for client in clients {
            let (a, f) = client.join().expect("client");
            answered += a;
            failed += f;
        }
        let exit = pulse.wait_exit(Duration::from_secs(10)).expect("exits");
        assert!(exit.success(), "{exit:?}");
        eprintln!("run {run}: {answered} answered, {failed} failed");
        assert_eq!(
            failed,
            0,
            "run {run}: {failed} of {} failed",
            answered + failed
        );
        assert!(answered > 1000, "run {run}: the load ran ({answered})");
    }
}

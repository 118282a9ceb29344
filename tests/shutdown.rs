//! SIGTERM under load, on the real binary: while `pulse load` sends a steady
//! rate, the server is told to stop. Nothing sent while it accepted may fail,
//! and what was written before the signal stays readable until it stops
//! accepting (README "Graceful shutdown").

mod common;

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

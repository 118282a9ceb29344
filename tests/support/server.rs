//! Start a server process on a free loopback port, wait until it serves, stop it:
//! the one start-up helper of the benchmarks (`benches/macro/`) and the integration
//! tests. Not a test target (Cargo only discovers `tests/*.rs` and `tests/*/main.rs`):
//! each user includes it with `#[path = ".../tests/support/server.rs"] mod server;`.
//!
//! ```ignore
//! let mut server = Launch::new(PULSE)
//!     .arg("--addr")
//!     .arg_addr() // 127.0.0.1:PORT, a free port unless `.port(p)` says which
//!     .args(["--kube", "off"])
//!     .env("PULSE_LOG_LEVEL", "warn")
//!     .spawn();
//! server.wait_ready("/readyz", Duration::from_secs(10));
//! let body = reqwest::blocking::get(server.url("/api/users"));
//! // Dropping `server` sends SIGTERM, waits up to the grace period, then kills.
//! ```

#![allow(dead_code)] // Each user needs a different subset.

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader, Read};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `pulse` executable Cargo built for this benchmark or test.
pub const PULSE: &str = env!("CARGO_BIN_EXE_pulse");

/// A free loopback port (bound and released; good enough for tests and benchmarks).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Where the server's stdout and stderr go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Collected line by line, both streams in one list ([`Server::lines`]).
    Lines,
    /// Written to the files `stdout` and `stderr` of a temporary directory
    /// ([`Server::stdout_path`]), as a container runtime would collect them.
    Files,
}

enum Arg {
    Plain(OsString),
    /// `127.0.0.1:PORT`, filled in when the server is spawned.
    Addr,
}

/// How to start a server: `[wrapper...] program args...`, its environment and
/// output, and how it is stopped. Build it, then [`Launch::spawn`].
pub struct Launch {
    wrapper: Vec<OsString>,
    program: OsString,
    args: Vec<Arg>,
    env: Vec<(OsString, OsString)>,
    remove: Vec<String>,
    clean: bool,
    output: Output,
    port: u16,
    poll: Duration,
    grace: Duration,
}

impl Launch {
    /// `program` on a free port; output collected as lines; polled every 20 ms
    /// while waiting; 10 s between SIGTERM and SIGKILL when stopped.
    pub fn new(program: impl Into<OsString>) -> Self {
        Self {
            wrapper: Vec::new(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            remove: Vec::new(),
            clean: false,
            output: Output::Lines,
            port: free_port(),
            poll: Duration::from_millis(20),
            grace: Duration::from_secs(10),
        }
    }

    /// Runs the program under `wrapper` (e.g. `valgrind --tool=callgrind`).
    pub fn wrapped<I, S>(mut self, wrapper: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.wrapper = wrapper.into_iter().map(Into::into).collect();
        self
    }

    /// Serves on `port` rather than the free one picked by [`Launch::new`].
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(Arg::Plain(arg.into()));
        self
    }

    pub fn args<I, S>(self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        args.into_iter().fold(self, Self::arg)
    }

    /// The address to serve on, `127.0.0.1:PORT`, as the next argument.
    pub fn arg_addr(mut self) -> Self {
        self.args.push(Arg::Addr);
        self
    }

    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    pub fn envs<'a>(self, vars: impl IntoIterator<Item = &'a (&'a str, &'a str)>) -> Self {
        vars.into_iter().fold(self, |l, (k, v)| l.env(*k, *v))
    }

    pub fn env_remove(mut self, name: &str) -> Self {
        self.remove.push(name.to_owned());
        self
    }

    /// Removes `PULSE_*`, `OTEL_*` and `RUST_LOG` inherited from this process: the
    /// shipped defaults, whatever the shell exports. Variables set with
    /// [`Launch::env`] are kept.
    pub fn clean_env(mut self) -> Self {
        self.clean = true;
        self
    }

    pub fn output(mut self, output: Output) -> Self {
        self.output = output;
        self
    }

    /// How often [`Server::wait_ready`] asks.
    pub fn poll(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// How long [`Server::stop`] waits after SIGTERM before it kills (zero: kill at once).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Starts it; does not wait.
    pub fn spawn(self) -> Server {
        let addr = format!("127.0.0.1:{}", self.port);
        let args = self.args.iter().map(|arg| match arg {
            Arg::Plain(arg) => arg.clone(),
            Arg::Addr => addr.clone().into(),
        });
        let mut command = match self.wrapper.split_first() {
            Some((first, rest)) => {
                let mut command = Command::new(first);
                command.args(rest).arg(&self.program);
                command
            }
            None => Command::new(&self.program),
        };
        command.args(args);
        if self.clean {
            for (name, _) in std::env::vars_os() {
                let name = name.to_string_lossy();
                if name.starts_with("PULSE_") || name.starts_with("OTEL_") || name == "RUST_LOG" {
                    command.env_remove(name.as_ref());
                }
            }
        }
        for name in &self.remove {
            command.env_remove(name);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let sink = Sink::new(self.output, &mut command);
        let started = Instant::now();
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!("spawn {:?}: {e}", self.program);
        });
        let sink = sink.attach(&mut child);
        Server {
            child,
            port: self.port,
            started,
            poll: self.poll,
            grace: self.grace,
            sink,
        }
    }
}

/// Where a running server's output is.
enum Sink {
    Lines(Arc<Mutex<Vec<String>>>),
    Files(tempfile::TempDir),
}

impl Sink {
    fn new(output: Output, command: &mut Command) -> Self {
        match output {
            Output::Lines => {
                command.stdout(Stdio::piped()).stderr(Stdio::piped());
                Self::Lines(Arc::default())
            }
            Output::Files => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let file = |name| std::fs::File::create(dir.path().join(name)).expect(name);
                command.stdout(file("stdout")).stderr(file("stderr"));
                Self::Files(dir)
            }
        }
    }

    /// Starts the threads that collect the lines of a piped child.
    fn attach(self, child: &mut Child) -> Self {
        if let Self::Lines(lines) = &self {
            let stdout = child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>);
            let stderr = child.stderr.take().map(|s| Box::new(s) as _);
            for stream in [stdout, stderr].into_iter().flatten() {
                let sink = lines.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(stream).lines().map_while(Result::ok) {
                        sink.lock().expect("output lines").push(line);
                    }
                });
            }
        }
        self
    }
}

/// A running server; stopped (SIGTERM, then SIGKILL after the grace period) when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
    started: Instant,
    poll: Duration,
    grace: Duration,
    sink: Sink,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `GET path` answers a success, at most `limit` (panics after it,
    /// or when the process exits, with its output). Returns the time from spawn.
    pub fn wait_ready(&mut self, path: &str, limit: Duration) -> Duration {
        self.wait_for(path, limit, |status| status.is_success());
        self.started.elapsed()
    }

    /// Waits until `GET path` answers at all (any status), at most `limit`.
    pub fn wait_answering(&mut self, path: &str, limit: Duration) {
        self.wait_for(path, limit, |_| true);
    }

    fn wait_for(&mut self, path: &str, limit: Duration, ok: fn(reqwest::StatusCode) -> bool) {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        let url = self.url(path);
        let deadline = Instant::now() + limit;
        loop {
            if client.get(&url).send().is_ok_and(|r| ok(r.status())) {
                return;
            }
            let exited = self.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= deadline {
                panic!(
                    "{url} not ready after {limit:?} (exit status: {exited:?}); output:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(self.poll);
        }
    }

    /// Lines of stdout and stderr so far, with [`Output::Lines`] (empty otherwise).
    pub fn lines(&self) -> Vec<String> {
        match &self.sink {
            Sink::Lines(lines) => lines.lock().expect("output lines").clone(),
            Sink::Files(_) => Vec::new(),
        }
    }

    /// The file stdout is written to, with [`Output::Files`].
    pub fn stdout_path(&self) -> Option<PathBuf> {
        match &self.sink {
            Sink::Files(dir) => Some(dir.path().join("stdout")),
            Sink::Lines(_) => None,
        }
    }

    /// What the server printed, for a failure's message: its lines, or its stderr file.
    pub fn output(&self) -> String {
        match &self.sink {
            Sink::Lines(_) => self.lines().join("\n"),
            Sink::Files(dir) => {
                std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default()
            }
        }
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("kill");
    }

    /// Waits for exit; `None` if still running after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, up to the grace period for the exit, then SIGKILL. The exit status
    /// when it exited by itself.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        if !self.grace.is_zero()
            && nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).is_ok()
            && let Some(status) = self.wait_exit(self.grace)
        {
            return Some(status);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

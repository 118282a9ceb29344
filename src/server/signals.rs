//! SIGTERM and SIGINT, as the binary waits for them.

/// A signal that asks Pulse to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: what Kubernetes sends.
    Term,
    /// SIGINT: Ctrl-C.
    Int,
}

impl Signal {
    /// Its name, as logs show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Term => "SIGTERM",
            Self::Int => "SIGINT",
        }
    }

    /// The exit status of a process ended by it: 128 + its number.
    pub fn exit_code(self) -> i32 {
        128 + match self {
            Self::Int => 2,
            Self::Term => 15,
        }
    }
}

/// SIGTERM and SIGINT, received as a stream.
#[derive(Debug)]
pub struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers (needs a Tokio runtime).
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Waits for the next signal.
    pub async fn recv(&mut self) -> Signal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => Signal::Term,
                _ = self.int.recv() => Signal::Int,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Int
        }
    }
}

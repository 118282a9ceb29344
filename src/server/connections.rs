//! The accept loop: every TCP connection is served by hyper's HTTP/1 server.
//!
//! `axum::serve` gives no access to hyper's connection settings, and the one
//! that matters here is the header read timeout: without it a client that sends
//! a request head one byte at a time (slowloris) holds a connection and a task
//! forever. Each connection is also watched, so that a drain can ask them all
//! to finish their current request and close.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};

use super::stream::{Idle, Watched};

use crate::telemetry::Metrics;
use crate::telemetry::labels::ErrorKind;

/// Serves `app` on `listener`, one hyper connection per client.
pub struct Connections {
    listener: TcpListener,
    app: Router,
    builder: http1::Builder,
    write_timeout: Duration,
    metrics: Arc<Metrics>,
    graceful: GracefulShutdown,
}

/// The connections still open when accepting stopped.
pub struct Draining(GracefulShutdown);

impl Draining {
    /// Completes when every connection has finished its current request and closed.
    pub async fn finished(self) {
        self.0.shutdown().await;
    }
}

impl Connections {
    /// Connections on `listener` answered by `app`. A connection whose next
    /// request head is not complete within `header_read_timeout`, or whose
    /// response makes no progress for `write_timeout`, is closed.
    pub fn new(
        listener: TcpListener,
        app: Router,
        header_read_timeout: Duration,
        write_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut builder = http1::Builder::new();
        // The timer is what makes hyper's header read timeout work at all.
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout);
        Self {
            listener,
            app,
            builder,
            write_timeout,
            metrics,
            graceful: GracefulShutdown::new(),
        }
    }

    /// Accepts connections until `stop` completes, then closes the listener:
    /// new connections are refused while the open ones drain.
    pub async fn accept_until(self, stop: impl Future<Output = ()>) -> Draining {
        let mut stop = std::pin::pin!(stop);
        loop {
            let stream = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(err) => {
                        accept_failed(err).await;
                        continue;
                    }
                },
                () = &mut stop => break,
            };
            self.serve(stream);
        }
        // Connections the kernel has completed but we have not accepted yet
        // would be reset when the listener closes: serve them too.
        while let Ok(Ok((stream, _peer))) =
            tokio::time::timeout(Duration::ZERO, self.listener.accept()).await
        {
            self.serve(stream);
        }
        drop(self.listener);
        Draining(self.graceful)
    }

    fn serve(&self, stream: TcpStream) {
        // Small JSON answers: do not wait for Nagle to fill a segment.
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Idle::default());
        let io = TokioIo::new(Watched::new(stream, activity.clone(), self.write_timeout));
        let service = TowerToHyperService::new(self.app.clone());
        let connection = self
            .graceful
            .watch(self.builder.serve_connection(io, service));
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                connection_failed(&err, &activity, &metrics);
            }
        });
    }
}

/// Counts the connection failures a client caused; the rest (resets, clients
/// that hang up) are normal on the internet and only logged at debug.
fn connection_failed(err: &hyper::Error, idle: &Idle, metrics: &Metrics) {
    let kind = if Watched::is_write_timeout(err) {
        // A client that stopped reading its response (slow read).
        ErrorKind::WriteTimeout
    } else if err.is_timeout() {
        // hyper's header timer also runs while a keep-alive connection waits
        // for its next request: closing an idle connection is not an error.
        if idle.get() {
            tracing::trace!("idle keep-alive connection closed");
            return;
        }
        // A request head that did not arrive within `--header-read-timeout`.
        ErrorKind::HeaderTimeout
    } else if err.is_parse() {
        // hyper answered 400, 414 or 431 itself, before any route ran.
        ErrorKind::MalformedRequest
    } else {
        tracing::debug!(error = %err, "connection ended with an error");
        return;
    };
    tracing::debug!(error = %err, error_type = kind.as_str(), "connection closed");
    metrics.api_error(kind);
}

/// Accept errors are per connection (the client went away) or per process
/// (out of file descriptors); the second kind must not spin the loop.
async fn accept_failed(err: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %err, "accept failed; retrying in 1s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
